"""Putting extensions inside the initrd, the three ways Tiny Core knows.

Extracted extensions must look loaded to tce-load (a `tce.installed` marker each) and, unless the
config says `ignore`, have their startup scripts run at boot: they are queued in /tmp/setup.lst,
which tce-setup runs after all extensions are loaded, exactly where tce-load would queue them.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pebuilder.errors import Exit, PebuilderError
from pebuilder.formats.cpio import TreeMeta
from pebuilder.fsutil import build_time, resolve_in_root, rmtree
from pebuilder.runner import run

TCE_INSTALLED = "usr/local/tce.installed"
SETUP_LIST = "tmp/setup.lst"
STAFF_GID = 50

_LLN = re.compile(r"^(\S+) (\d+)/(\d+)\s+.*? \d{4}-\d\d-\d\d \d\d:\d\d squashfs-root(/.*)?$")


@dataclass
class ExtractResult:
    name: str
    files: int = 0
    has_modules: bool = False
    has_libs: bool = False
    startup_script: bool = False


def _owners(tcz: Path) -> dict[str, tuple[int, int]]:
    proc = run(["unsquashfs", "-lln", tcz], what=f"listing {tcz.name}", code=Exit.EXTENSION_MISSING)
    owners: dict[str, tuple[int, int]] = {}
    for line in proc.stdout.decode(errors="surrogateescape").splitlines():
        m = _LLN.match(line)
        if not m or not m.group(4):
            continue
        name = m.group(4).lstrip("/")
        if m.group(1).startswith("l") and " -> " in name:
            name = name.split(" -> ", 1)[0]
        owners[name] = (int(m.group(2)), int(m.group(3)))
    return owners


def unpack(tcz: Path, dest: Path) -> None:
    """unsquashfs into a fresh folder; squashfs-tools >= 4.5 itself refuses `..` and `/` in names."""
    if dest.exists():
        rmtree(dest)
    run(["unsquashfs", "-n", "-no-xattrs", "-d", dest, tcz], what=f"extracting {tcz.name}",
        code=Exit.EXTENSION_MISSING)


def merge(src: Path, root: Path, meta: TreeMeta, owners: dict[str, tuple[int, int]]) -> int:
    """Copy a tree into an image root, resolving the root's symlinks inside the root."""
    count = 0
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, src)
        for n in sorted(dirnames) + sorted(filenames):
            rel = n if rel_dir == "." else f"{rel_dir}/{n}"
            s = Path(dirpath) / n
            parent = resolve_in_root(root, os.path.dirname(rel), follow_last=True) if "/" in rel else root
            parent.mkdir(parents=True, exist_ok=True)
            d = parent / n
            st = os.lstat(s)
            if stat.S_ISDIR(st.st_mode):
                if d.is_symlink() or d.is_dir():
                    # An existing folder keeps the template's owner and mode (tce.installed stays
                    # root:staff 775); a linked one is followed by resolve_in_root.
                    continue
                if d.exists():
                    d.unlink()
                d.mkdir()
                os.chmod(d, stat.S_IMODE(st.st_mode) | stat.S_IRWXU)
            else:
                if d.is_dir() and not d.is_symlink():
                    raise PebuilderError(f"{rel} in the extension would replace a folder of the initrd")
                if d.exists() or d.is_symlink():
                    d.unlink()
                if stat.S_ISLNK(st.st_mode):
                    os.symlink(os.readlink(s), d)
                else:
                    shutil.copy2(s, d, follow_symlinks=False)
            real_rel = d.relative_to(root).as_posix()
            uid, gid = owners.get(rel, (0, 0))
            meta.set(real_rel, st.st_mode, uid, gid)
            count += 1
    return count


