"""What the user sees while a build runs: a spinner per stage on a terminal, plain lines elsewhere."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from pebuilder.engine.report import StageResult
from pebuilder.fsutil import human_size


class Progress:
    def __init__(self, enabled: bool = True, stream=None):
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.console = None
        if enabled:
            from rich.console import Console

            self.console = Console(file=self.stream, highlight=False, soft_wrap=True)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if self.console is not None and self.console.is_terminal:
            with self.console.status(f"[bold]{name}[/bold] …"):
                yield
        else:
            yield

    def done(self, res: StageResult) -> None:
        if not self.enabled or self.console is None:
            return
        sizes = ", ".join(f"{k.rsplit('/', 1)[-1]} {human_size(v)}" for k, v in res.outputs.items())
        if res.ran:
            self.console.print(f"[green]✓[/green] {res.name:<22} {res.seconds:6.2f} s  {sizes}"
                               + (f"  ({res.note})" if res.note else ""))
        else:
            self.console.print(f"[dim]= {res.name:<22}  skipped (unchanged)  {sizes}[/dim]")
