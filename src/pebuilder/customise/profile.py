"""What differs between the distributions pebuilder customises: paths, groups, defaults."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    user_group: int | None  # primary gid of new users; None: a group of their own (gid = uid)
    sshd_dir: str  # where sshd_config and host keys live
    sftp_server: str
    ca_paths: tuple[str, ...]  # where the CA bundle is written
    ca_links: tuple[tuple[str, str], ...]  # (link, target) for OpenSSL's cert.pem
    sudoers: str  # file that gets "user ALL=NOPASSWD: ALL"
    files_default: dict[str, tuple[int, int, int]]  # mode, uid, gid of account files when new


TINYCORE = Profile(
    name="tinycore", user_group=50, sshd_dir="usr/local/etc/ssh",
    sftp_server="/usr/local/lib/openssh/sftp-server",
    ca_paths=("usr/local/etc/ssl/certs/ca-certificates.crt", "etc/ssl/certs/ca-certificates.crt"),
    ca_links=(("usr/local/etc/ssl/cert.pem", "certs/ca-certificates.crt"),),
    sudoers="etc/sudoers",
    files_default={"etc/passwd": (0o664, 0, 50), "etc/shadow": (0o660, 0, 50), "etc/group": (0o664, 0, 50),
                   "etc/sudoers": (0o440, 0, 0)},
)

DEBIAN = Profile(
    name="debian", user_group=None, sshd_dir="etc/ssh", sftp_server="/usr/lib/openssh/sftp-server",
    ca_paths=("etc/ssl/certs/ca-certificates.crt",),
    ca_links=(("usr/lib/ssl/cert.pem", "/etc/ssl/certs/ca-certificates.crt"),),
    sudoers="etc/sudoers.d/pebuilder",
    files_default={"etc/passwd": (0o644, 0, 0), "etc/shadow": (0o640, 0, 42), "etc/group": (0o644, 0, 0),
                   "etc/sudoers.d/pebuilder": (0o440, 0, 0)},
)
