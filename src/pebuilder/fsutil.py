"""File-system helpers: atomic outputs, hashes, sizes, and the build's notion of time.

Writing inside image trees is fsroot.py's business, not this module's.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path


def source_date_epoch() -> int | None:
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if value is None or value == "":
        return None
    if not value.isdigit() or int(value) > 2**32 - 1:
        from pebuilder.errors import ConfigError

        raise ConfigError(f"SOURCE_DATE_EPOCH={value!r} is not a time in whole seconds since 1970 (e.g. "
                          "$(git log -1 --format=%ct)); unset it or fix it")
    return int(value)


def build_time() -> int:
    """The time stamped on files pebuilder adds: SOURCE_DATE_EPOCH when set, so builds repeat."""
    sde = source_date_epoch()
    if sde is not None:
        return sde
    import time

    return int(time.time())


TMP_SUFFIX = ".pbtmp"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def atomic_output(path: Path, mode: int = 0o644) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it into place only if the block succeeds.

    The temporary's name carries the writer's pid, so a later run can tell a killed writer's
    leftover (removed) from a live one's.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=TMP_SUFFIX, dir=path.parent)
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


def file_digest(path: Path, algo: str) -> str:
    """Hex digest of a file, read in chunks (kernels, ISOs and indexes are tens of MB)."""
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    return file_digest(path, "sha256")


def file_md5(path: Path) -> str:
    return file_digest(path, "md5")


def human_size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def link_or_copy(src: Path, dst: Path) -> None:
    """A hard link where the file system allows one, else a copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def link_tree(src: Path, dest: Path, skip: set[str] | frozenset[str] = frozenset()) -> int:
    """A working copy of a tree by hard links (copies across file systems); returns the file count.

    Safe only because pebuilder never edits a file in place: FsRoot and atomic_output replace files,
    so a change in the copy never reaches the original. `skip` holds relative paths (files or
    folders) left out.
    """
    count = 0
    dest.mkdir(parents=True, exist_ok=True)
    for dirpath, dirnames, filenames in os.walk(src):
        rel_dir = os.path.relpath(dirpath, src)
        out = dest if rel_dir == "." else dest / rel_dir
        keep = []
        for name in sorted(dirnames) + sorted(filenames):
            s = Path(dirpath) / name
            if (name if rel_dir == "." else f"{rel_dir}/{name}") in skip:
                continue
            st = os.lstat(s)
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(s), out / name)
            elif stat.S_ISDIR(st.st_mode):
                (out / name).mkdir()
                shutil.copystat(s, out / name)
                keep.append(name)
            elif stat.S_ISREG(st.st_mode):
                link_or_copy(s, out / name)
                count += 1
        dirnames[:] = keep
    shutil.copystat(src, dest)
    return count
