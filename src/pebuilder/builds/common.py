"""What every build shares: the run (lock, stale cleanup, engine), output checks, customisation inputs.

A build is a class with a flat `stages()` list; this module runs it so the CLI never needs to know
which system it is.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pebuilder.config import registry
from pebuilder.config.model import Config
from pebuilder.engine import workdir
from pebuilder.engine.progress import Progress
from pebuilder.engine.stages import Engine, Stage
from pebuilder.errors import ConfigError
from pebuilder.fsutil import source_date_epoch

if TYPE_CHECKING:  # the customise modules are imported where they are used: a no-op run needs few of them
    from pebuilder.arch import Arch


class Build:
    system = ""
    functions: tuple[str, ...] = ("rebuild",)
    refresh = False  # resolve package sets again (systems that pin them)

    def __init__(self, cfg: Config):
        self.cfg = cfg

    def stages(self) -> list[Stage]:
        raise NotImplementedError

    def select(self, function: str) -> set[str] | None:
        return None

    def arch(self) -> Arch:
        raise NotImplementedError

    def check_target(self) -> tuple[Path, str, str, str]:
        """(image, firmware, media, marker) that `build --check` boots."""
        raise NotImplementedError

    def prepare(self, function: str) -> None:
        """Adjust the config for a function before stages are made (e.g. packagehd's default disk)."""

    def inputs(self) -> list[Path]:
        """Files the build reads that no output may overwrite."""
        return [self.cfg.source] if self.cfg.source else []

    def trees(self) -> list[Path]:
        """Folders pebuilder writes into and packs: no output may live inside them."""
        work = self.cfg.work.dir
        return [work / "image", work / "extract", work / workdir.STATE]

    def folder_output(self, path: Path) -> bool:
        """Outputs that are folders by nature (netboot)."""
        nb = self.cfg.output.netboot
        return nb is not None and path == nb.dir

    def check_outputs(self) -> None:
        outs = self.cfg.outputs()
        ins = {p.resolve() for p in self.inputs()}
        for o in outs:
            r = o.resolve()
            if r in ins:
                raise ConfigError(f"output {o} is also an input of this build; choose another output path")
            for t in self.trees():
                if r == t.resolve() or r.is_relative_to(t.resolve()):
                    raise ConfigError(f"output {o} lies inside the work tree {t}, which pebuilder rebuilds and "
                                      "packs; put outputs elsewhere")
            if r.is_dir() and not self.folder_output(o):
                raise ConfigError(f"output {o} is a folder; give a file path")
        if len({o.resolve() for o in outs}) != len(outs):
            raise ConfigError("two outputs write to the same path")

    def run(self, function: str = "rebuild", *, force: bool = False, progress: Progress | None = None) -> Engine:
        self.prepare(function)
        self.check_outputs()
        source_date_epoch()  # a bad SOURCE_DATE_EPOCH is a config error, not a failure deep in a tool
        with workdir.locked(self.cfg.work.dir, self.cfg.outputs()) as state:
            engine = Engine(state, progress, force=force)
            engine.run(self.stages(), self.select(function))
        return engine


def salt_secret(cfg: Config) -> bytes | None:
    """The project's salt secret, only when a reproducible build has passwords to hash."""
    if source_date_epoch() is None or not any(u.password_file or u.password_env for u in cfg.users):
        return None
    from pebuilder.customise.accounts import project_secret

    path = cfg.accounts.salt_file
    if path is None:
        base = cfg.source.parent if cfg.source else cfg.work.dir / workdir.STATE
        path = base / ".pebuilder-salt"
    return project_secret(path)


def _key_salt(cfg: Config) -> bytes:
    """A random salt kept in the work folder, for the slow digest of passwords in stage keys."""
    path = cfg.work.dir / workdir.STATE / "key-salt"
    if not path.exists():
        import secrets

        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
    return path.read_bytes()


def password_digests(cfg: Config) -> list[str]:
    """So a changed password rebuilds, without leaving a fast-to-test hash of it in stages.json."""
    if not cfg.users:
        return []
    import hashlib

    from pebuilder.customise.accounts import Secret

    salt = _key_salt(cfg)
    out = [hashlib.pbkdf2_hmac("sha256", Secret(u).digest().encode(), salt, 100_000).hex() for u in cfg.users]
    secret = salt_secret(cfg)  # a new salt secret (reproducible builds) rebuilds too
    if secret:
        out.append(hashlib.pbkdf2_hmac("sha256", secret, salt, 100_000).hex())
    return out


BOOT_KEYS = ("hostname", "autologin", "serial_getty", "serial")


def customisation_inputs(cfg: Config, boot_keys: tuple[str, ...] = BOOT_KEYS) -> tuple[Any, list[Path], list[Path]]:
    """Everything customisation reads: config values, file contents, folders (stage key inputs).

    `boot_keys`: the [boot] keys the system's customisation reads. Tiny Core turns hostname,
    autologin and serial into boot codes only, so it passes fewer: a changed code must not rerun
    (and repack) the initrd."""
    values: dict[str, Any] = {name: registry.to_data(getattr(cfg, name))
                              for name in ("accounts", "ssh", "certificates", "services", "kiosk")}
    values["users"] = [registry.to_data(u) for u in cfg.users]
    values["files"] = [registry.to_data(f) for f in cfg.files]
    values["boot"] = {k: getattr(cfg.boot, k) for k in boot_keys}
    values["provision"] = registry.to_data(cfg.provision) if cfg.provision else None

    def lazy_values() -> Any:
        return {**values, "secrets": password_digests(cfg)}

    files: list[Path] = [f.source for f in cfg.files if f.source.is_file()]
    trees: list[Path] = [f.source for f in cfg.files if f.source.is_dir()]
    if cfg.certificates.bundle:
        from pebuilder.customise import certificates

        files.append(certificates.bundle_path(cfg.certificates.bundle))
    if cfg.ssh.config:
        files.append(cfg.ssh.config)
    if cfg.ssh.enable and cfg.ssh.host_keys:
        from pebuilder.customise import ssh

        files += ssh.host_key_files(cfg.ssh.host_keys)
    return lazy_values, [f for f in files if f.is_file()], trees
