"""Provisioning in the image: the pb-provision script and the settings it reads.

The same POSIX sh + busybox script serves the Debian live system (run by its rcS) and Tiny Core
(run from bootlocal.sh, the seed's own mechanism): it writes an image from a URL (or the live system
itself) to a disk, checks it, and reboots, powers off or leaves a shell.
"""

from __future__ import annotations

from pathlib import Path

from pebuilder.config.model import Provision
from pebuilder.fsroot import FsRoot

SCRIPTS = Path(__file__).resolve().parent / "scripts"
SCRIPT = SCRIPTS / "pb-provision"
CONF = "etc/pebuilder/provision.conf"


def conf_text(pv: Provision) -> str:
    """[provision] as the key=value lines pb-provision reads (values were checked to be one line)."""
    lines = ["# written by pebuilder from [provision]"]
    for key in ("image", "sha256", "install", "target", "then", "mirror", "hostname"):
        value = getattr(pv, key)
        if value:
            lines.append(f"{key}={value}")
    lines.append(f"grow={'yes' if pv.grow else 'no'}")
    lines += [f"script={line}" for line in pv.script]
    return "\n".join(lines) + "\n"


def install_script(fs: FsRoot, rel: str, name: str = "pb-provision") -> None:
    fs.copy_from(SCRIPTS / name, rel, 0o755)


def write_conf(fs: FsRoot, pv: Provision | None) -> bool:
    """The baked settings, or none (a stale file of an earlier build removed)."""
    if pv is None:
        if fs.exists(CONF):
            fs.remove(CONF)
        return False
    fs.mkdir("etc/pebuilder", 0o755, keep=True)
    fs.write(CONF, conf_text(pv), 0o600)
    return True
