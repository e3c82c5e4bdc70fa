"""squashfs images: read someone else's safely, write our own root-owned and reproducible.

Reading: the listing (`unsquashfs -lln`) is checked first — names, total apparent size against a
Budget (a 4 KiB image can hold a 2 GiB sparse file), types — then the image is unpacked into a
scratch folder and copied into the target through FsRoot: device nodes and fifos are recorded, never
created or opened, setuid bits stay in metadata.

Writing: owners, full modes and device nodes come from TreeMeta through a pseudo-definition file
(`-pf`), so an unprivileged build gives the same root-owned image as a privileged one.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from pebuilder.errors import Exit, PebuilderError, UnsafeArchiveError
from pebuilder.fsroot import Budget, FsRoot, TreeMeta, safe_relpath
from pebuilder.fsutil import atomic_output, rmtree, source_date_epoch
from pebuilder.runner import run

_LINE = re.compile(r"^([-dlcbps])([-rwxsStT]{9}) (\d+)/(\d+) +(\d+|\d+, *\d+) \d{4}-\d\d-\d\d \d\d:\d\d "
                   r"squashfs-root(/.*)?$")
_TYPES = {"-": stat.S_IFREG, "d": stat.S_IFDIR, "l": stat.S_IFLNK, "c": stat.S_IFCHR, "b": stat.S_IFBLK,
          "p": stat.S_IFIFO, "s": stat.S_IFSOCK}


@dataclass
class SqEntry:
    name: str  # relative, "" for the root
    mode: int  # full st_mode
    uid: int
    gid: int
    size: int = 0
    major: int = 0
    minor: int = 0
    link: str | None = None


class SquashfsError(PebuilderError):
    code = Exit.EXTENSION_MISSING


def _perm(bits: str) -> int:
    mode = 0
    for i, ch in enumerate(bits):
        if ch not in "-ST":
            mode |= 1 << (8 - i)
    if bits[2] in "sS":
        mode |= stat.S_ISUID
    if bits[5] in "sS":
        mode |= stat.S_ISGID
    if bits[8] in "tT":
        mode |= stat.S_ISVTX
    if bits[2] == "S":
        mode &= ~stat.S_IXUSR
    if bits[5] == "S":
        mode &= ~stat.S_IXGRP
    if bits[8] == "T":
        mode &= ~stat.S_IXOTH
    return mode


def listing(image: Path) -> list[SqEntry]:
    proc = run(["unsquashfs", "-lln", "-n", image], what=f"listing {image.name}", code=Exit.EXTENSION_MISSING)
    out: list[SqEntry] = []
    for line in proc.stdout.decode("utf-8", errors="surrogateescape").splitlines():
        m = _LINE.match(line)
        if not m:
            raise UnsafeArchiveError(f"{image}: cannot read the listing line {line[:120]!r}; refusing the image")
        kind, bits, uid, gid, size, name = m.groups()
        rel = (name or "").lstrip("/")
        link = None
        if kind == "l":
            rel, sep, link = rel.partition(" -> ")
            if not sep:
                raise UnsafeArchiveError(f"{image}: symlink {rel!r} without a target in the listing")
        e = SqEntry(rel, _TYPES[kind] | _perm(bits), int(uid), int(gid), link=link)
        if "," in size:
            e.major, e.minor = (int(x) for x in size.split(","))
        else:
            e.size = int(size)
        if rel:
            safe_relpath(rel)
        out.append(e)
    return out


def extract(image: Path, fs: FsRoot, scratch: Path, budget: Budget) -> list[SqEntry]:
    """Unpack `image` into the tree; returns its entries (for owners, file lists, module checks)."""
    entries = listing(image)
    for e in entries:
        budget.take(e.size if stat.S_ISREG(e.mode) else 0, e.name)
    tmp = scratch / f"unsquash-{os.getpid()}"
    rmtree(tmp)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    try:
        run(["unsquashfs", "-n", "-no-xattrs", "-d", tmp, image], what=f"extracting {image.name}",
            code=Exit.EXTENSION_MISSING)
        for e in entries:
            if not e.name:
                continue
            src = tmp / e.name
            kind = stat.S_IFMT(e.mode)
            if kind == stat.S_IFDIR:
                fs.mkdir(e.name, stat.S_IMODE(e.mode), e.uid, e.gid, keep=True)
            elif kind == stat.S_IFLNK:
                fs.symlink(e.name, e.link or "", e.uid, e.gid)
            elif kind == stat.S_IFREG:
                st = os.lstat(src)
                if not stat.S_ISREG(st.st_mode) or st.st_size != e.size:
                    raise UnsafeArchiveError(f"{image}: {e.name} is not the file its listing says")
                fs.move_from(src, e.name, stat.S_IMODE(e.mode), e.uid, e.gid)
            else:
                fs.special(e.name, e.mode, e.major, e.minor, e.uid, e.gid)
    except PebuilderError as exc:
        if exc.code != Exit.USAGE:
            raise
        # the image cannot take an entry (a file where the tree has a folder)
        raise UnsafeArchiveError(f"{image}: {exc}") from None
    finally:
        rmtree(tmp)
    return entries


def _pseudo_name(rel: str) -> str:
    if any(c in rel for c in '"\\\n'):
        raise PebuilderError(f"cannot put {rel!r} into a squashfs: the name holds a quote, backslash or newline")
    return f'"{rel}"'


def make(tree: Path, meta: TreeMeta, out: Path, *, compression: str = "xz", block_size: str = "1M",
         bcj: str | None = None, extra: list[str] | None = None, scratch: Path) -> int:
    """Write `tree` as a squashfs with the owners and modes of `meta` (root for anything new)."""
    fs = FsRoot(tree, meta)
    pseudo: list[str] = []
    excluded: list[str] = []
    for rel in fs.walk():
        st = os.lstat(tree / rel)
        special = meta.specials.get(rel)
        if special:
            mode, major, minor = special
            _, uid, gid = meta.owner(rel, (0, 0, 0))
            kind = {stat.S_IFCHR: "c", stat.S_IFBLK: "b"}.get(stat.S_IFMT(mode))
            excluded.append(rel)
            if kind:
                pseudo.append(f"{_pseudo_name(rel)} {kind} {stat.S_IMODE(mode):o} {uid} {gid} {major} {minor}")
            elif stat.S_ISFIFO(mode):
                pseudo.append(f"{_pseudo_name(rel)} i {stat.S_IMODE(mode):o} {uid} {gid} f")  # f: a fifo
            continue
        # Owners come from the metadata (root for anything not recorded), never from the builder:
        # only entries whose host owner or mode differ need a line, so a root build's list stays short.
        host = (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
        mode, uid, gid = meta.owner(rel, (host[0], 0, 0))
        if stat.S_ISLNK(st.st_mode):
            mode = host[0]
        if (mode, uid, gid) != host:
            pseudo.append(f"{_pseudo_name(rel)} m {mode:o} {uid} {gid}")
    scratch.mkdir(parents=True, exist_ok=True)
    pf = scratch / f"{out.name}.pseudo"
    ef = scratch / f"{out.name}.exclude"
    pf.write_text("\n".join(pseudo) + "\n")
    ef.write_text("".join(f"{e}\n" for e in excluded))
    root_mode, root_uid, root_gid = meta.owner(".", (0o755, 0, 0))
    args: list[str | os.PathLike[str]] = ["mksquashfs", tree, "OUT", "-noappend", "-no-xattrs", "-quiet",
                                          "-no-progress", "-comp", compression, "-b", block_size, "-pf", pf,
                                          "-ef", ef, "-root-mode", f"{root_mode:o}", "-root-uid", str(root_uid),
                                          "-root-gid", str(root_gid)]
    if bcj and compression == "xz":
        args += ["-Xbcj", bcj]
    sde = source_date_epoch()
    if sde is not None:
        _clamp(tree, sde)  # mksquashfs reads SOURCE_DATE_EPOCH itself for the image's own time
    args += extra or []
    with atomic_output(out) as tmp:
        tmp.unlink()
        args[2] = tmp
        run(args, what=f"writing {out.name}")
        size = tmp.stat().st_size
    pf.unlink()
    ef.unlink()
    return size


def _clamp(tree: Path, sde: int) -> None:
    for dirpath, dirnames, filenames in os.walk(tree):
        for n in [*dirnames, *filenames, "."]:
            p = os.path.join(dirpath, n)
            if os.lstat(p).st_mtime > sde:
                os.utime(p, (sde, sde), follow_symlinks=False)
