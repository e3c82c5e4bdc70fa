"""The one build model both config readers produce; everything downstream reads only this."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

Placement = Literal["initrd", "onboot", "builtin", "ondemand"]
PLACEMENTS: tuple[str, ...] = ("initrd", "onboot", "builtin", "ondemand")
ScriptPolicy = Literal["run", "ignore"]


@dataclass
class ExtensionSpec:
    name: str  # normalised: always ends in .tcz
    placement: Placement


@dataclass
class IsoOutput:
    path: Path
    volume_id: str = "PEBUILDER"
    uefi: bool = True


TABLES = ("msdos", "gpt")
FIRMWARES = ("bios", "uefi", "both")
FILESYSTEMS = ("ext4", "ext3", "ext2")
DISK_FORMATS = ("raw", "qcow2", "vmdk")
PERSIST = ("home", "opt", "restore")


@dataclass
class DiskOutput:
    path: Path
    size: int = 20 << 30  # bytes; sparse, so allocation follows content
    table: str = "msdos"
    firmware: str = "bios"
    filesystem: str = "ext4"
    label: str = "PEBUILDER"
    format: str = "raw"
    data_size: int | None = None  # a second partition for persistent data
    data_label: str = "PBDATA"
    persist: list[str] = field(default_factory=list)  # boot codes aimed at the data (or root) partition
    mydata: Path | None = None  # folder restored at boot from /tce/mydata.tgz


@dataclass
class KernelSpec:
    """A kernel to use instead of the template's: a Debian package, or a local vmlinuz + modules."""

    debian: str | None = None  # e.g. linux-image-cloud-amd64
    vmlinuz: Path | None = None
    modules: Path | None = None  # a folder holding lib/modules/<kver>


@dataclass
class User:
    name: str
    uid: int
    groups: list[str] = field(default_factory=list)
    shell: str = "/bin/sh"
    sudo: bool = False
    password_hash: str | None = None  # $6$...; made from password_file / password_env when those are set
    password_file: Path | None = None
    password_env: str | None = None
    authorized_keys: list[str] = field(default_factory=list)


@dataclass
class FileOverlay:
    source: Path
    dest: str
    mode: int | None = None
    uid: int = 0
    gid: int = 0


@dataclass
class Customisation:
    users: list[User] = field(default_factory=list)
    lock_root: bool = True
    autologin: bool = True
    serial_getty: bool = False
    ssh: bool = False
    ssh_host_keys: Path | None = None  # folder of ssh_host_*_key files; None: generated at first boot
    sshd_config: Path | None = None
    ca_bundle: str | None = None  # "host" or a PEM file path
    bootlocal: list[str] = field(default_factory=list)
    bootsync: list[str] = field(default_factory=list)
    filetool: list[str] = field(default_factory=list)
    hostname: str | None = None
    files: list[FileOverlay] = field(default_factory=list)
    kiosk_url: str | None = None
    modules: list[str] = field(default_factory=list)  # loaded early at boot

    def empty(self) -> bool:
        return self == Customisation()


@dataclass
class BuildConfig:
    source: Path | None  # the config file this came from
    template_iso: Path | None  # None: the built-in Debian template
    work_dir: Path
    ext_dirs: list[Path] = field(default_factory=list)
    extensions: list[ExtensionSpec] = field(default_factory=list)
    boot_codes: list[str] = field(default_factory=list)
    extract_scripts: ScriptPolicy = "run"
    copy2fs_all: bool = False
    copy2fs: list[str] = field(default_factory=list)
    menu_timeout: float | None = None  # seconds; None keeps the template's
    serial: bool = False
    initrd_compression: str = "gzip"
    initrd_level: int = 9
    mirrors: list[str] = field(default_factory=list)  # Tiny Core mirror base URLs, tried in order
    repo: str | None = None  # e.g. 14.x/x86_64/tcz; derived from the template when None
    offline: bool = False
    kernel: KernelSpec | None = None
    custom: Customisation = field(default_factory=Customisation)
    iso: IsoOutput | None = None
    disks: list[DiskOutput] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def names(self, placement: str) -> list[str]:
        return [e.name for e in self.extensions if e.placement == placement]

    def to_dict(self) -> dict:
        def clean(v):
            if isinstance(v, Path):
                return str(v)
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items() if x is not None}
            if isinstance(v, list):
                return [clean(x) for x in v]
            return v

        d = clean(asdict(self))
        d.pop("warnings", None)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


SIZE_UNITS = {"": 1, "B": 1, "K": 1 << 10, "KIB": 1 << 10, "M": 1 << 20, "MIB": 1 << 20, "G": 1 << 30,
              "GIB": 1 << 30, "T": 1 << 40, "TIB": 1 << 40}


def parse_size(value: str | int) -> int:
    """Sizes as users write them: 20G, 512MiB, 1048576. Units are powers of 1024."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError(f"{value} is not a positive size")
        return value
    text = str(value).strip().upper()
    num = text.rstrip("BKMGTI")
    unit = text[len(num):]
    try:
        n = float(num)
    except ValueError:
        raise ValueError(f"{value!r} is not a size; write e.g. 20G, 512M or a byte count") from None
    if unit not in SIZE_UNITS or n <= 0:
        raise ValueError(f"{value!r} is not a size; write e.g. 20G, 512M or a byte count")
    return int(n * SIZE_UNITS[unit])


def tcz_name(name: str) -> str:
    """Tiny Core's own rule: an extension name always carries the .tcz suffix."""
    name = name.strip()
    return name if name.endswith(".tcz") else name + ".tcz"
