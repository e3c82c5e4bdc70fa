"""Files and folders from the build host copied into the image with explicit owner and mode."""

from __future__ import annotations

import stat

from pebuilder.config.model import FileSpec
from pebuilder.errors import ConfigError, PebuilderError
from pebuilder.fsroot import FsRoot


def owner_of(spec: FileSpec) -> tuple[int, int]:
    uid, gid = spec.owner.split(":")
    return int(uid), int(gid)


def apply(fs: FsRoot, specs: list[FileSpec]) -> str:
    for i, f in enumerate(specs):
        try:
            _apply_one(fs, f, i)
        except ConfigError:
            raise
        except PebuilderError as exc:  # e.g. a file whose dest is a folder of the image
            raise ConfigError(f"files[{i}].dest: {exc}") from None
    return f"{len(specs)} overlay files"


def _apply_one(fs: FsRoot, f: FileSpec, i: int) -> None:
    uid, gid = owner_of(f)
    rel = f.dest.lstrip("/")
    if not f.source.exists():
        raise ConfigError(f"files[{i}].source: {f.source} does not exist (for {f.dest})")
    if f.source.is_dir():
        fs.mkdir(rel, f.mode if f.mode is not None else 0o755, uid, gid, keep=True)
        for p in sorted(f.source.rglob("*")):
            sub = f"{rel}/{p.relative_to(f.source).as_posix()}"
            if p.is_symlink():
                raise ConfigError(f"files[{i}].source: {p} is a symlink; give plain files and folders")
            if p.is_dir():
                fs.mkdir(sub, 0o755, uid, gid)
            else:
                mode = f.mode if f.mode is not None else stat.S_IMODE(p.stat().st_mode)
                fs.copy_from(p, sub, mode, uid, gid)
    else:
        mode = f.mode if f.mode is not None else stat.S_IMODE(f.source.stat().st_mode)
        fs.copy_from(f.source, rel, mode, uid, gid)
