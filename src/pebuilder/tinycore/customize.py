"""Customising a Tiny Core initrd from the config, never from the build host.

Replaces the seed's `fixandmodinitrdforonlyonce`, which copied the builder's own /etc/passwd,
/etc/shadow and SSH keys into the image. Here accounts and password hashes come from the config,
passwords are only ever stored as SHA-512 crypt hashes, root is locked unless asked otherwise, and
every file gets an explicit owner and mode. Each step rewrites its own lines, so a rebuild never
appends twice (the seed's `>> opt/tcemirror` did).
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import stat
from pathlib import Path

from pebuilder.config.model import Customisation, User
from pebuilder.errors import ConfigError, Exit, PebuilderError
from pebuilder.formats.cpio import TreeMeta
from pebuilder.fsutil import resolve_in_root, source_date_epoch
from pebuilder.runner import run

STAFF_GID = 50
TC_UID = 1001
HOST_CA = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")
CA_PATHS = ("usr/local/etc/ssl/certs/ca-certificates.crt", "etc/ssl/certs/ca-certificates.crt")
SSHD_DEFAULT = """# written by pebuilder
Port 22
PermitRootLogin no
PasswordAuthentication no
PubkeyAuthentication yes
AuthorizedKeysFile .ssh/authorized_keys
UsePAM no
Subsystem sftp /usr/local/lib/openssh/sftp-server
"""
SSH_START = "/usr/local/etc/init.d/openssh start"


def _write(root: Path, meta: TreeMeta, rel: str, data: bytes | str, mode: int, uid: int = 0, gid: int = 0) -> None:
    path = resolve_in_root(root, rel)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    os.chmod(path, mode | stat.S_IRUSR | stat.S_IWUSR)
    meta.set(path.relative_to(root).as_posix(), stat.S_IFREG | mode, uid, gid)


def _mkdir(root: Path, meta: TreeMeta, rel: str, mode: int, uid: int = 0, gid: int = 0) -> None:
    path = resolve_in_root(root, rel)
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, mode | stat.S_IRWXU)
    meta.set(path.relative_to(root).as_posix(), stat.S_IFDIR | mode, uid, gid)


def _read_lines(root: Path, rel: str) -> list[str]:
    path = resolve_in_root(root, rel, follow_last=True)
    return path.read_text().splitlines() if path.is_file() else []


def _owner(meta: TreeMeta, rel: str, default: tuple[int, int, int]) -> tuple[int, int, int]:
    e = meta.entries.get(rel)
    return (stat.S_IMODE(e[0]), e[1], e[2]) if e else default


# -- accounts -------------------------------------------------------------------------------------

def password_hash(user: User) -> str | None:
    if user.password_hash:
        return user.password_hash
    if user.password_file:
        try:
            secret = user.password_file.read_text().rstrip("\n")
        except OSError as exc:
            raise ConfigError(
                f"users.{user.name}: cannot read password_file {user.password_file}: {exc.strerror}") from None
    elif user.password_env:
        secret = os.environ.get(user.password_env)
        if secret is None:
            raise ConfigError(f"users.{user.name}: environment variable {user.password_env} is not set")
    else:
        return None
    if not secret:
        raise ConfigError(f"users.{user.name}: the password is empty")
    if source_date_epoch() is not None:
        # Reproducible builds: a salt derived from the secret, so the same inputs give the same hash.
        digest = hashlib.sha256(f"pebuilder|{user.name}|{secret}".encode()).digest()
        salt = base64.b64encode(digest, b"./").decode()[:16]
    else:
        salt = secrets.token_urlsafe(12).replace("-", ".").replace("_", "/")[:16]
    out = run(["openssl", "passwd", "-6", "-salt", salt, "-stdin"], stdin=secret.encode() + b"\n",
              what="hashing a password").stdout.decode().strip()
    if not out.startswith("$6$"):
        raise PebuilderError("openssl did not produce a SHA-512 crypt hash", Exit.TOOL_FAILED)
    return out


def accounts(root: Path, meta: TreeMeta, c: Customisation) -> None:
    passwd = _read_lines(root, "etc/passwd")
    shadow = _read_lines(root, "etc/shadow")
    group = _read_lines(root, "etc/group")
    sudoers = _read_lines(root, "etc/sudoers")
    names = {u.name for u in c.users}
    passwd = [ln for ln in passwd if ln.split(":")[0] not in names]
    shadow = [ln for ln in shadow if ln.split(":")[0] not in names]
    gids = {ln.split(":")[0]: ln for ln in group}
    for u in c.users:
        primary = STAFF_GID
        passwd.append(f"{u.name}:x:{u.uid}:{primary}:{u.name}:/home/{u.name}:{u.shell}")
        h = password_hash(u)
        shadow.append(f"{u.name}:{h if h else '!'}:19000:0:99999:7:::")
        for g in u.groups:
            if g not in gids:
                raise ConfigError(f"users.{u.name}.groups: group {g!r} does not exist in the image's /etc/group "
                                  f"(it has: {', '.join(sorted(gids))})")
            fields = gids[g].split(":")
            members = [m for m in fields[3].split(",") if m] if len(fields) > 3 else []
            if u.name not in members:
                members.append(u.name)
            gids[g] = ":".join([*fields[:3], ",".join(members)])
        if u.sudo:
            sudoers = [ln for ln in sudoers if not ln.startswith(f"{u.name}\t") and not ln.startswith(f"{u.name} ")]
            sudoers.append(f"{u.name}\tALL=NOPASSWD: ALL")
        home = f"home/{u.name}"
        _mkdir(root, meta, home, 0o750, u.uid, primary)
        if u.authorized_keys:
            _mkdir(root, meta, f"{home}/.ssh", 0o700, u.uid, primary)
            _write(root, meta, f"{home}/.ssh/authorized_keys", "".join(k.strip() + "\n" for k in u.authorized_keys),
                   0o600, u.uid, primary)
    if c.lock_root:
        shadow = [("root:!:" + ":".join(ln.split(":")[2:])) if ln.startswith("root:") else ln for ln in shadow]
    group = [gids[ln.split(":")[0]] for ln in group]
    for rel, lines, default in (("etc/passwd", passwd, (0o664, 0, STAFF_GID)),
                                ("etc/shadow", shadow, (0o660, 0, STAFF_GID)),
                                ("etc/group", group, (0o664, 0, STAFF_GID)),
                                ("etc/sudoers", sudoers, (0o440, 0, 0))):
        mode, uid, gid = _owner(meta, rel, default)
        _write(root, meta, rel, "\n".join(lines) + "\n", mode, uid, gid)


def serial_getty(root: Path, meta: TreeMeta) -> None:
    """A login prompt on the first serial port, beside Tiny Core's tty1 autologin."""
    rel = "etc/inittab"
    lines = [ln for ln in _read_lines(root, rel) if not ln.startswith("ttyS0::")]
    at = next((i for i, ln in enumerate(lines) if ln.startswith("tty1::")), len(lines))
    lines.insert(at + 1, "ttyS0::respawn:/sbin/getty -L 115200 ttyS0 vt100")
    mode, uid, gid = _owner(meta, rel, (0o644, 0, 0))
    _write(root, meta, rel, "\n".join(lines) + "\n", mode, uid, gid)
    tty = resolve_in_root(root, "etc/securetty", follow_last=True)
    if tty.is_file() and "ttyS0" not in tty.read_text().split():
        m2, u2, g2 = _owner(meta, "etc/securetty", (0o644, 0, 0))
        _write(root, meta, "etc/securetty", tty.read_text().rstrip("\n") + "\nttyS0\n", m2, u2, g2)


