"""What a Tiny Core template ISO is: where its kernel and initrds are, which release and kernel.

Read from the ISO tree (or just its boot files) and from the initrd's own files, never from the
build host.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pebuilder.errors import Exit, PebuilderError
from pebuilder.formats import cpio
from pebuilder.formats.kernel import bzimage_is_64bit, bzimage_version, elf_arch
from pebuilder.fsroot import FsRoot
from pebuilder.tinycore import isolinux_cfg

TC_MARKERS = ("etc/init.d/tc-config", "usr/bin/tce-load")


@dataclass
class TemplateInfo:
    isolinux_cfg: str  # path inside the ISO tree
    label: str
    kernel: str  # e.g. boot/vmlinuz64
    initrds: list[str]  # e.g. [boot/corepure64.gz]
    append: list[str]
    arch: str | None = None
    tc_version: str | None = None
    kernel_version: str | None = None
    module_dirs: list[str] = field(default_factory=list)
    is_tinycore: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def find_isolinux_cfg(tree: Path) -> str:
    """The config's path with every link resolved inside the tree (a link to a host file is not found)."""
    fs = FsRoot(tree)
    for cand in isolinux_cfg.CANDIDATES:
        if fs.is_file(cand):
            return fs.rel(fs.path(cand))
    raise PebuilderError(
        f"no isolinux.cfg in the template (looked for {', '.join(isolinux_cfg.CANDIDATES)}); a Tiny Core "
        "ISO boots through isolinux with boot/isolinux/isolinux.cfg", Exit.NO_ISOLINUX_CFG)


def boot_entry(tree: Path, cfg_rel: str) -> tuple[str, str, list[str], list[str]]:
    cfg = isolinux_cfg.parse((tree / cfg_rel).read_text(errors="replace"))
    label = cfg.default_label()
    if label is None or not label.kernel:
        raise PebuilderError(f"{cfg_rel} names no kernel in any label; cannot find what to boot",
                             Exit.NO_TEMPLATE)
    if not label.initrds:
        raise PebuilderError(f"{cfg_rel}: label {label.name!r} names no initrd; a Tiny Core ISO boots "
                             "an initrd such as /boot/corepure64.gz", Exit.NO_TEMPLATE)
    fs = FsRoot(tree)
    kernel = label.kernel.lstrip("/")
    initrds = [i.lstrip("/") for i in label.initrds]
    for rel in [kernel, *initrds]:
        if not fs.is_file(rel):
            raise PebuilderError(f"{cfg_rel} names /{rel}, which is not in the ISO", Exit.NO_TEMPLATE)
    # Later stages join these to the tree: give them with links resolved inside it, never to the host.
    return label.name, fs.rel(fs.path(kernel)), [fs.rel(fs.path(i)) for i in initrds], label.append


def describe(tree: Path) -> TemplateInfo:
    """Inspect an ISO tree holding at least the isolinux folder, the kernel and the initrds."""
    cfg_rel = find_isolinux_cfg(tree)
    name, kernel, initrds, append = boot_entry(tree, cfg_rel)
    info = TemplateInfo(isolinux_cfg=cfg_rel, label=name, kernel=kernel, initrds=initrds, append=append)
    wanted = {"etc/os-release", "usr/share/doc/tc/release.txt", "bin/busybox", *TC_MARKERS}
    found: dict[str, bytes] = {}
    modules: set[str] = set()
    for rel in initrds:
        for e, body in cpio.iter_archive(tree / rel):
            n = e.name.removeprefix("./")
            if n.startswith("lib/modules/") and n.count("/") >= 2:
                modules.add(n.split("/")[2])
            if n in wanted and e.kind == "file":
                found[n] = body.read(64 if n == "bin/busybox" else 65536)
    info.is_tinycore = any(m in found for m in TC_MARKERS)
    release = found.get("etc/os-release", b"").decode(errors="replace")
    for line in release.splitlines():
        if line.startswith("VERSION_ID="):
            info.tc_version = line.split("=", 1)[1].strip().strip('"')
    if not info.tc_version and "usr/share/doc/tc/release.txt" in found:
        info.tc_version = found["usr/share/doc/tc/release.txt"].decode(errors="replace").strip() or None
    info.module_dirs = sorted(modules)
    kpath = tree / kernel
    info.kernel_version = (info.module_dirs[0] if len(info.module_dirs) == 1 else None) or bzimage_version(kpath)
    info.arch = elf_arch(found.get("bin/busybox", b""))
    if info.arch is None:
        is64 = bzimage_is_64bit(kpath)
        info.arch = "x86_64" if is64 else ("x86" if is64 is False else None)
    return info


def require_tinycore(info: TemplateInfo, iso: Path) -> None:
    if not info.is_tinycore:
        raise PebuilderError(
            f"{iso} is not a Tiny Core ISO: its initrd ({', '.join(info.initrds)}) has neither "
            f"{' nor '.join(TC_MARKERS)}; expected a Tiny Core/CorePure64 ISO with boot/isolinux/isolinux.cfg, "
            "boot/vmlinuz* and boot/core*.gz", Exit.NOT_TINYCORE)
