"""Accounts from the config, never from the build host.

Replaces the seed's copying of the builder's own /etc/passwd and /etc/shadow: accounts and password
hashes come from the config, passwords are only stored as SHA-512 crypt hashes, root is locked
unless asked otherwise, and accounts the image already has are only replaced when the config says
`replace = true`. Field values were checked against passwd's grammar when the config was read.

Salts are random. A reproducible build (SOURCE_DATE_EPOCH set) takes them from a per-project secret
(`[accounts] salt_file`, made once beside the config and never put in the image): a salt derived
from the password itself would let anyone holding /etc/shadow test guesses with one SHA-256 each.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from pebuilder.config.model import User
from pebuilder.customise.profile import Profile
from pebuilder.errors import ConfigError, Exit, PebuilderError
from pebuilder.fsroot import FsRoot
from pebuilder.fsutil import build_time, source_date_epoch
from pebuilder.runner import run

CRYPT64 = b"./"


@dataclass
class Secret:
    """Where a user's password comes from; only its digest enters stage keys."""

    user: User

    def read(self) -> str | None:
        u = self.user
        if u.password_file:
            try:
                secret = u.password_file.read_text().rstrip("\n")
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"users.{u.name}: cannot read password_file {u.password_file}: {exc}") from None
        elif u.password_env:
            from_env = os.environ.get(u.password_env)
            if from_env is None:
                raise ConfigError(f"users.{u.name}: environment variable {u.password_env} is not set")
            secret = from_env
        else:
            return None
        if not secret:
            raise ConfigError(f"users.{u.name}: the password is empty")
        if "\n" in secret or "\0" in secret:
            raise ConfigError(f"users.{u.name}: the password holds a newline or NUL byte")
        return secret

    def digest(self) -> str:
        u = self.user
        data = (self.read() or u.password_hash or "").encode()
        return hashlib.sha256(b"pebuilder-password|" + data).hexdigest()


def project_secret(path: Path) -> bytes:
    """The per-project salt secret: created once (0600), then reused so builds repeat."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()
    with os.fdopen(fd, "wb") as f:
        f.write(secrets.token_hex(32).encode() + b"\n")
    return path.read_bytes()


def salt_for(user: str, secret: bytes | None) -> str:
    if source_date_epoch() is not None and secret:
        raw = hmac.new(secret, f"pebuilder-salt|{user}".encode(), hashlib.sha256).digest()
    else:
        raw = secrets.token_bytes(12)
    return base64.b64encode(raw, CRYPT64).decode()[:16]


def password_hash(user: User, secret: bytes | None) -> str | None:
    if user.password_hash:
        return user.password_hash
    plain = Secret(user).read()
    if plain is None:
        return None
    out = run(["openssl", "passwd", "-6", "-salt", salt_for(user.name, secret), "-stdin"],
              stdin=plain.encode() + b"\n", what="hashing a password").stdout.decode().strip()
    if not out.startswith("$6$"):
        raise PebuilderError("openssl did not produce a SHA-512 crypt hash", Exit.TOOL_FAILED)
    return out


def _table(lines: list[str]) -> dict[str, list[str]]:
    return {ln.split(":")[0]: ln.split(":") for ln in lines if ln and not ln.startswith("#")}


def apply(fs: FsRoot, users: list[User], lock_root: bool, profile: Profile, secret: bytes | None) -> str:
    passwd = fs.read_lines("etc/passwd")
    shadow = fs.read_lines("etc/shadow")
    group = fs.read_lines("etc/group")
    existing = _table(passwd)
    by_uid = {int(f[2]): name for name, f in existing.items() if len(f) > 2 and f[2].isdigit()}
    for i, u in enumerate(users):
        label = f"users[{i}]"
        if u.name == "root":
            raise ConfigError(f"{label}.name: root cannot be replaced; use [accounts] lock_root to control it")
        if u.name in existing and not u.replace:
            raise ConfigError(f"{label}.name: {u.name!r} already exists in the image (uid {existing[u.name][2]}); "
                              "choose another name or set replace = true")
        owner = by_uid.get(u.uid)
        if owner is not None and owner != u.name:
            raise ConfigError(f"{label}.uid: uid {u.uid} already belongs to {owner!r} in the image; choose another")
    names = {u.name for u in users}
    passwd = [ln for ln in passwd if ln.split(":")[0] not in names]
    shadow = [ln for ln in shadow if ln.split(":")[0] not in names]
    groups = _table(group)
    order = [ln.split(":")[0] for ln in group if ln]
    sudoers = fs.read_lines(profile.sudoers)
    days = build_time() // 86400
    for u in users:
        gid = profile.user_group if profile.user_group is not None else u.uid
        if profile.user_group is None and u.name not in groups:
            if any(f[2] == str(gid) for f in groups.values() if len(f) > 2):
                raise ConfigError(f"users.{u.name}: gid {gid} for the user's own group is taken in the image")
            groups[u.name] = [u.name, "x", str(gid), ""]
            order.append(u.name)
        passwd.append(f"{u.name}:x:{u.uid}:{gid}:{u.name}:/home/{u.name}:{u.shell}")
        h = password_hash(u, secret)
        shadow.append(f"{u.name}:{h or '!'}:{days}:0:99999:7:::")
        for g in u.groups:
            if g not in groups:
                raise ConfigError(f"users.{u.name}.groups: group {g!r} does not exist in the image's /etc/group "
                                  f"(it has: {', '.join(sorted(groups))})")
            f = groups[g] + [""] * (4 - len(groups[g]))
            members = [x for x in f[3].split(",") if x]
            if u.name not in members:
                members.append(u.name)
            groups[g] = [*f[:3], ",".join(members)]
        if u.sudo:
            sudoers = [ln for ln in sudoers if ln.split()[:1] != [u.name]]
            sudoers.append(f"{u.name}\tALL=(ALL) NOPASSWD: ALL")
        home = f"home/{u.name}"
        fs.mkdir("home", 0o755, keep=True)
        fs.mkdir(home, 0o750, u.uid, gid)
        if u.authorized_keys:
            fs.mkdir(f"{home}/.ssh", 0o700, u.uid, gid)
            fs.write(f"{home}/.ssh/authorized_keys", "".join(k.strip() + "\n" for k in u.authorized_keys),
                     0o600, u.uid, gid)
    if lock_root:
        shadow = [_locked(ln) if ln.startswith("root:") else ln for ln in shadow]
    group_lines = [":".join(groups[n]) for n in order]
    for rel, lines in (("etc/passwd", passwd), ("etc/shadow", shadow), ("etc/group", group_lines)):
        fs.write_keeping_owner(rel, "\n".join(lines) + "\n", profile.files_default[rel])
    if any(u.sudo for u in users):
        fs.write_keeping_owner(profile.sudoers, "\n".join(sudoers) + "\n", profile.files_default.get(
            profile.sudoers, (0o440, 0, 0)))
    return f"{len(users)} users" + (", root locked" if lock_root else "")


def _locked(line: str) -> str:
    f = line.split(":")
    if len(f) > 1 and not f[1].startswith("!"):
        f[1] = "!" + (f[1] if f[1] not in ("", "*", "x") else "")
    return ":".join(f)
