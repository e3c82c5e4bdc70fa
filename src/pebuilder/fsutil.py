"""File-system helpers that keep outputs atomic and image trees closed.

An image tree is a foreign root: its absolute symlinks point into the image, never at the build
host, so every write into it goes through `resolve_in_root`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from pebuilder.errors import UnsafeArchiveError


def source_date_epoch() -> int | None:
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        from pebuilder.errors import ConfigError

        raise ConfigError(f"SOURCE_DATE_EPOCH={value!r} is not a whole number of seconds") from None


def build_time() -> int:
    """The time stamped on files pebuilder adds: SOURCE_DATE_EPOCH when set, so builds repeat."""
    sde = source_date_epoch()
    if sde is not None:
        return sde
    import time

    return int(time.time())


@contextlib.contextmanager
def atomic_output(path: Path, mode: int = 0o644) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it into place only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, mode)
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_text_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    with atomic_output(path, mode) as tmp:
        tmp.write_text(text)


def safe_relpath(name: str) -> PurePosixPath:
    """Normalise an archive member name; refuse absolute names and any `..` component."""
    if name.startswith("/"):
        raise UnsafeArchiveError(f"archive member {name!r} has an absolute path; refusing to extract it")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise UnsafeArchiveError(f"archive member {name!r} climbs out with '..'; refusing to extract it")
    return PurePosixPath(*parts) if parts else PurePosixPath(".")


def resolve_in_root(root: Path, rel: str | PurePosixPath, *, follow_last: bool = False) -> Path:
    """Resolve `rel` inside `root` as if `root` were `/`: symlinks, absolute or not, stay inside."""
    root = Path(root)
    pending = [p for p in PurePosixPath(rel).parts if p not in ("", ".", "/")]
    pending.reverse()
    current: list[str] = []
    hops = 0
    while pending:
        part = pending.pop()
        if part == "..":
            if current:
                current.pop()
            continue
        candidate = root.joinpath(*current, part)
        is_last = not pending
        if candidate.is_symlink() and (follow_last or not is_last):
            hops += 1
            if hops > 40:
                raise UnsafeArchiveError(f"too many symlinks while resolving {rel} in {root}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                current = []
            more = [p for p in PurePosixPath(target).parts if p not in ("", ".", "/")]
            pending.extend(reversed(more))
            continue
        current.append(part)
    return root.joinpath(*current)


def rmtree(path: Path) -> None:
    """Remove a tree even where read-only folders (as extracted from ISOs) would stop shutil."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    if path.is_symlink() or not path.is_dir():
        path.unlink()
        return
    for dirpath, dirnames, _ in os.walk(path):
        for d in dirnames:
            p = os.path.join(dirpath, d)
            if not os.path.islink(p):
                os.chmod(p, stat.S_IRWXU)
    os.chmod(path, stat.S_IRWXU)
    shutil.rmtree(path)


def file_sha256(path: Path, bufsize: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(bufsize):
            h.update(chunk)
    return h.hexdigest()


def file_md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def human_size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"
