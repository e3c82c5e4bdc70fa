"""The netinstall plan: what the PE installs on a disk, resolved and verified at build time.

debian-installer's way is to boot a small system and run debootstrap against a mirror. Run as is
inside a PE under emulation, debootstrap spends most of its time reading the full Packages index
(60,000 stanzas) with perl, several times over: minutes before the first download. So pebuilder
resolves the package set on the build host, against the index it verified with gpgv, and bakes into
the PE a plan: the closure's Packages stanzas (a small index debootstrap reads in a blink), a Release
file holding that index's checksums, and the list of .deb files with their sha256.

At provisioning time the PE still builds the system on the disk from the mirror: it downloads each
.deb from the mirror (or a proxy, or a local copy: any URL with the mirror's layout), checks it
against the plan, lays the files out as a local mirror on the target disk (so an interrupted install
keeps what it fetched) and runs debootstrap on it, then the kernel, GRUB and the configuration in a
chroot. Integrity is carried by hashes: Debian's signature was checked when the plan was made, and
the plan travels inside the PE image.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pebuilder.arch import Arch
from pebuilder.debian.archive import Archive, Package
from pebuilder.debian.resolve import resolve
from pebuilder.fsroot import FsRoot

PLAN_DIR = "usr/share/pebuilder/netinstall"
MIB = 1 << 20
# What every installed system gets beyond minbase: an init, the tools the PE's script runs in the
# chroot, and DHCP through systemd-networkd (part of systemd).
SYSTEM = ["systemd-sysv", "udev", "kmod", "initramfs-tools", "e2fsprogs", "ifupdown", "netbase", "dbus",
          "libpam-systemd"]  # the last two: what debian-installer gets from systemd's Recommends


@dataclass
class Plan:
    suite: str
    arch: str
    packages: list[Package]
    include: list[str]  # what debootstrap is asked for beyond its own minbase set
    sources: list[str]  # the mirror URIs the packages came from, main mirror first

    def source_index(self, p: Package) -> int:
        return self.sources.index(p.uri)


def wanted(arch: Arch, kernel: str | None, extra: list[str], ssh: bool, sudo: bool, certificates: bool) -> list[str]:
    """The packages the installed system asks for by name (their dependencies come along)."""
    names = [kernel or f"linux-image-{arch.debian}", *SYSTEM]
    if arch.bios:
        names += ["grub-pc", f"grub-efi-{arch.debian}-bin"]
    elif arch.grub_efi_package:
        names += [str(arch.grub_efi_package).replace("-bin", "")]
    if ssh:
        names.append("openssh-server")
    if sudo:
        names.append("sudo")
    if certificates:
        names.append("ca-certificates")
    names += extra
    return list(dict.fromkeys(names))


def make(archive: Archive, arch: Arch, suite: str, include: list[str]) -> Plan:
    """minbase (every Priority: required package, and apt), the include list, and their dependencies."""
    required = sorted(n for n in archive.names() if _required(archive, n))
    if suite == "bookworm" and archive.get("usr-is-merged"):
        required.append("usr-is-merged")  # what debootstrap adds for bookworm's merged /usr (not usrmerge)
    names = list(dict.fromkeys([*required, "apt", *include]))
    res = resolve(names, archive, None)
    sources: list[str] = []
    for p in res.packages:
        if p.uri not in sources:
            sources.append(p.uri)
    main = [s for s in sources if not s.endswith("-security")]
    sources = main[:1] + [s for s in sources if s not in main[:1]]
    return Plan(suite, arch.debian, list(res.packages), include, sources)


def _required(archive: Archive, name: str) -> bool:
    p = archive.get(name)
    return p is not None and p.priority == "required" and p.arch in ("all", archive.arch.debian)


def stanza(p: Package) -> str:
    """A Packages stanza with what debootstrap reads: names, versions, relations, file and checksums."""
    fields = [("Package", p.name), ("Version", p.version), ("Architecture", p.arch),
              ("Essential", "yes" if p.essential else ""), ("Priority", p.priority), ("Section", p.section),
              ("Multi-Arch", p.multi_arch), ("Pre-Depends", p.pre_depends_field), ("Depends", p.depends_field),
              ("Provides", p.provides_field), ("Filename", p.filename), ("Size", str(p.size)),
              ("SHA256", p.sha256), ("Description", p.description)]
    return "".join(f"{k}: {v}\n" for k, v in fields if v) + "\n"


def write(fs: FsRoot, plan: Plan, settings: dict[str, Any]) -> dict[str, int]:
    """The plan's files (at the root of `fs`): Packages, Release, the .deb list, the settings."""
    packages = "".join(stanza(p) for p in sorted(plan.packages, key=lambda p: p.name))
    data = packages.encode()
    fs.write("Packages", packages, 0o644)
    digest = hashlib.sha256(data).hexdigest()
    release = (f"Origin: pebuilder\nLabel: netinstall plan\nSuite: {plan.suite}\nCodename: {plan.suite}\n"
               f"Architectures: {plan.arch}\nComponents: main\nSHA256:\n"
               f" {digest} {len(data)} main/binary-{plan.arch}/Packages\n")
    fs.write("Release", release, 0o644)
    # sha256, size, index of the source URI, pool path: what pb-netinstall fetches and checks
    debs = "".join(f"{p.sha256} {p.size} {plan.source_index(p)} {p.filename}\n"
                   for p in sorted(plan.packages, key=lambda p: p.filename))
    fs.write("debs", debs, 0o644)
    fs.write("sources", "".join(f"{u}\n" for u in plan.sources), 0o644)
    conf = {"suite": plan.suite, "arch": plan.arch, "include": ",".join(plan.include), **settings,
            "min_disk": min_disk(plan, settings.get("swap"))}
    fs.write("plan.conf", "".join(f"{k}={v}\n" for k, v in conf.items() if v is not None), 0o644)
    return {"packages": len(plan.packages), "bytes": sum(p.size for p in plan.packages)}


def min_disk(plan: Plan, swap: int | None) -> int:
    """Bytes a target disk needs: the partitions before root, the unpacked system with room for the
    initramfs and logs, and the .debs, which stay on the root until the install ends."""
    unpacked = sum(p.installed_size for p in plan.packages) * 1024
    debs = sum(p.size for p in plan.packages)
    return (1 + 64 + 64) * MIB + (swap or 0) + unpacked * 5 // 4 + debs


def install(fs: FsRoot, folder: Path) -> int:
    """The plan into the PE's tree, readable by root only where it holds password hashes."""
    parts = PLAN_DIR.split("/")
    for i in range(1, len(parts) + 1):
        fs.mkdir("/".join(parts[:i]), 0o755, keep=True)
    count = 0
    for src in sorted(folder.rglob("*")):
        rel = f"{PLAN_DIR}/{src.relative_to(folder).as_posix()}"
        if src.is_dir():
            fs.mkdir(rel, 0o755, keep=True)
        else:
            fs.copy_from(src, rel, 0o600 if src.name == "users" else 0o644)
            count += 1
    return count


def users_file(users: list[Any], hashes: list[str | None]) -> str:
    """One line per account for the installed system: name uid shell groups sudo hash (- for none)."""
    lines = []
    for u, h in zip(users, hashes, strict=True):
        groups = ",".join(u.groups) or "-"
        lines.append(f"{u.name} {u.uid} {u.shell} {groups} {'yes' if u.sudo else 'no'} {h or '-'}")
    return "".join(line + "\n" for line in lines)


