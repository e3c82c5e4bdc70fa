"""What every build shares: the run (lock, stale cleanup, engine), output checks, customisation inputs.

A build is a class with a flat `stages()` list; this module runs it so the CLI never needs to know
which system it is.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pebuilder.config import reads, registry
from pebuilder.config.model import Config
from pebuilder.engine import workdir
from pebuilder.engine.progress import Progress
from pebuilder.engine.stages import Engine, Stage, StageGraphError, relative_name
from pebuilder.errors import ConfigError
from pebuilder.fsutil import source_date_epoch

if TYPE_CHECKING:  # the customise modules are imported where they are used: a no-op run needs few of them
    from pebuilder.arch import Arch


def stage(factory: Callable[..., Stage]) -> Callable[..., Stage]:
    """Marks a method that makes a stage: config it reads while making the stage (output paths, a
    value an action closes over) is that stage's read, checked against its declaration like the
    reads of its action."""

    @functools.wraps(factory)
    def make(self: Build, *args: Any) -> Stage:
        with self.recorder.scoped(MAKING):
            made = factory(self, *args)
        self.recorder.move(MAKING, made.name)
        return made

    return make


MAKING = "\0making"  # the recorder's scope while a stage is being made (its name is known after)


class Build:
    system = ""
    functions: tuple[str, ...] = ("rebuild",)
    refresh = False  # resolve package sets again (systems that pin them)
    # Keys read outside any stage (the build's set-up) that every stage's key holds: they change
    # everything anyway (the architecture). Anything else a build reads outside a stage must be
    # inert, or only whether a table is there / how many (which stages exist).
    global_reads: tuple[str, ...] = ()

    def __init__(self, cfg: Config):
        self.plain = cfg  # for the build's machinery (lock, output checks), never for image content
        self.recorder = reads.Recorder()
        self.cfg: Config = reads.view(cfg, self.recorder)

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
        return [self.plain.source] if self.plain.source else []

    def trees(self) -> list[Path]:
        """Folders pebuilder writes into and packs: no output may live inside them."""
        work = self.plain.work.dir
        return [work / "image", work / "extract", work / workdir.STATE]

    def folder_output(self, path: Path) -> bool:
        """Outputs that are folders by nature (netboot)."""
        nb = self.plain.output.netboot
        return nb is not None and path == nb.dir

    def check_outputs(self) -> None:
        outs = self.plain.outputs()
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
        with workdir.locked(self.plain.work.dir, self.plain.outputs()) as state:
            engine = Engine(state, progress, force=force, config=ConfigReads(self))
            stages = self.stages()
            self.check_build_reads()
            engine.run(stages, self.select(function))
        return engine

    def check_build_reads(self) -> None:
        """Reads outside any stage: inert keys, build-wide keys, and which stages exist."""
        made = reads.undeclared(self.recorder.reads(reads.BUILD), self.global_reads, registry.inert_keys())
        bad = [r for r in made if not r.endswith((reads.PRESENT, reads.COUNT))]
        if bad:
            raise StageGraphError(f"{type(self).__name__} reads config keys outside its stages: {', '.join(bad)} "
                                  "(read them in a stage that declares them, or add them to global_reads)")


def _relative(value: Any, work: Path) -> Any:
    """Paths inside the work folder as keys hold them (see Engine.name): a moved project stays cached."""
    if isinstance(value, str) and value.startswith(str(work) + os.sep):
        return relative_name(value, work)
    if isinstance(value, dict):
        return {k: _relative(x, work) for k, x in value.items()}
    if isinstance(value, list):
        return [_relative(x, work) for x in value]
    return value


class ConfigReads:
    """The engine's view of a build's config: declared keys' values, and the reads no declaration holds."""

    def __init__(self, build: Build):
        self.build = build
        self.inert = registry.inert_keys()

    def scoped(self, name: str) -> AbstractContextManager[None]:
        return self.build.recorder.scoped(name)

    def values(self, declared: Sequence[str]) -> Any:
        cfg = self.build.plain
        return _relative({"declared": reads.values(cfg, declared), "build": reads.values(cfg, self.build.global_reads)},
                         cfg.work.dir)

    def undeclared(self, name: str, declared: Sequence[str]) -> list[str]:
        return reads.undeclared(self.build.recorder.reads(name), [*declared, *self.build.global_reads], self.inert)


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


# What the customisation code of both systems reads (each system's stage adds its own keys).
CUSTOMISATION_READS = ("users", "accounts", "ssh", "certificates", "files", "provision")


def customisation_files(cfg: Config) -> list[Path]:
    """Files whose contents customisation copies or reads (stage key inputs)."""
    files: list[Path] = [f.source for f in cfg.files if f.source.is_file()]
    if cfg.certificates.bundle:
        from pebuilder.customise import certificates

        files.append(certificates.bundle_path(cfg.certificates.bundle))
    if cfg.ssh.config:
        files.append(cfg.ssh.config)
    if cfg.ssh.enable and cfg.ssh.host_keys:
        from pebuilder.customise import ssh

        files += ssh.host_key_files(cfg.ssh.host_keys)
    return [f for f in files if f.is_file()]


def customisation_trees(cfg: Config) -> list[Path]:
    return [f.source for f in cfg.files if f.source.is_dir()]