# -- SSH, certificates, services, files -----------------------------------------------------------

def ssh(root: Path, meta: TreeMeta, c: Customisation) -> None:
    etc = "usr/local/etc/ssh"
    _mkdir(root, meta, etc, 0o755)
    config = c.sshd_config.read_text() if c.sshd_config else SSHD_DEFAULT
    _write(root, meta, f"{etc}/sshd_config", config, 0o644)
    _mkdir(root, meta, "var/lib/sshd", 0o755)
    if c.ssh_host_keys:
        keys = sorted(c.ssh_host_keys.glob("ssh_host_*_key"))
        if not keys:
            raise ConfigError(f"ssh.host_keys: no ssh_host_*_key files in {c.ssh_host_keys}")
        for k in keys:
            _write(root, meta, f"{etc}/{k.name}", k.read_bytes(), 0o600)
            pub = k.with_name(k.name + ".pub")
            if pub.exists():
                _write(root, meta, f"{etc}/{pub.name}", pub.read_bytes(), 0o644)
    # Without supplied keys, openssh.tcz's init script makes them at first boot (ssh-keygen -A),
    # so no two machines share host keys.


def ca_bundle(root: Path, meta: TreeMeta, source: str) -> None:
    if source == "host":
        found = next((p for p in HOST_CA if os.path.isfile(p)), None)
        if not found:
            raise ConfigError("certificates.bundle = \"host\": no CA bundle on this machine "
                              f"({', '.join(HOST_CA)}); install ca-certificates or give a PEM file")
        data = Path(found).read_bytes()
    else:
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise ConfigError(f"certificates.bundle: cannot read {source}: {exc.strerror}") from None
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise ConfigError(f"certificates.bundle: {source} holds no PEM certificate")
    for rel in CA_PATHS:
        _write(root, meta, rel, data, 0o644)
    link = resolve_in_root(root, "usr/local/etc/ssl/cert.pem")
    if link.is_symlink() or link.exists():
        link.unlink()
    os.symlink("certs/ca-certificates.crt", link)
    meta.set(link.relative_to(root).as_posix(), stat.S_IFLNK | 0o777, 0, 0)


