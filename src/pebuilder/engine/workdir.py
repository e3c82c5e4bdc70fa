"""The work folder: pebuilder's marker in it, one build at a time, and no leftovers of a killed run.

A work folder is only ever cleaned when it carries pebuilder's marker, so pointing temp_dir at an
unrelated folder by mistake loses nothing. A lock (flock, released by the kernel when the process
dies, so kill -9 never leaves it stuck) keeps two builds out of one folder; the second one is told
who holds it. Temporaries of a killed run (pebuilder's scratch folder, half-written outputs) are
removed before anything is built.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from pebuilder.errors import Exit, PebuilderError
from pebuilder.fsutil import TMP_SUFFIX, pid_alive, rmtree, write_text_atomic

STATE = ".pebuilder"
MARKER = "workdir.json"


class WorkDirBusy(PebuilderError):
    code = Exit.LOCKED


def state_dir(work: Path) -> Path:
    return work / STATE


def claim(work: Path) -> None:
    """Make sure `work` is pebuilder's: new or empty (then marked), or marked before."""
    state = state_dir(work)
    if work.exists() and not work.is_dir():
        raise PebuilderError(f"work folder {work} is a file; set temp_dir (or [work] dir) to a folder",
                             Exit.TEMP_DIR)
    if work.is_dir() and not state.is_dir() and any(work.iterdir()):
        shown = ", ".join(sorted(os.listdir(work))[:5])
        raise PebuilderError(
            f"work folder {work} already holds files pebuilder did not make ({shown}); "
            "pebuilder only cleans folders it made. Choose an empty or new folder for temp_dir (or [work] dir)",
            Exit.TEMP_DIR)
    try:
        state.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PebuilderError(f"cannot create the work folder {work}: {exc.strerror}; set temp_dir "
                             "(or [work] dir) to a writable place", Exit.TEMP_DIR) from None
    marker = state / MARKER
    if not marker.exists():
        write_text_atomic(marker, json.dumps({"made_by": "pebuilder", "since": int(time.time())}) + "\n")


@contextlib.contextmanager
def locked(work: Path, outputs: list[Path]) -> Iterator[Path]:
    """Hold the work folder for one build; yields its state folder, cleaned of stale temporaries."""
    claim(work)
    state = state_dir(work)
    lock_path = state / "lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another pebuilder"
            raise WorkDirBusy(f"work folder {work} is in use by {holder}; wait for that build to finish "
                              "or use another work folder") from None
        info = (f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%H:%M:%S')} "
                f"({' '.join(sys.argv[1:3]) or 'pebuilder'})")
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.encode() + b"\n", 0)
        clean_stale(state, outputs)
        yield state
    finally:
        os.close(fd)


def scratch(state: Path) -> Path:
    """A folder for temporaries that never lies inside a tree that gets packed."""
    tmp = state / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    return tmp


def clean_stale(state: Path, outputs: list[Path]) -> list[Path]:
    """Remove what a killed run left: the scratch folder, and half-written outputs of dead writers."""
    removed = []
    tmp = state / "tmp"
    if tmp.exists():
        rmtree(tmp)
        removed.append(tmp)
    folders = {state, *(o.parent for o in outputs)}
    for dirpath, dirnames, _ in os.walk(state):  # stages' products (initrd/, boot/, ...); not the template
        dirnames[:] = [d for d in dirnames if not (dirpath == str(state) and d == "template")]
        folders.add(Path(dirpath))
    for folder in folders:
        if not folder.is_dir():
            continue
        for p in folder.iterdir():
            if p.name.startswith(".") and p.name.endswith(TMP_SUFFIX):
                pid = _writer_pid(p.name)
                if pid is None or not pid_alive(pid):
                    rmtree(p)
                    removed.append(p)
    return removed


def _writer_pid(name: str) -> int | None:
    # atomic_output names temporaries .<name>.<pid>.<random>.pbtmp
    parts = name.split(".")
    try:
        return int(parts[-3])
    except (IndexError, ValueError):
        return None
