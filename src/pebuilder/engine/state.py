"""The record of each stage's last successful run: its key, and the token dependants compare against."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pebuilder.fsutil import write_text_atomic


class StageState:
    def __init__(self, state_dir: Path):
        state_dir.mkdir(parents=True, exist_ok=True)
        self.path = state_dir / "stages.json"
        self.data: dict[str, dict[str, Any]] = {}
        self._saved = ""  # the file's text as last read or written: a no-op run rewrites nothing
        if self.path.exists():
            try:
                text = self.path.read_text()
                loaded = json.loads(text)
                self.data = loaded if isinstance(loaded, dict) else {}
                self._saved = text
            except ValueError:
                self.data = {}  # a damaged record only costs a rebuild

    def key(self, name: str) -> str | None:
        got = self.data.get(name, {}).get("key")
        return got if isinstance(got, str) else None

    def token(self, name: str) -> str:
        got = self.data.get(name, {}).get("token", "")
        return got if isinstance(got, str) else ""

    def forget(self, name: str) -> None:
        self.data.pop(name, None)

    def record(self, name: str, key: str, token: str, sizes: dict[str, int] | None = None) -> None:
        self.data[name] = {"key": key, "token": token}
        if sizes is not None:
            self.data[name]["sizes"] = sizes

    def sizes(self, name: str) -> dict[str, int] | None:
        """Output sizes measured when the stage last ran (what a skipped stage reports)."""
        got = self.data.get(name, {}).get("sizes")
        return got if isinstance(got, dict) else None

    def save(self) -> None:
        text = json.dumps(self.data, indent=1, sort_keys=True)
        if text != self._saved:
            write_text_atomic(self.path, text)
            self._saved = text