def _replace_block(root: Path, meta: TreeMeta, rel: str, lines: list[str], default_mode: int) -> None:
    """Keep the template's lines, then pebuilder's between markers, written anew each build."""
    begin, end = "# pebuilder: begin", "# pebuilder: end"
    old = _read_lines(root, rel)
    if begin in old and end in old:
        old = old[: old.index(begin)] + old[old.index(end) + 1:]
    body = [*old, begin, *lines, end] if lines else old
    mode, uid, gid = _owner(meta, rel, (default_mode, 0, STAFF_GID))
    _write(root, meta, rel, "\n".join(body) + "\n", mode, uid, gid)


def services(root: Path, meta: TreeMeta, c: Customisation) -> None:
    bootlocal = list(c.bootlocal)
    if c.ssh and SSH_START not in bootlocal:
        bootlocal.append(SSH_START)
    if bootlocal:
        _replace_block(root, meta, "opt/bootlocal.sh", bootlocal, 0o775)
    if c.bootsync:
        _replace_block(root, meta, "opt/bootsync.sh", c.bootsync, 0o775)
    if c.filetool:
        old = _read_lines(root, "opt/.filetool.lst")
        merged = old + [f for f in c.filetool if f not in old]
        mode, uid, gid = _owner(meta, "opt/.filetool.lst", (0o664, 0, STAFF_GID))
        _write(root, meta, "opt/.filetool.lst", "\n".join(merged) + "\n", mode, uid, gid)


def overlay(root: Path, meta: TreeMeta, c: Customisation) -> None:
    for f in c.files:
        if not f.source.exists():
            raise ConfigError(f"files: source {f.source} does not exist (for {f.dest})")
        rel = f.dest.lstrip("/")
        if f.source.is_dir():
            for p in sorted(f.source.rglob("*")):
                sub = f"{rel}/{p.relative_to(f.source).as_posix()}"
                if p.is_dir():
                    _mkdir(root, meta, sub, 0o755, f.uid, f.gid)
                else:
                    mode = f.mode if f.mode is not None else stat.S_IMODE(p.stat().st_mode)
                    _write(root, meta, sub, p.read_bytes(), mode, f.uid, f.gid)
        else:
            mode = f.mode if f.mode is not None else stat.S_IMODE(f.source.stat().st_mode)
            _write(root, meta, rel, f.source.read_bytes(), mode, f.uid, f.gid)


def kiosk(root: Path, meta: TreeMeta, url: str) -> None:
    """The seed's Xorg + browser autostart, for Tiny Core's X session of user tc."""
    _write(root, meta, "etc/sysconfig/Xserver", "Xorg\n", 0o644)
    _mkdir(root, meta, "etc/skel/.X.d", 0o755)
    _write(root, meta, "etc/skel/.X.d/kiosk",
           f"/usr/local/bin/chromium-browser --kiosk --start-maximized --no-first-run {url} &\n", 0o755)


def apply(root: Path, meta: TreeMeta, c: Customisation, mirror_url: str | None = None) -> list[str]:
    done = []
    has_accounts = resolve_in_root(root, "etc/passwd", follow_last=True).is_file()
    if c.users or (c.lock_root and has_accounts):
        accounts(root, meta, c)
        done.append(f"{len(c.users)} users" + (", root locked" if c.lock_root else ""))
    if c.serial_getty:
        serial_getty(root, meta)
        done.append("serial getty")
    if c.ssh:
        ssh(root, meta, c)
        done.append("sshd")
    if c.ca_bundle:
        ca_bundle(root, meta, c.ca_bundle)
        done.append("CA bundle")
    if c.bootlocal or c.bootsync or c.filetool or c.ssh:
        services(root, meta, c)
    if c.files:
        overlay(root, meta, c)
        done.append(f"{len(c.files)} overlay files")
    if c.kiosk_url:
        kiosk(root, meta, c.kiosk_url)
        done.append("kiosk")
    return done
