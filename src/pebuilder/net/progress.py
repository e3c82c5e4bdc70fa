"""Download progress: a live bar (bytes, rate, files) on a terminal, one summary line elsewhere."""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from pebuilder.fsutil import human_size

log = logging.getLogger("pebuilder.download")


class DownloadProgress:
    def __init__(self, files: int, stream=None):
        self.files = files
        self.done_files = 0
        self.bytes = 0
        self.stream = stream or sys.stderr
        self.lock = threading.Lock()
        self.start = time.monotonic()
        self._bar: Any = None
        self._task: Any = None

    def add(self, n: int) -> None:
        with self.lock:
            self.bytes += n
            if self._bar is not None:
                self._bar.update(self._task, advance=n)

    def file_done(self) -> None:
        with self.lock:
            self.done_files += 1
            if self._bar is not None:
                self._bar.update(self._task, description=f"downloading {self.done_files}/{self.files} files")

    @contextlib.contextmanager
    def shown(self) -> Iterator[DownloadProgress]:
        if self.stream.isatty():
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

            with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                          transient=True) as bar:
                self._bar = bar
                self._task = bar.add_task(f"downloading 0/{self.files} files", total=None)
                yield self
                self._bar = None
        else:
            yield self
        dt = max(time.monotonic() - self.start, 1e-6)
        if self.done_files:
            log.info("downloaded %d files, %s in %.1f s (%s/s)", self.done_files, human_size(self.bytes), dt,
                     human_size(int(self.bytes / dt)))
