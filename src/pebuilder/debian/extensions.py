"""Any Debian package as an extension in Tiny Core's format: NAME.tcz + .dep/.md5.txt/.info/.list.

Each package becomes one squashfs (root-owned, reproducible), its Debian dependencies that the base
lacks become extensions of their own (so a set is closed), and `.dep` names them, as tce-load reads
it. Files land on a merged /usr, as Debian bookworm installs them. Maintainer scripts are not run at
build time; what a package needs at load time (ldconfig, an account, an alternative) becomes the
startup script `usr/local/tce.installed/NAME`, where tce-load runs it. Packages that cannot live
as an extension (kernels, boot loaders, anything whose postinst rebuilds the initramfs) are
refused with the reason.

Built extensions are cached by package file (SHA256): asking again for the same version is free.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pebuilder.arch import Arch
from pebuilder.debian import trim as trims
from pebuilder.debian.archive import Archive
from pebuilder.debian.base import PACKAGE_USERS
from pebuilder.debian.lock import Pinned, fetch
from pebuilder.debian.resolve import Have, resolve
from pebuilder.errors import Exit, PebuilderError
from pebuilder.formats import deb, squashfs
from pebuilder.formats.tcz import md5_text
from pebuilder.fsroot import Budget, FsRoot
from pebuilder.fsutil import rmtree, write_text_atomic
from pebuilder.net.cache import DownloadCache

log = logging.getLogger("pebuilder.ext")

FORMAT = 3  # bump when the extension layout or the trim rules change: cached ones are rebuilt
MERGED = {"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib", "lib64": "usr/lib64", "lib32": "usr/lib32",
          "libx32": "usr/libx32"}
REFUSED_NAMES = (re.compile(r"^linux-(image|modules|headers)-"), re.compile(r"^grub-(pc|efi|common|.*-bin)"),
                 re.compile(r"^(systemd|systemd-sysv|sysvinit-core|init|udev|initramfs-tools|dracut)$"))
REFUSED_SCRIPTS = {"update-initramfs": "rebuilds the initramfs", "dkms": "builds kernel modules",
                   "grub-install": "installs a boot loader", "update-grub": "rewrites the boot loader's menu"}
ALTERNATIVE = re.compile(r"update-alternatives\s+(?:--quiet\s+)?--install\s+(\S+)\s+(\S+)\s+(\S+)\s+\d+")


class ExtensionRefused(PebuilderError):
    code = Exit.EXTENSION_MISSING


@dataclass
class Built:
    name: str
    version: str
    tcz: Path
    deps: list[str]
    deb_size: int


def refusal(name: str, postinst: str) -> str | None:
    """Why a package cannot work as a live extension, or None."""
    for pattern in REFUSED_NAMES:
        if pattern.match(name):
            return "kernels, boot loaders and init systems belong in the base, not in a live-loaded extension"
    for command, why in REFUSED_SCRIPTS.items():
        if re.search(rf"(^|[\s;&|]){re.escape(command)}(\s|$)", postinst, re.M):
            return f"its postinst runs {command} ({why}), which a live extension cannot redo"
    return None


def startup_script(name: str, files: list[str], postinst: str) -> str | None:
    """The load-time part of what the maintainer scripts would have done."""
    lines = []
    if any(re.search(r"\.so(\.\d+)*$", f) for f in files):
        lines.append("[ -x /sbin/ldconfig ] && /sbin/ldconfig 2>/dev/null")
    if name in PACKAGE_USERS:
        user, uid, gid, home, shell = PACKAGE_USERS[name]
        lines.append(f"grep -q '^{user}:' /etc/passwd || echo '{user}:x:{uid}:{gid}::{home}:{shell}' >> /etc/passwd")
        lines.append(f"grep -q '^{user}:' /etc/shadow 2>/dev/null || echo '{user}:!:::::::' >> /etc/shadow")
    for link, alt_name, target in ALTERNATIVE.findall(postinst):
        if "$" not in link + target:
            lines.append(f"[ -e {link} ] || ln -s {target} {link}  # alternative {alt_name}")
    if not lines:
        return None
    return "#!/bin/sh\n# pebuilder: what " + name + "'s maintainer scripts would do at install\n" + "\n".join(
        lines) + "\n"


def _ext_tree(root: Path) -> FsRoot:
    """An empty tree with merged /usr: package files for /lib land in usr/lib, as on the system."""
    fs = FsRoot(root)
    fs.mkdir(".", 0o755)
    fs.mkdir("usr", 0o755)
    for link, target in MERGED.items():
        fs.mkdir(target, 0o755)
        fs.symlink(link, target)
    return fs


def build_one(p: Pinned, deps: list[str], debfile: Path, out_dir: Path, scratch: Path, trim: bool,
              compression: str) -> Path:
    """NAME.tcz and its sidecars in `out_dir` from one package file."""
    control = deb.control(debfile)
    scripts = deb.control_files(debfile)
    postinst = scripts.get("postinst", b"").decode(errors="replace")
    why = refusal(p.name, postinst)
    if why:
        raise ExtensionRefused(f"{p.name} cannot be an extension: {why}")
    tree = scratch / f"ext-{p.name}"
    rmtree(tree)
    fs = _ext_tree(tree)
    files = deb.extract(debfile, fs, Budget(max_bytes=4 << 30, what=p.deb_name), trims.TRIM if trim else None)
    for link in MERGED:
        fs.remove(link)
    for target in MERGED.values():
        if not any(fs.path(target).iterdir()):
            fs.remove(target)
    script = startup_script(p.name, files, postinst)
    if script:
        fs.mkdir("usr/local", 0o755, keep=True)
        fs.mkdir("usr/local/tce.installed", 0o775, 0, 50)
        fs.write(f"usr/local/tce.installed/{p.name}", script, 0o755)
    name = f"{p.name}.tcz"
    tcz = out_dir / name
    out_dir.mkdir(parents=True, exist_ok=True)
    squashfs.make(tree, fs.meta, tcz, compression=compression, block_size="128K" if compression != "xz" else "1M",
                  scratch=scratch)
    listing = sorted("/" + r for r in fs.walk() if not fs.path(r, follow_last=False).is_dir())
    rmtree(tree)
    write_text_atomic(out_dir / f"{name}.list", "".join(f"{f}\n" for f in listing))
    write_text_atomic(out_dir / f"{name}.md5.txt", md5_text(tcz))
    if deps:
        write_text_atomic(out_dir / f"{name}.dep", "".join(f"{d}.tcz\n" for d in deps))
    size = tcz.stat().st_size
    info = {"Title": name, "Description": control.get("Description", "").split("\n")[0],
            "Version": p.version, "Author": control.get("Maintainer", ""),
            "Original-site": control.get("Homepage", "https://packages.debian.org/" + p.name),
            "Copying-policy": "see /usr/share/doc/" + p.name + "/copyright",
            "Size": f"{size / 1024:.0f}K", "Extension_by": "pebuilder (from Debian " + p.deb_name + ")",
            "Tags": control.get("Section", ""), "Comments": "built from the Debian package; dependencies in .dep",
            "Current": p.version}
    write_text_atomic(out_dir / f"{name}.info", "".join(f"{k + ':':<16}{v}\n" for k, v in info.items()))
    return tcz


class Builder:
    """Builds extensions for one archive (suite + arch) against what a base already holds."""

    def __init__(self, archive: Archive, arch: Arch, cache: DownloadCache, have: Have, trim: bool = True,
                 compression: str = "gzip"):
        self.archive = archive
        self.arch = arch
        self.cache = cache
        self.have = have
        self.trim = trim
        self.compression = compression

    def plan(self, names: list[str]) -> tuple[list[Pinned], dict[str, list[str]]]:
        res = resolve(names, self.archive, self.have.without(names))
        for n in res.notes:
            log.info("%s", n)
        pinned = [Pinned.of(p, res.added_deps(p.name)) for p in res.packages]
        return pinned, {p.name: res.added_deps(p.name) for p in res.packages}

    def build(self, names: list[str], out_dir: Path) -> list[Built]:
        pinned, deps = self.plan(names)
        for p in pinned:  # refuse before downloading anything
            for pattern in REFUSED_NAMES:
                if pattern.match(p.name):
                    chain = "" if p.name in names else f" (a dependency of {', '.join(names)})"
                    raise ExtensionRefused(f"{p.name}{chain} cannot be an extension: kernels, boot loaders and "
                                           "init systems belong in the base, not in a live-loaded extension")
        out: list[Built] = []
        out_dir.mkdir(parents=True, exist_ok=True)
        for p in pinned:
            cached = self.cached(p, deps[p.name])
            for f in sorted(cached.iterdir()):
                shutil.copyfile(f, out_dir / f.name)
            out.append(Built(p.name, p.version, out_dir / f"{p.name}.tcz", deps[p.name], p.size))
        return out

    def cached(self, p: Pinned, deps: list[str]) -> Path:
        """The extension's files, built once per package file, dependency list and options."""
        key = json.dumps([FORMAT, p.sha256, deps, self.trim, self.compression, os.environ.get("SOURCE_DATE_EPOCH")])
        digest = hashlib.sha256(key.encode()).hexdigest()[:24]
        folder = self.cache.root / "ext" / self.arch.debian / f"{p.name}_{digest}"
        if (folder / f"{p.name}.tcz").is_file():
            return folder
        debfile = fetch(p, self.cache)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".build-"))
        try:
            build_one(p, deps, debfile, tmp / "out", tmp / "scratch", self.trim, self.compression)
            rmtree(tmp / "scratch")
            try:
                os.replace(tmp / "out", folder)
            except OSError:
                if not (folder / f"{p.name}.tcz").is_file():
                    raise
        finally:
            rmtree(tmp)
        return folder


def repo_path(suite: str, arch: Arch) -> str:
    """Where a repository keeps extensions, in Tiny Core's naming: <release>/<arch>/tcz."""
    return f"{suite}/{arch.tinycore}/tcz"
