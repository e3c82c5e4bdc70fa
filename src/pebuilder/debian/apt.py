"""Debian packages fetched and unpacked into pebuilder's cache, never installed on the host.

Uses the host's own apt configuration (its mirror, its keys), so nothing here names a mirror.
Downloads land in a temporary folder and are renamed into the cache whole, so two builds at once
or an interrupted one never leave a half-written .deb behind.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from pebuilder.errors import Exit, PebuilderError
from pebuilder.fsutil import rmtree
from pebuilder.net.cache import cache_root
from pebuilder.runner import run


def show(package: str, arch: str | None = None) -> dict[str, str]:
    name = f"{package}:{arch}" if arch else package
    try:
        proc = run(["apt-cache", "show", "--no-all-versions", name], what=f"looking up {name}",
                   code=Exit.DOWNLOAD)
    except PebuilderError as exc:
        raise PebuilderError(f"Debian package {name} is not known to apt ({exc}); run 'apt-get update' "
                             "first, or check the name", Exit.DOWNLOAD) from None
    fields: dict[str, str] = {}
    key = None
    for line in proc.stdout.decode(errors="replace").splitlines():
        if not line.strip():
            if fields:
                break
            continue
        if line[0].isspace() and key:
            fields[key] += "\n" + line.strip()
            continue
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def kernel_package(meta: str, arch: str | None = None) -> str:
    """The versioned linux-image package a meta package such as linux-image-cloud-amd64 stands for."""
    if re.match(r"^linux-image-\d", meta):
        return meta
    depends = show(meta, arch).get("Depends", "")
    for alt in depends.split(","):
        name = alt.split("|")[0].strip().split(" ")[0]
        if re.match(r"^linux-image-\d", name):
            return name
    raise PebuilderError(f"{meta} does not depend on a versioned linux-image package", Exit.KERNEL)


def download(package: str, arch: str | None = None) -> Path:
    """The package's .deb in the cache, downloaded with `apt-get download` if not there yet."""
    fields = show(package, arch)
    filename = Path(fields.get("Filename", "")).name
    if not filename:
        raise PebuilderError(f"apt knows no file for {package}", Exit.DOWNLOAD)
    debs = cache_root() / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    target = debs / filename
    if target.exists():
        return target
    spec = f"{package}:{arch}" if arch else package
    with tempfile.TemporaryDirectory(dir=debs, prefix=".dl-") as tmp:
        run(["apt-get", "download", "-q", f"{spec}={fields['Version']}"], cwd=tmp,
            what=f"downloading {spec}", code=Exit.DOWNLOAD)
        got = list(Path(tmp).glob("*.deb"))
        if len(got) != 1:
            raise PebuilderError(f"apt-get download {spec} gave {len(got)} files", Exit.DOWNLOAD)
        os.replace(got[0], target)
    return target


def unpack(deb: Path) -> Path:
    """dpkg-deb -x into the cache (once per .deb); returns the unpacked root."""
    root = cache_root() / "unpacked" / deb.name.removesuffix(".deb")
    if root.is_dir():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=".x-"))
    try:
        run(["dpkg-deb", "-x", deb, tmp], what=f"unpacking {deb.name}", code=Exit.DOWNLOAD)
        try:
            os.replace(tmp, root)
        except OSError:
            if not root.is_dir():
                raise
            rmtree(tmp)  # another build unpacked the same package meanwhile: use theirs
    except BaseException:
        rmtree(tmp)
        raise
    return root
