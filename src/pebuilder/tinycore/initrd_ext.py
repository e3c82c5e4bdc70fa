"""Putting extensions inside the initrd, the ways Tiny Core knows.

Extracted extensions must look loaded to tce-load (a `tce.installed` marker each) and, unless the
config says `ignore`, have their startup scripts run at boot: they are queued in /tmp/setup.lst,
which tce-setup runs after all extensions are loaded, exactly where tce-load would queue them.
Every write goes through FsRoot, so a link in the image (`tmp -> /somewhere`) never sends
pebuilder's writes out of the tree.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path

from pebuilder.formats import squashfs
from pebuilder.fsroot import Budget, FsRoot

TCE_INSTALLED = "usr/local/tce.installed"
SETUP_LIST = "tmp/setup.lst"
STAFF_GID = 50
LIB_DIRS = ("lib/", "usr/lib/", "usr/local/lib/")


@dataclass
class ExtractResult:
    name: str
    files: int = 0
    has_modules: bool = False
    has_libs: bool = False
    startup_script: bool = False


def install_extracted(fs: FsRoot, tcz: Path, scratch: Path, run_scripts: bool, budget: Budget) -> ExtractResult:
    name = tcz.name[: -len(".tcz")]
    res = ExtractResult(name=name)
    entries = squashfs.extract(tcz, fs, scratch, budget)
    names = [e.name for e in entries if e.name]
    res.files = len(names)
    res.has_modules = any(n.startswith(("lib/modules/", "usr/local/lib/modules/")) for n in names)
    res.has_libs = any(n.startswith(LIB_DIRS) and (n.endswith(".so") or ".so." in n) for n in names)
    marker = f"{TCE_INSTALLED}/{name}"
    data = fs.read_bytes(marker)
    if data:
        res.startup_script = True
    else:
        fs.mkdir(TCE_INSTALLED, 0o775, 0, STAFF_GID, keep=True)
        fs.write(marker, b"", 0o664, 0, STAFF_GID)
    if res.startup_script and run_scripts:
        queue_setup(fs, f"/{marker}")
    return res


def queue_setup(fs: FsRoot, script: str) -> None:
    lines = fs.read_lines(SETUP_LIST)
    if script not in lines:
        lines.append(script)
    fs.write(SETUP_LIST, "\n".join(lines) + "\n", 0o644)


def install_builtin(fs: FsRoot, tczs: list[Path], onboot: list[str]) -> None:
    """/tmp/builtin/optional + onboot.lst: tce-setup loads these with tce-load's own rules."""
    for d in ("tmp/builtin", "tmp/builtin/optional"):
        fs.mkdir(d, 0o775, 0, STAFF_GID)
    for tcz in tczs:
        for side in (tcz, tcz.with_name(tcz.name + ".dep"), tcz.with_name(tcz.name + ".md5.txt")):
            if side.is_file():
                fs.copy_from(side, f"tmp/builtin/optional/{side.name}", 0o664, 0, STAFF_GID)
    fs.write("tmp/builtin/onboot.lst", "".join(f"{n}\n" for n in onboot), 0o664, 0, STAFF_GID)


def write_tcemirror(fs: FsRoot, url: str) -> None:
    """/opt/tcemirror holds exactly one line: the mirror tce-load will use on the running system."""
    mode, uid, gid = fs.owner("opt/tcemirror", (0o664, 0, STAFF_GID))
    fs.write("opt/tcemirror", url.rstrip("/") + "/\n", stat.S_IMODE(mode), uid, gid)
