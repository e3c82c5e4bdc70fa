"""The Debian live system's base tree, built without root.

`tiny`: busybox as init, shell and tools, plus the files of the requested packages and the
libraries they need, unpacked from .debs (no dpkg, no maintainer scripts) onto a merged-/usr
skeleton. `minbase`: `mmdebstrap --mode=unshare --variant=minbase` (user namespaces: works as root
and, with subuid ranges, as a normal user), with dpkg's status intact, unpacked from its tar.
Either way the tree lives on the builder's disk with its owners and modes in TreeMeta.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from pebuilder.arch import Arch
from pebuilder.customise import provision
from pebuilder.debian import trim as trims
from pebuilder.debian.resolve import Have
from pebuilder.debian.sources import Source
from pebuilder.errors import Exit, PebuilderError
from pebuilder.formats import deb, tar
from pebuilder.fsroot import Budget, FsRoot
from pebuilder.fsutil import build_time
from pebuilder.runner import run, which

LIVE = Path(__file__).resolve().parent / "live"

DIRS = {"usr": 0o755, "usr/bin": 0o755, "usr/sbin": 0o755, "usr/lib": 0o755, "etc": 0o755, "etc/init.d": 0o755,
        "etc/pebuilder": 0o755, "etc/sysconfig": 0o755, "root": 0o700, "home": 0o755, "tmp": 0o1777,
        "var": 0o755, "var/log": 0o755, "var/tmp": 0o1777, "var/lib": 0o755, "run": 0o755, "proc": 0o555,
        "sys": 0o555, "dev": 0o755, "mnt": 0o755, "media": 0o755, "opt": 0o755, "os": 0o755, "ext": 0o755,
        "data": 0o755, "usr/share": 0o755, "usr/share/udhcpc": 0o755, "usr/local": 0o755, "usr/local/bin": 0o755,
        "usr/local/tce.installed": 0o775}
MERGED = {"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib"}

PASSWD = """root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
bin:x:2:2:bin:/bin:/usr/sbin/nologin
sys:x:3:3:sys:/dev:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
"""
GROUP = """root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
wheel:x:10:
shadow:x:42:
utmp:x:43:
staff:x:50:
users:x:100:
nogroup:x:65534:
"""
# Users that packages' maintainer scripts would create (tiny runs no maintainer scripts).
PACKAGE_USERS = {
    "openssh-server": ("sshd", 101, 65534, "/run/sshd", "/usr/sbin/nologin"),
    "dropbear-bin": ("dropbear", 102, 65534, "/nonexistent", "/usr/sbin/nologin"),
    "chrony": ("_chrony", 103, 65534, "/var/lib/chrony", "/usr/sbin/nologin"),
}
# Packages that serve dpkg and maintainer scripts only. tiny runs neither, so a dependency on one of
# them (readline-common on "dpkg | install-info", openssh-server on debconf, ucf, adduser, ...) is
# counted as met instead of pulling dpkg, tar, perl-base's friends and libc into a busybox system.
# From trixie on, packages that make their accounts through sysusers.d depend on
# "systemd | systemd-standalone-sysusers | systemd-sysusers" (openssh-server does): tiny makes those
# accounts itself (PACKAGE_USERS), so that is met too, instead of pulling systemd (20 MB) in.
PACKAGING_ONLY = ("dpkg", "install-info", "debconf", "ucf", "adduser", "init-system-helpers", "runit-helper",
                  "systemd-standalone-sysusers")


def tiny_have(archive: Any, pinned: dict[str, str], requested: list[str]) -> Have:
    """What a tiny base counts as present for resolving: its pinned packages plus PACKAGING_ONLY (at
    the index's version, so versioned dependencies hold; `assumed`), except those asked for by name."""
    assumed = {n: archive.package(n).version for n in PACKAGING_ONLY
               if n not in requested and n not in pinned and archive.get(n)}
    have = Have.from_versions({**assumed, **pinned}, archive)
    have.assumed = frozenset(assumed)
    return have


# A login shell's profile, as Debian's base-files has it: PATH, prompt, then /etc/profile.d/*.sh
# (where the system's locale comes from, see locale.sh).
PROFILE = r"""PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
PS1='\u@\h:\w\$ '
if [ -d /etc/profile.d ]; then
  for i in /etc/profile.d/*.sh; do
    if [ -r "$i" ]; then
      . "$i"
    fi
  done
  unset i
fi
"""

# The system's locale. Debian's compiled C.UTF-8 (glibc's own, no `locales` package needed) is
# the folder usr/lib/locale/C.utf8 of libc-bin, Essential in Debian and so in every minbase; a tiny
# base takes only that folder from the package (its programs would need glibc, which a busybox-
# static base does not have), so that glibc programs loaded later (tce-load) find it there.
LOCALE = "C.UTF-8"
LOCALE_PACKAGE = "libc-bin"
LOCALE_DIR = "usr/lib/locale/C.utf8"
LOCALE_PARENTS = frozenset({"usr", "usr/lib", "usr/lib/locale"})


def _not_locale(relpath: str) -> bool:
    """Exclude predicate: everything of libc-bin but the C.utf8 locale folder (and its parents)."""
    return not (relpath in LOCALE_PARENTS or relpath == LOCALE_DIR or relpath.startswith(LOCALE_DIR + "/"))


def install_locale(fs: FsRoot, debfile: Path, budget: Budget) -> int:
    """The C.UTF-8 locale from libc-bin's package file into a tiny base; returns the bytes it holds."""
    files = [f for f in deb.extract(debfile, fs, budget, _not_locale) if f.startswith(LOCALE_DIR + "/")]
    if f"{LOCALE_DIR}/LC_CTYPE" not in files:
        raise PebuilderError(f"{debfile.name} holds no /{LOCALE_DIR}/LC_CTYPE: this Debian release ships its "
                             f"{LOCALE} locale elsewhere; pebuilder cannot give the live system a UTF-8 locale",
                             Exit.UNRESOLVABLE)
    return locale_size(fs)


def locale_size(fs: FsRoot) -> int:
    """Bytes of the C.UTF-8 locale in a tree (0: it has none)."""
    folder = fs.path(LOCALE_DIR)
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


# Applets every system needs, linked even when the applet list cannot be read from a binary.
ESSENTIAL = ["/bin/sh", "/sbin/init", "/sbin/getty", "/bin/login", "/bin/mount", "/bin/umount", "/sbin/switch_root",
             "/sbin/modprobe", "/sbin/insmod", "/sbin/ifconfig", "/sbin/route", "/sbin/udhcpc", "/bin/hostname",
             "/bin/mountpoint", "/bin/sed", "/bin/cat", "/bin/ls", "/bin/mkdir", "/bin/chmod", "/bin/sleep",
             "/bin/echo", "/bin/rm", "/bin/mv", "/bin/cp", "/sbin/reboot", "/sbin/poweroff", "/sbin/halt",
             "/sbin/mdev", "/bin/cttyhack", "/bin/setsid", "/bin/grep"]


def skeleton(fs: FsRoot, arch: Arch) -> None:
    """A merged-/usr root, as Debian bookworm lays it out, with pebuilder's /os, /ext and /data."""
    fs.mkdir(".", 0o755)
    for rel, mode in DIRS.items():
        fs.mkdir(rel, mode, 0, 50 if rel == "usr/local/tce.installed" else 0)
    links = dict(MERGED)
    if arch.name == "x86_64":
        fs.mkdir("usr/lib64", 0o755)
        links["lib64"] = "usr/lib64"
    for link, target in links.items():
        fs.symlink(link, target)
    fs.symlink("var/run", "/run")
    fs.write("etc/passwd", PASSWD, 0o644)
    fs.write("etc/group", GROUP, 0o644)
    days = build_time() // 86400
    fs.write("etc/shadow", "".join(f"{ln.split(':')[0]}:*:{days}:0:99999:7:::\n" for ln in PASSWD.splitlines()),
             0o640, 0, 42)
    fs.write("etc/shells", "/bin/sh\n/bin/ash\n", 0o644)
    fs.write("etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n", 0o644)
    fs.write("etc/nsswitch.conf", "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n"
             "networks: files\nprotocols: files\nservices: files\n", 0o644)
    fs.write("etc/fstab", "# the live system's mounts are made by its initramfs\n", 0o644)
    fs.write("etc/profile", PROFILE, 0o644)


def package_users(fs: FsRoot, packages: list[str]) -> list[str]:
    """Accounts that the packages' maintainer scripts would have made."""
    made = []
    passwd = fs.read_lines("etc/passwd")
    names = {ln.split(":")[0] for ln in passwd}
    for pkg in packages:
        if pkg in PACKAGE_USERS and PACKAGE_USERS[pkg][0] not in names:
            name, uid, gid, home, shell = PACKAGE_USERS[pkg]
            passwd.append(f"{name}:x:{uid}:{gid}::{home}:{shell}")
            shadow = fs.read_lines("etc/shadow") + [f"{name}:!:{build_time() // 86400}::::::"]
            fs.write_keeping_owner("etc/shadow", "\n".join(shadow) + "\n", (0o640, 0, 42))
            made.append(name)
    if made:
        fs.write_keeping_owner("etc/passwd", "\n".join(passwd) + "\n", (0o644, 0, 0))
    return made


def unpack_debs(fs: FsRoot, debs: list[Path], trim: bool, budget: Budget) -> int:
    exclude = trims.TRIM if trim else None
    count = 0
    for d in debs:
        count += len(deb.extract(d, fs, budget, exclude))
    return count


def applets(busybox: Path) -> list[str]:
    """Full paths of busybox's applets: asked of the binary when this machine can run it, else of the
    host's busybox (Debian builds every architecture's busybox-static from one config)."""
    for cand in (str(busybox), which("busybox")):
        if not cand:
            continue
        try:
            out = subprocess.run([cand, "--list-full"], capture_output=True, timeout=10, check=True).stdout
            return sorted({"/" + a.strip("/") for a in out.decode().split()})
        except (OSError, subprocess.SubprocessError):
            continue
    return ESSENTIAL


def busybox_binary(root: Path) -> Path:
    """busybox in an unpacked busybox-static: /bin up to bookworm, /usr/bin from trixie (merged /usr)."""
    for rel in ("usr/bin/busybox", "bin/busybox"):
        if (root / rel).is_file():
            return root / rel
    raise PebuilderError(f"{root.name}: no bin/busybox or usr/bin/busybox in the busybox-static package",
                         Exit.TOOL_FAILED)


def install_busybox(fs: FsRoot, busybox: Path, only_missing: bool) -> int:
    """busybox at /bin/busybox and a link per applet (`only_missing`: never over a real program)."""
    if not fs.is_file("bin/busybox"):
        fs.copy_from(busybox, "bin/busybox", 0o755)
    names = applets(busybox)
    count = 0
    for full in names:
        rel = full.lstrip("/")
        if rel == "bin/busybox" or (only_missing and fs.exists(rel)):
            continue
        if fs.exists(rel) and not fs.path(rel, follow_last=False).is_symlink():
            continue
        fs.symlink(rel, "/bin/busybox")
        count += 1
    if names is ESSENTIAL:
        fs.write("etc/pebuilder/busybox-install", "the applet list was not readable at build time\n", 0o644)
    return count


def system_files(fs: FsRoot, inittab: str, rc_local: list[str], hostname: str, release: str, repo: str,
                 mirror: str | None) -> None:
    """What turns a base into the live system: init's table and scripts, DHCP, identity, tce-load."""
    fs.write("etc/inittab", inittab, 0o644)
    for name, rel in (("rcS", "etc/init.d/rcS"), ("rcK", "etc/init.d/rcK"),
                      ("udhcpc.script", "usr/share/udhcpc/default.script"), ("tce-load", "usr/bin/tce-load")):
        fs.copy_from(LIVE / name, rel, 0o755)
    fs.mkdir("etc/sysconfig", 0o755, keep=True)
    fs.write("etc/pebuilder/tcerepo", repo + "\n", 0o644)
    if mirror:
        fs.write("etc/sysconfig/tcemirror", mirror.rstrip("/") + "/\n", 0o644)
    fs.mkdir("usr/local/tce.installed", 0o775, 0, 50, keep=True)
    provision.install_script(fs, "usr/sbin/pb-provision")
    locale_defaults(fs)
    fs.write("etc/hostname", hostname + "\n", 0o644)
    fs.write("etc/pebuilder/release", release + "\n", 0o644)
    if not fs.is_file("etc/os-release") and not fs.is_file("usr/lib/os-release"):
        fs.write("etc/os-release", f'PRETTY_NAME="{release}"\nNAME="pebuilder live"\nID=debian\n', 0o644)
    if rc_local:
        fs.write("etc/rc.local", "#!/bin/sh\n# [services] bootlocal from the config, run at the end of boot\n"
                 + "".join(f"{ln}\n" for ln in rc_local), 0o755)
    elif fs.exists("etc/rc.local"):
        fs.remove("etc/rc.local")
    if not fs.exists("sbin/init"):
        fs.symlink("sbin/init", "/bin/busybox")


def locale_defaults(fs: FsRoot) -> None:
    """LANG=C.UTF-8 as Debian keeps it (/etc/default/locale, unless the config's files brought one),
    read by /etc/profile.d/locale.sh for login shells and by rcS for the services it starts."""
    fs.mkdir("etc/default", 0o755, keep=True)
    if not fs.exists("etc/default/locale"):
        fs.write("etc/default/locale", f"LANG={LOCALE}\n", 0o644)
    fs.mkdir("etc/profile.d", 0o755, keep=True)
    fs.copy_from(LIVE / "locale.sh", "etc/profile.d/locale.sh", 0o644)


def enable_sshd(fs: FsRoot) -> None:
    fs.copy_from(LIVE / "sshd", "etc/init.d/S50sshd", 0o755)


def inittab(console: str, serial_getty: bool, autologin: bool) -> str:
    lines = ["# busybox init: pebuilder live system", "::sysinit:/etc/init.d/rcS"]
    if serial_getty:
        lines.append(f"{console}::respawn:/sbin/getty -L 115200 {console} vt100")
    if autologin and not serial_getty:
        lines.append("::askfirst:-/bin/sh")
    lines += ["::ctrlaltdel:/sbin/reboot", "::shutdown:/etc/init.d/rcK", "::shutdown:/bin/umount -a -r", ""]
    return "\n".join(lines)


# -- minbase ------------------------------------------------------------------------------------------

def mmdebstrap_tar(out: Path, suite: str, arch: Arch, sources: list[Source], packages: list[str],
                   trim: bool) -> None:
    """mmdebstrap --mode=unshare: a real dpkg-managed minbase, no root needed, into a tar."""
    if which("mmdebstrap") is None:
        raise PebuilderError("variant = \"minbase\" needs mmdebstrap; install it with: apt-get install mmdebstrap "
                             "uidmap", Exit.TOOL_MISSING)
    check_foreign(arch)
    args: list[str | os.PathLike[str]] = ["mmdebstrap", "--mode=unshare", "--variant=minbase", "--format=tar",
                                          f"--architectures={arch.debian}", "--quiet"]
    if packages:
        args.append("--include=" + ",".join(packages))
    if trim:
        for pattern in ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*", "/usr/share/locale/*",
                        "/usr/share/lintian/*", "/usr/share/i18n/*"):
            args.append(f"--dpkgopt=path-exclude={pattern}")
        args += ["--dpkgopt=path-include=/usr/share/doc/*/copyright",
                 "--dpkgopt=path-include=/usr/share/locale/locale.alias",
                 "--dpkgopt=path-exclude=/usr/lib/*/gconv/*.so"]
        args += [f"--dpkgopt=path-include=/usr/lib/*/gconv/{name}" for name in sorted(trims.GCONV_KEEP)]
    args += [suite, out]
    args += [f"deb {s.uri} {s.suite} {' '.join(s.components)}" for s in sources]
    run(args, what=f"building a {arch.debian} minbase with mmdebstrap", code=Exit.TOOL_FAILED)


def check_foreign(arch: Arch) -> None:
    """A minbase of another architecture runs its maintainer scripts through qemu-user (binfmt_misc)."""
    from pebuilder.arch import host

    if arch == host():
        return
    name = {"aarch64": "qemu-aarch64", "i386": "qemu-i386", "x86_64": "qemu-x86_64"}.get(arch.name, "")
    entry = Path("/proc/sys/fs/binfmt_misc") / name
    if not (entry.is_file() and entry.read_text().startswith("enabled")):
        raise PebuilderError(
            f"a {arch.debian} minbase runs {arch.debian} maintainer scripts through qemu-user, but binfmt_misc has "
            f"no enabled {name} entry; install it with: apt-get install qemu-user-static binfmt-support arch-test, "
            f"then (as root, once): update-binfmts --enable {name}", Exit.TOOL_MISSING)


def unpack_tar(fs: FsRoot, tarball: Path, budget: Budget) -> None:
    with open(tarball, "rb") as f:
        tar.extract_into(f, fs, budget, None, what=tarball.name)

