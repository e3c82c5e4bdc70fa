"""What the user sees while a build runs: a spinner per stage on a terminal, plain lines elsewhere.

rich (about 60 ms to import) is only loaded for the spinner, i.e. when a stage really runs on a
terminal; the one-line summaries are written directly, with ANSI colours on a terminal that allows
them. A no-op run therefore never imports it.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any, TextIO

from pebuilder.engine.report import StageResult
from pebuilder.fsutil import human_size

GREEN, DIM, BOLD, RESET = "\x1b[32m", "\x1b[2m", "\x1b[1m", "\x1b[0m"


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class Progress:
    def __init__(self, enabled: bool = True, stream: TextIO | None = None):
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.terminal = enabled and _is_terminal(self.stream)
        # As rich decides it: NO_COLOR (any value) or TERM=dumb turn colours off.
        self.colour = self.terminal and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"
        self._console: Any = None

    def _spinner_console(self) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(file=self.stream, highlight=False, soft_wrap=True)
        return self._console

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if self.terminal:
            with self._spinner_console().status(f"[bold]{name}[/bold] …"):
                yield
        else:
            yield

    def _style(self, text: str, style: str) -> str:
        return f"{style}{text}{RESET}" if self.colour else text

    def done(self, res: StageResult) -> None:
        if not self.enabled:
            return
        sizes = ", ".join(f"{k.rsplit('/', 1)[-1]} {human_size(v)}" for k, v in res.outputs.items())
        if res.ran:
            line = (f"{self._style('✓', GREEN)} {res.name:<22} {res.seconds:6.2f} s  {sizes}"
                    + (f"  ({res.note})" if res.note else ""))
        else:
            line = self._style(f"= {res.name:<22}  skipped (unchanged)  {sizes}", DIM)
        self.stream.write(line + "\n")
        self.stream.flush()
