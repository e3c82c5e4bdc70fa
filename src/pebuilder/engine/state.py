"""The record of each stage's last successful run: its key, and the token dependants compare against."""

from __future__ import annotations

import json
from pathlib import Path

from pebuilder.fsutil import write_text_atomic


class StageState:
    def __init__(self, state_dir: Path):
        state_dir.mkdir(parents=True, exist_ok=True)
        self.path = state_dir / "stages.json"
        self.data: dict[str, dict[str, str]] = {}
        if self.path.exists():
            try:
                loaded = json.loads(self.path.read_text())
                self.data = loaded if isinstance(loaded, dict) else {}
            except ValueError:
                self.data = {}  # a damaged record only costs a rebuild

    def key(self, name: str) -> str | None:
        return self.data.get(name, {}).get("key")

    def token(self, name: str) -> str:
        return self.data.get(name, {}).get("token", "")

    def forget(self, name: str) -> None:
        self.data.pop(name, None)

    def record(self, name: str, key: str, token: str) -> None:
        self.data[name] = {"key": key, "token": token}

    def save(self) -> None:
        write_text_atomic(self.path, json.dumps(self.data, indent=1, sort_keys=True))