def install_extracted(root: Path, meta: TreeMeta, tcz: Path, work: Path, run_scripts: bool) -> ExtractResult:
    name = tcz.name[: -len(".tcz")]
    res = ExtractResult(name=name)
    with tempfile.TemporaryDirectory(dir=work, prefix="tcz-") as tmp:
        tree = Path(tmp) / "root"
        unpack(tcz, tree)
        res.files = merge(tree, root, meta, _owners(tcz))
        res.has_modules = any((tree / p).is_dir() for p in ("lib/modules", "usr/local/lib/modules"))
        res.has_libs = any(
            f.endswith(".so") or ".so." in f
            for p in ("lib", "usr/lib", "usr/local/lib") if (tree / p).is_dir()
            for _, _, files in os.walk(tree / p) for f in files)
    marker = root / TCE_INSTALLED / name
    marker.parent.mkdir(parents=True, exist_ok=True)
    if marker.is_file() and marker.stat().st_size > 0:
        res.startup_script = True
    else:
        marker.write_bytes(b"")
        os.chmod(marker, 0o664)
        t = build_time()
        os.utime(marker, (t, t))
        meta.set(f"{TCE_INSTALLED}/{name}", stat.S_IFREG | 0o664, 0, STAFF_GID)
    if res.startup_script and run_scripts:
        _queue_setup(root, meta, f"/{TCE_INSTALLED}/{name}")
    return res


def _queue_setup(root: Path, meta: TreeMeta, script: str) -> None:
    lst = root / SETUP_LIST
    lines = lst.read_text().splitlines() if lst.is_file() else []
    if script not in lines:
        lines.append(script)
    lst.parent.mkdir(parents=True, exist_ok=True)
    lst.write_text("\n".join(lines) + "\n")
    meta.set(SETUP_LIST, stat.S_IFREG | 0o644, 0, 0)


def install_builtin(root: Path, meta: TreeMeta, tczs: list[Path], onboot: list[str]) -> None:
    """/tmp/builtin/optional + onboot.lst: tce-setup loads these with tce-load's own rules."""
    opt = root / "tmp/builtin/optional"
    opt.mkdir(parents=True, exist_ok=True)
    for d in ("tmp/builtin", "tmp/builtin/optional"):
        meta.set(d, stat.S_IFDIR | 0o775, 0, STAFF_GID)
    for tcz in tczs:
        for side in (tcz, tcz.with_name(tcz.name + ".dep"), tcz.with_name(tcz.name + ".md5.txt")):
            if side.is_file():
                shutil.copyfile(side, opt / side.name)
                meta.set(f"tmp/builtin/optional/{side.name}", stat.S_IFREG | 0o664, 0, STAFF_GID)
    (root / "tmp/builtin/onboot.lst").write_text("".join(f"{n}\n" for n in onboot))
    meta.set("tmp/builtin/onboot.lst", stat.S_IFREG | 0o664, 0, STAFF_GID)


def depmod(root: Path, kver: str) -> None:
    """depmod for the image's kernel, with Tiny Core's absolute kernel.tclocal link made relative
    for the run so depmod never wanders into the build host's /usr/local."""
    moddir = root / "lib/modules" / kver
    moddir.mkdir(parents=True, exist_ok=True)
    tclocal = moddir / "kernel.tclocal"
    saved = os.readlink(tclocal) if tclocal.is_symlink() else None
    if saved and saved.startswith("/"):
        tclocal.unlink()
        os.symlink(os.path.relpath(root / saved.lstrip("/"), moddir), tclocal)
    try:
        run(["depmod", "-a", "-b", root, kver], what=f"running depmod for {kver}")
    finally:
        if saved and saved.startswith("/"):
            tclocal.unlink()
            os.symlink(saved, tclocal)


def write_tcemirror(root: Path, meta: TreeMeta, url: str) -> None:
    """/opt/tcemirror holds exactly one line: the mirror tce-load will use on the running system."""
    path = resolve_in_root(root, "opt/tcemirror")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        path.unlink()
    path.write_text(url.rstrip("/") + "/\n")
    rel = path.relative_to(root).as_posix()
    old = meta.entries.get(rel)
    meta.set(rel, stat.S_IFREG | 0o664, old[1] if old else 0, old[2] if old else STAFF_GID)
