"""The build model, and with it the registry of every config key.

Each key is declared exactly once, here, as a dataclass field whose metadata says its type, default,
accepted values, help and command-line flag. The TOML reader, the `config show` emitter, the CLI
overrides and the README's key table are all generated from these declarations (see registry.py),
so a key cannot exist in one of them and be missing in another.

Plain dataclasses rather than pydantic or msgspec: the declarations stay readable as a table, and
the reader's messages keep pebuilder's `file: table.key: what is wrong` form without translating
another library's errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pebuilder.config import validate as v

PLACEMENTS: tuple[str, ...] = ("initrd", "onboot", "builtin", "ondemand")
SYSTEMS = ("tinycore", "debian")
COMPRESSIONS = ("gzip", "xz", "zstd", "none")
TABLES = ("msdos", "gpt")
FIRMWARES = ("bios", "uefi", "both")
FILESYSTEMS = ("ext4", "ext3", "ext2")
DISK_FORMATS = ("raw", "qcow2", "vmdk")
PERSIST = ("home", "opt", "restore")
MAX_SIZE = 64 << 40  # 64 TiB: beyond what any target here can address sensibly


def key(default: Any, kind: str, help: str, **meta: Any) -> Any:  # noqa: A002 - "help" reads best here
    """Declare a config key: `kind` is how the reader converts it (see registry.CONVERTERS)."""
    meta = {"kind": kind, "help": help, **meta}
    if isinstance(default, list):
        items = list(default)
        return field(default_factory=lambda: list(items), metadata=meta)
    return field(default=default, metadata=meta)


def table(cls: type, help: str, *, optional: bool = False) -> Any:  # noqa: A002
    kind = "optional_table" if optional else "table"
    if optional:
        return field(default=None, metadata={"kind": kind, "cls": cls, "help": help})
    return field(default_factory=cls, metadata={"kind": kind, "cls": cls, "help": help})


def tables(cls: type, help: str) -> Any:  # noqa: A002
    return field(default_factory=list, metadata={"kind": "tables", "cls": cls, "help": help})


# -- sections ---------------------------------------------------------------------------------------

@dataclass
class Template:
    iso: Path | None = key(None, "path", "Tiny Core ISO to remaster (ezremaster's cd_location); a folder "
                           "holding an extracted CD works too", only="tinycore")


@dataclass
class Base:
    distro: str = key("debian", "str", "distribution the live system is built from", choices=("debian",),
                      only="debian")
    suite: str = key("bookworm", "str", "Debian suite: bookworm (12) or trixie (13, current stable); others are "
                     "tried with a warning", check=v.deb_name, cli="--suite")
    variant: str = key("tiny", "str", "tiny: busybox + the libraries packages need, no dpkg; minbase: "
                       "mmdebstrap --variant=minbase with dpkg and apt", choices=("tiny", "minbase"),
                       only="debian")
    arch: str | None = key(None, "arch", "target architecture (amd64/x86_64, arm64/aarch64); default: the "
                           "host's", cli="--arch", only="debian")
    packages: list[str] = key([], "strings", "extra Debian packages in the base", check=v.deb_name,
                              only="debian")
    mirror: str | None = key(None, "str", "Debian mirror URL; default: the host's configured apt mirror",
                             check=v.url)
    trim: bool = key(True, "bool", "drop docs, man pages, translations and locales but C.UTF-8", only="debian")
    compression: str = key("xz", "str", "compression of /os/core.sqfs (xz adds the BCJ filter of the arch)",
                           choices=("xz", "zstd", "gzip", "lz4", "lzo"), only="debian")


@dataclass
class Work:
    dir: Path = key(Path("build"), "path", "work folder (ezremaster's temp_dir): image/, extract/, .pebuilder/",
                    inert="where pebuilder keeps its work trees")
    extract_limit: int = key(4 << 30, "size", "largest total (apparent) size pebuilder unpacks from an "
                             "archive someone else made",
                             inert="a safety limit: an image either fits and is the same, or the build stops")


@dataclass
class Extensions:
    dirs: list[Path] = key([], "paths", "local folders with extensions, searched before mirrors",
                           cli="--ext-dir")
    initrd: list[str] = key([], "strings", "extracted into the initrd (app_extract_initrd)", check=v.ext_name,
                            only="tinycore")
    onboot: list[str] = key([], "strings", "loaded at boot (Tiny Core: cde/optional + onboot.lst; Debian: "
                            "/ext + onboot.lst)", check=v.ext_name)
    builtin: list[str] = key([], "strings", "Tiny Core: /tmp/builtin in the initrd, loaded by tce-setup",
                             check=v.ext_name, only="tinycore")
    ondemand: list[str] = key([], "strings", "on the medium, loaded when asked (tce-load -i)", check=v.ext_name)
    scripts: str = key("run", "str", "startup scripts of extracted extensions (extract_tcz_script)",
                       choices=("run", "ignore"), only="tinycore")
    copy2fs: bool | list[str] = key(False, "copy2fs", "true: copy2fs.flg (all copied to RAM); a list: "
                                    "copy2fs.lst", check=v.ext_name, only="tinycore")
    mirrors: list[str] = key([], "strings", "extension mirror base URLs, tried in order; the first goes "
                             "to /opt/tcemirror", check=v.url, cli="--mirror")
    repo: str | None = key(None, "str", "repository path on the mirror, e.g. 14.x/x86_64/tcz; default: "
                           "from the template", check=v.repo, only="tinycore")
    offline: bool = key(False, "bool", "use only the download cache", cli="--offline",
                        inert="only whether downloads may use the network")


@dataclass
class Boot:
    codes: list[str] = key([], "strings", "boot codes added to the kernel command line (cc)",
                           check=v.boot_code, whole=v.cmdline)
    timeout: float | None = key(None, "float", "boot menu timeout in seconds; default: the template's",
                                range=(0, 3600), cli="--menu-timeout")
    serial: bool = key(False, "bool", "boot menus and kernel on the first serial port", cli="--serial")
    modules: list[str] = key([], "strings", "kernel modules loaded early at boot", check=v.module_name,
                               only="tinycore")
    autologin: bool = key(True, "bool", "Tiny Core's automatic login on tty1 (false: noautologin)")
    serial_getty: bool = key(False, "bool", "a login prompt on the first serial port")
    hostname: str | None = key(None, "str", "host name (host= boot code)", check=v.hostname)
    secure_boot: bool = key(False, "bool", "UEFI boots through Debian's signed shim, GRUB and kernel (amd64), so "
                            "the image starts with Secure Boot on", only="debian")


@dataclass
class Initrd:
    compression: str | None = key(None, "str", "initrd compression; default: gzip for Tiny Core (what its tools "
                                  "and old kernels know), xz for the Debian system (smaller)", choices=COMPRESSIONS)
    level: int | str = key("default", "level", "fast, default, best, seed (remaster.sh's gzip -2 + advdef "
                           "-z4) or a number")


@dataclass
class Kernel:
    package: str | None = key(None, "str", "Debian kernel package, e.g. linux-image-cloud-amd64; default for "
                              "the Debian system: linux-image-<arch>", check=v.deb_name)
    vmlinuz: Path | None = key(None, "path", "a local kernel image instead of a package", only="tinycore")
    modules_dir: Path | None = key(None, "path", "folder holding lib/modules/<version> for vmlinuz",
                                   only="tinycore")
    modules: list[str] = key([], "strings", "Debian system: module names or folders under kernel/ "
                             "(e.g. drivers/net) shipped in the system; empty: a set for VMs and common "
                             "hardware; [\"all\"]: every module", check=v.one_line, only="debian")
    firmware: bool = key(False, "bool", "Debian system: ship firmware files the modules ask for", only="debian")


@dataclass
class User:
    name: str = key("", "str", "login name", check=v.user_name, required=True)
    uid: int = key(0, "int", "numeric user id", range=(1, 65533), required=True)
    groups: list[str] = key([], "strings", "extra groups (must exist in the image)", check=v.user_name)
    shell: str = key("/bin/sh", "str", "login shell", check=v.shell)
    sudo: bool = key(False, "bool", "passwordless sudo")
    password_hash: str | None = key(None, "str", "a crypt(3) hash ($6$...)", check=v.crypt_hash, secret=True)
    password_file: Path | None = key(None, "path", "file holding the password (hashed at build time)")
    password_env: str | None = key(None, "str", "environment variable holding the password",
                                   check=v.module_name)
    authorized_keys: list[str] = key([], "strings", "SSH public keys, one per item", check=v.authorized_key)
    replace: bool = key(False, "bool", "allow replacing an account the image already has (root, tc, ...)")


@dataclass
class Accounts:
    lock_root: bool = key(True, "bool", "lock root's password")
    salt_file: Path | None = key(None, "path", "secret for reproducible password salts (with "
                                 "SOURCE_DATE_EPOCH); default: .pebuilder-salt beside the config")


@dataclass
class Ssh:
    enable: bool = key(False, "bool", "configure and start sshd (default: true when [ssh] is present)")
    host_keys: Path | None = key(None, "path", "folder of ssh_host_*_key files; default: made at first boot")
    config: Path | None = key(None, "path", "sshd_config to install instead of pebuilder's")


@dataclass
class Certificates:
    bundle: str | None = key(None, "bundle", "CA bundle: \"host\" or a PEM file")


@dataclass
class Services:
    bootlocal: list[str] = key([], "strings", "shell lines run at the end of boot (Tiny Core: "
                               "opt/bootlocal.sh)", check=v.one_line)
    bootsync: list[str] = key([], "strings", "Tiny Core: lines for opt/bootsync.sh", check=v.one_line,
                              only="tinycore")
    filetool: list[str] = key([], "strings", "Tiny Core: paths added to opt/.filetool.lst", check=v.one_line,
                              only="tinycore")


@dataclass
class FileSpec:
    source: Path = key(Path(), "path", "file or folder on the build host", required=True)
    dest: str = key("", "str", "absolute path in the image", check=v.abs_dest, required=True)
    mode: int | None = key(None, "mode", "octal mode, e.g. \"0644\"; default: the source's")
    owner: str = key("0:0", "str", "numeric uid:gid", check=v.owner)


@dataclass
class Kiosk:
    url: str | None = key(None, "str", "the seed's Xorg + browser autostart at this URL", check=v.url,
                          only="tinycore")


@dataclass
class IsoOutput:
    path: Path = key(Path("pebuilder.iso"), "path", "where the ISO goes", inert="where the ISO is written")
    volume_id: str = key("PEBUILDER", "str", "ISO volume id (also the label the live system finds its "
                         "medium by)", check=v.label(32))
    uefi: bool = key(True, "bool", "add a GRUB EFI system partition")


@dataclass
class DiskOutput:
    path: Path = key(Path(), "path", "where the disk image goes", required=True)
    size: int = key(20 << 30, "size", "virtual size (sparse: allocation follows content)")
    table: str = key("msdos", "str", "partition table", choices=TABLES)
    firmware: str = key("bios", "str", "boot firmware", choices=FIRMWARES)
    filesystem: str = key("ext4", "str", "root filesystem", choices=FILESYSTEMS)
    label: str = key("PEBUILDER", "str", "root filesystem label", check=v.label(16))
    format: str = key("raw", "str", "image format", choices=DISK_FORMATS)
    data_size: int | None = key(None, "size", "optional second partition for data")
    data_label: str = key("PBDATA", "str", "label of the data partition", check=v.label(16))
    persist: list[str] = key([], "strings", "Tiny Core: home=/opt=/restore= aimed at the data (or root) "
                             "partition", choices=PERSIST, only="tinycore")
    mydata: Path | None = key(None, "path", "Tiny Core: folder restored at boot from /tce/mydata.tgz",
                              only="tinycore")


@dataclass
class NetbootOutput:
    dir: Path = key(Path(), "path", "folder for vmlinuz, initrd.img, boot.ipxe, a GRUB snippet and SHA256SUMS",
                    required=True, inert="where the files are written")
    mode: str = key("embed", "str", "embed: the initramfs holds the whole system; fetch: it downloads "
                    "/os and /ext from url (pb.fetch=) and checks their sha256", choices=("embed", "fetch"))
    url: str | None = key(None, "str", "where the folder is served, for fetch mode", check=v.url, only="debian")


@dataclass
class Output:
    iso: IsoOutput | None = table(IsoOutput, "a hybrid BIOS+UEFI ISO", optional=True)
    disk: list[DiskOutput] = tables(DiskOutput, "bootable disk images (packagehd)")
    netboot: NetbootOutput | None = table(NetbootOutput, "network boot: kernel + one initramfs, iPXE and GRUB",
                                          optional=True)


@dataclass
class Provision:
    image: str | None = key(None, "str", "image URL (raw, .gz, .xz, .zst) written to the target disk",
                            check=v.url)
    sha256: str | None = key(None, "str", "sha256 of the file at image (as served)", check=v.sha256)
    install: str | None = key(None, "str", "\"self\": write the running live system to the target disk; "
                              "\"debian\": install Debian on it from the mirror (debootstrap, GRUB, users)",
                              choices=("self", "debian"), only="debian")
    target: str = key("auto", "str", "disk to write, e.g. /dev/vda; auto: the only disk that is not the boot "
                      "medium and is large enough", check=v.target)
    then: str = key("reboot", "str", "after provisioning", choices=("reboot", "poweroff", "shell"))
    grow: bool = key(True, "bool", "grow the written disk's last partition and its ext2/3/4 file system to "
                     "the whole target disk (the Debian PE gets sfdisk and resize2fs for it)")
    script: list[str] = key([], "strings", "shell lines run afterwards, the installed root mounted at /target "
                            "(preseed's late_command)", check=v.one_line)
    suite: str | None = key(None, "str", "install = \"debian\": the suite installed; default: [base] suite",
                            check=v.deb_name, only="debian")
    mirror: str | None = key(None, "str", "install = \"debian\": where the PE fetches the packages (a mirror, a "
                             "proxy or a copy with the mirror's layout); default: the mirror the build resolved "
                             "against", check=v.url, only="debian")
    packages: list[str] = key([], "strings", "install = \"debian\": packages added to the installed system",
                              check=v.deb_name, only="debian")
    kernel: str | None = key(None, "str", "install = \"debian\": kernel package; default: linux-image-<arch>",
                             check=v.deb_name, only="debian")
    hostname: str = key("debian", "str", "install = \"debian\": the installed system's host name",
                        check=v.hostname, only="debian")
    swap: int | None = key(None, "size", "install = \"debian\": a swap partition of this size", only="debian")
    initramfs: str = key("generic", "str", "install = \"debian\": generic (every storage driver, as "
                         "debian-installer does) or targeted (only what this machine needs: smaller, built in a "
                         "fraction of the time)", choices=("generic", "targeted"), only="debian")


@dataclass
class Config:
    system: str | None = key(None, "str", "tinycore (remaster [template] iso) or debian (the live system); "
                             "default: tinycore when [template] iso is set", choices=SYSTEMS)
    template: Template = table(Template, "the Tiny Core ISO to remaster")
    base: Base = table(Base, "the Debian live system's base")
    work: Work = table(Work, "work folder")
    extensions: Extensions = table(Extensions, "extensions")
    boot: Boot = table(Boot, "boot menu and kernel command line")
    initrd: Initrd = table(Initrd, "initrd packing")
    kernel: Kernel = table(Kernel, "kernel")
    users: list[User] = tables(User, "accounts")
    accounts: Accounts = table(Accounts, "account policy")
    ssh: Ssh = table(Ssh, "SSH server")
    certificates: Certificates = table(Certificates, "CA certificates")
    services: Services = table(Services, "commands run at boot")
    files: list[FileSpec] = tables(FileSpec, "files copied into the image")
    kiosk: Kiosk = table(Kiosk, "kiosk autostart")
    output: Output = table(Output, "outputs")
    provision: Provision | None = table(Provision, "what the PE does once it is up (Debian system)", optional=True)
    # Not config keys: where the model came from, and what the reader wants the user to know.
    source: Path | None = field(default=None, compare=False, metadata={"kind": "internal"})
    warnings: list[str] = field(default_factory=list, compare=False, metadata={"kind": "internal"})

    @property
    def kind(self) -> str:
        """Which system this config builds."""
        if self.system:
            return self.system
        return "tinycore" if self.template.iso is not None else "debian"

    @property
    def work_dir(self) -> Path:
        return self.work.dir

    def outputs(self) -> list[Path]:
        out = [self.output.iso.path] if self.output.iso else []
        out += [self.output.netboot.dir] if self.output.netboot else []
        return out + [d.path for d in self.output.disk]


SIZE_UNITS = {"": 1, "B": 1, "K": 1 << 10, "KIB": 1 << 10, "M": 1 << 20, "MIB": 1 << 20, "G": 1 << 30,
              "GIB": 1 << 30, "T": 1 << 40, "TIB": 1 << 40}


def parse_size(value: str | int) -> int:
    """Sizes as users write them: 20G, 512MiB, 1048576. Units are powers of 1024."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a size; write e.g. 20G, 512M or a byte count")
    if isinstance(value, int):
        n_bytes = value
    else:
        text = str(value).strip().upper()
        num = text.rstrip("BKMGTI")
        unit = text[len(num):]
        if unit not in SIZE_UNITS or not num.replace(".", "", 1).isdigit():
            raise ValueError(f"{value!r} is not a size; write e.g. 20G, 512M or a byte count")
        n_bytes = int(float(num) * SIZE_UNITS[unit])
    if n_bytes <= 0:
        raise ValueError(f"{value!r} is not a positive size")
    if n_bytes > MAX_SIZE:
        raise ValueError(f"{value!r} is larger than the 64 TiB pebuilder supports")
    return n_bytes
