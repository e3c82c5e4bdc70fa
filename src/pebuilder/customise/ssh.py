"""sshd's configuration and, when supplied, host keys.

Without supplied keys none are put in the image: they are made at first boot (`ssh-keygen -A`), so
no two machines built from one image share host keys.
"""

from __future__ import annotations

from pathlib import Path

from pebuilder.customise.profile import Profile
from pebuilder.errors import ConfigError
from pebuilder.fsroot import FsRoot

SSHD_DEFAULT = """# written by pebuilder
Port 22
PermitRootLogin no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AuthorizedKeysFile .ssh/authorized_keys
UsePAM no
Subsystem sftp {sftp}
"""


def host_key_files(folder: Path) -> list[Path]:
    keys = sorted(folder.glob("ssh_host_*_key"))
    if not keys:
        raise ConfigError(f"ssh.host_keys: no ssh_host_*_key files in {folder}")
    return [p for k in keys for p in (k, k.with_name(k.name + ".pub")) if p.is_file()]


def apply(fs: FsRoot, profile: Profile, config: Path | None, host_keys: Path | None) -> str:
    fs.mkdir(profile.sshd_dir, 0o755, keep=True)
    try:
        text = config.read_text() if config else SSHD_DEFAULT.format(sftp=profile.sftp_server)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"ssh.config: cannot read {config}: {exc}") from None
    fs.write(f"{profile.sshd_dir}/sshd_config", text, 0o644)
    # Keys a package's postinst made at build time would be shared by every machine: drop them.
    for old in fs.path(profile.sshd_dir).glob("ssh_host_*"):
        fs.remove(f"{profile.sshd_dir}/{old.name}")
    if host_keys:
        for k in host_key_files(host_keys):
            fs.copy_from(k, f"{profile.sshd_dir}/{k.name}", 0o644 if k.suffix == ".pub" else 0o600)
        return "sshd (supplied host keys)"
    return "sshd (host keys made at first boot)"
