"""pebuilder.toml: the native config, a superset of ezremaster.cfg.

Every key is checked: an unknown one or a wrong type is an error that names the key and what it
accepts, since a silently ignored typo in a boot config costs a whole build-and-boot cycle.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from pebuilder.config.model import (
    DISK_FORMATS,
    FILESYSTEMS,
    FIRMWARES,
    PERSIST,
    PLACEMENTS,
    TABLES,
    BuildConfig,
    Customisation,
    DiskOutput,
    ExtensionSpec,
    FileOverlay,
    IsoOutput,
    KernelSpec,
    User,
    parse_size,
    tcz_name,
)
from pebuilder.errors import ConfigError, Exit
from pebuilder.formats.compress import COMPRESSIONS

SCHEMA: dict[str, set[str]] = {
    "template": {"iso", "builtin"},
    "work": {"dir"},
    "extensions": {"dirs", *PLACEMENTS, "scripts", "copy2fs", "mirrors", "repo", "offline"},
    "boot": {"codes", "timeout", "serial", "modules", "autologin", "serial_getty", "hostname"},
    "kernel": {"debian", "vmlinuz", "modules"},
    "users": {"name", "uid", "groups", "shell", "sudo", "password_hash", "password_file", "password_env",
              "authorized_keys"},
    "accounts": {"lock_root"},
    "ssh": {"enable", "host_keys", "config"},
    "certificates": {"bundle"},
    "services": {"bootlocal", "bootsync", "filetool"},
    "files": {"source", "dest", "mode", "owner"},
    "kiosk": {"url"},
    "initrd": {"compression", "level"},
    "output": {"iso", "disk"},
    "output.iso": {"path", "volume_id", "uefi"},
    "output.disk": {"path", "size", "table", "firmware", "filesystem", "label", "format", "data_size",
                    "data_label", "persist", "mydata"},
}
BUILTIN_TEMPLATES = ("debian",)
TOP_TABLES = ("template", "work", "extensions", "boot", "initrd", "output", "kernel", "users", "accounts", "ssh",
              "certificates", "services", "files", "kiosk")


class _Reader:
    def __init__(self, path: Path, data: dict[str, Any]):
        self.path = path
        self.data = data

    def fail(self, key: str, msg: str) -> ConfigError:
        return ConfigError(f"{self.path}: {key}: {msg}")

    def table(self, name: str, node: Any = None, label: str | None = None) -> dict[str, Any]:
        label = label or name
        if node is None:
            node = self.data
            for part in name.split("."):
                node = node.get(part, {}) if isinstance(node, dict) else {}
        if not isinstance(node, dict):
            raise self.fail(label, "must be a table")
        allowed = SCHEMA[name]
        for key in node:
            if key not in allowed:
                raise self.fail(f"{label}.{key}", f"unknown key; accepted keys in [{name}]: "
                                f"{', '.join(sorted(allowed))}")
        return node

    def get(self, table: str, key: str, kind: type | tuple[type, ...], default: Any = None,
            node: dict[str, Any] | None = None, label: str | None = None) -> Any:
        label = label or table
        node = self.table(table, node, label)
        if key not in node:
            return default
        value = node[key]
        if isinstance(value, bool) and kind in (int, float, (int, float)):
            raise self.fail(f"{label}.{key}", f"expected a number, got {value!r}")
        if not isinstance(value, kind):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise self.fail(f"{label}.{key}", f"expected {names}, got {type(value).__name__} {value!r}")
        return value

    def tables(self, name: str, raw: Any, hint: str, single_ok: bool = False):
        """Each table of an array of tables ([[name]]), with its label for messages and a getter."""
        if raw is None:
            return
        if isinstance(raw, dict) and single_ok:
            raw = [raw]
        if not isinstance(raw, list):
            raise self.fail(name, hint)
        for i, t in enumerate(raw):
            label = f"{name}[{i}]"
            node = self.table(name, t, label)

            def get(key: str, kind: Any, default: Any = None, node: dict = node, label: str = label) -> Any:
                return self.get(name, key, kind, default, node, label)

            yield label, node, get

    def strings(self, table: str, key: str, node: dict[str, Any] | None = None, label: str | None = None) -> list[str]:
        value = self.get(table, key, list, [], node, label)
        for item in value:
            if not isinstance(item, str) or not item.strip():
                raise self.fail(f"{label or table}.{key}", f"expected a list of non-empty strings, got item {item!r}")
        return value


def load(path: Path, ext_dirs: list[Path] | None = None) -> BuildConfig:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config ({exc})", Exit.CONFIG_UNREADABLE) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse(data, path, ext_dirs or [])


def parse(data: dict[str, Any], path: Path, ext_dirs: list[Path]) -> BuildConfig:
    r = _Reader(path, data)
    for top in data:
        if top not in TOP_TABLES:
            raise r.fail(top, f"unknown table; accepted: {', '.join(TOP_TABLES)}")
    base = path.parent
    iso = r.get("template", "iso", str)
    builtin = r.get("template", "builtin", str)
    if iso and builtin:
        raise r.fail("template", "give either iso or builtin, not both")
    if builtin and builtin not in BUILTIN_TEMPLATES:
        raise r.fail("template.builtin", f"unknown template {builtin!r}; accepted: {', '.join(BUILTIN_TEMPLATES)}")
    work = base / r.get("work", "dir", str, "build")
    exts = [ExtensionSpec(tcz_name(n), p)  # type: ignore[arg-type]
            for p in PLACEMENTS for n in r.strings("extensions", p)]
    scripts = r.get("extensions", "scripts", str, "run")
    if scripts not in ("run", "ignore"):
        raise r.fail("extensions.scripts", f"got {scripts!r}; accepted values: run, ignore")
    copy2fs = r.get("extensions", "copy2fs", (bool, list), False)
    if isinstance(copy2fs, list):
        copy2fs = [tcz_name(x) for x in r.strings("extensions", "copy2fs")]
    timeout = r.get("boot", "timeout", (int, float))
    if timeout is not None and not 0 <= timeout <= 3600:
        raise r.fail("boot.timeout", f"{timeout} is out of range; give seconds from 0 to 3600")
    codes = r.strings("boot", "codes")
    for c in codes:
        if any(ch.isspace() for ch in c):
            raise r.fail("boot.codes", f"{c!r} holds white space; give one boot code per list item")
    comp = r.get("initrd", "compression", str, "gzip")
    if comp not in COMPRESSIONS:
        raise r.fail("initrd.compression", f"got {comp!r}; accepted values: {', '.join(COMPRESSIONS)}")
    level = r.get("initrd", "level", int, 9)
    if not 0 <= level <= 22:
        raise r.fail("initrd.level", f"{level} is out of range (gzip 1-9, xz 0-9, zstd 1-22)")
    iso_out = None
    out_node = data.get("output", {})
    if not isinstance(out_node, dict):
        raise r.fail("output", "must be a table")
    for key in out_node:
        if key not in SCHEMA["output"]:
            raise r.fail(f"output.{key}", "unknown output; accepted: iso, disk")
    out = r.table("output.iso")
    if out or not out_node.get("disk"):
        vol = r.get("output.iso", "volume_id", str, "PEBUILDER")
        if not 1 <= len(vol) <= 32:
            raise r.fail("output.iso.volume_id", "must be 1 to 32 characters")
        iso_out = IsoOutput(path=base / r.get("output.iso", "path", str, "pebuilder.iso"), volume_id=vol,
                            uefi=r.get("output.iso", "uefi", bool, True))
    disks = _disks(r, data, base)
    mirrors = r.strings("extensions", "mirrors")
    for m in mirrors:
        if not m.startswith(("http://", "https://")):
            raise r.fail("extensions.mirrors", f"{m!r} is not an http:// or https:// URL")
    return BuildConfig(
        kernel=_kernel(r, base),
        custom=_custom(r, data, base),
        mirrors=mirrors,
        repo=r.get("extensions", "repo", str),
        offline=r.get("extensions", "offline", bool, False),
        disks=disks,
        source=path,
        template_iso=(base / iso).resolve() if iso else None,
        work_dir=work.resolve(),
        ext_dirs=[*(base / d for d in r.strings("extensions", "dirs")), *ext_dirs],
        extensions=exts,
        boot_codes=codes,
        extract_scripts=scripts,
        copy2fs_all=copy2fs is True,
        copy2fs=copy2fs if isinstance(copy2fs, list) else [],
        menu_timeout=float(timeout) if timeout is not None else None,
        serial=r.get("boot", "serial", bool, False),
        initrd_compression=comp,
        initrd_level=level,
        iso=iso_out,
    )


def _choice(r: _Reader, key: str, value: str, accepted: tuple[str, ...]) -> str:
    if value not in accepted:
        raise r.fail(key, f"got {value!r}; accepted values: {', '.join(accepted)}")
    return value


def _size(r: _Reader, key: str, value: Any) -> int:
    try:
        return parse_size(value)
    except ValueError as exc:
        raise r.fail(key, str(exc)) from None


def _disks(r: _Reader, data: dict[str, Any], base: Path) -> list[DiskOutput]:
    raw = data.get("output", {}).get("disk") if isinstance(data.get("output"), dict) else None
    out = []
    for name, node, get in r.tables("output.disk", raw, "use [[output.disk]] tables", single_ok=True):
        if "path" not in node:
            raise r.fail(f"{name}.path", "missing; say where the disk image goes, e.g. path = \"out/disk.raw\"")
        persist = r.strings("output.disk", "persist", node, name)
        for p in persist:
            _choice(r, f"{name}.persist", p, PERSIST)
        label = get("label", str, "PEBUILDER")
        if not 1 <= len(label) <= 16 or any(c.isspace() for c in label):
            raise r.fail(f"{name}.label", f"{label!r}: a filesystem label is 1 to 16 characters without spaces")
        data_size = get("data_size", (str, int))
        mydata = get("mydata", str)
        disk = DiskOutput(
            path=(base / get("path", str)).resolve(),
            size=_size(r, f"{name}.size", get("size", (str, int), "20G")),
            table=_choice(r, f"{name}.table", get("table", str, "msdos"), TABLES),
            firmware=_choice(r, f"{name}.firmware", get("firmware", str, "bios"), FIRMWARES),
            filesystem=_choice(r, f"{name}.filesystem", get("filesystem", str, "ext4"), FILESYSTEMS),
            label=label,
            format=_choice(r, f"{name}.format", get("format", str, "raw"), DISK_FORMATS),
            data_size=_size(r, f"{name}.data_size", data_size) if data_size is not None else None,
            data_label=get("data_label", str, "PBDATA"),
            persist=persist,
            mydata=(base / mydata).resolve() if mydata else None,
        )
        if disk.table == "msdos" and disk.firmware != "bios" and disk.size > (2 << 40):
            raise r.fail(f"{name}.size", "an msdos table cannot address more than 2 TiB; use table = \"gpt\"")
        out.append(disk)
    paths = [d.path for d in out]
    if len(set(paths)) != len(paths):
        raise r.fail("output.disk", "two disks write to the same path")
    return out


def _kernel(r: _Reader, base: Path) -> KernelSpec | None:
    node = r.table("kernel")
    if not node:
        return None
    deb = r.get("kernel", "debian", str)
    vmlinuz = r.get("kernel", "vmlinuz", str)
    mods = r.get("kernel", "modules", str)
    if bool(deb) == bool(vmlinuz):
        raise r.fail("kernel", "give either debian = \"linux-image-...\" or vmlinuz (+ modules), not both or neither")
    if deb and not deb.startswith("linux-image-"):
        raise r.fail("kernel.debian", f"{deb!r} is not a Debian kernel package (linux-image-...)")
    return KernelSpec(debian=deb, vmlinuz=(base / vmlinuz).resolve() if vmlinuz else None,
                      modules=(base / mods).resolve() if mods else None)


NAME_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")


def _users(r: _Reader, data: dict[str, Any], base: Path) -> list[User]:
    raw = data.get("users", [])
    for i, t in enumerate(raw if isinstance(raw, list) else []):
        if isinstance(t, dict) and "password" in t:
            raise r.fail(f"users[{i}].password", "plain-text passwords are not accepted; use password_file, "
                         "password_env or password_hash")
    out = []
    for label, node, get in r.tables("users", raw, "use [[users]] tables, one per account"):
        name = get("name", str)
        if not name or not NAME_RE.match(name):
            raise r.fail(f"{label}.name", f"{name!r} is not a valid user name (lower case, digits, _ and -)")
        uid = get("uid", int)
        if uid is None or not 1 <= uid < 65534:
            raise r.fail(f"{label}.uid", "give a uid from 1 to 65533")
        secrets = [k for k in ("password_hash", "password_file", "password_env") if k in node]
        if len(secrets) > 1:
            raise r.fail(label, f"give one of password_hash, password_file, password_env (got {', '.join(secrets)})")
        phash = get("password_hash", str)
        if phash is not None and not phash.startswith(("$6$", "$5$", "$y$", "$2", "!", "*")):
            raise r.fail(f"{label}.password_hash", "expected a crypt hash such as $6$...")
        pfile = get("password_file", str)
        out.append(User(name=name, uid=uid, groups=r.strings("users", "groups", node, label),
                        shell=get("shell", str, "/bin/sh"), sudo=get("sudo", bool, False), password_hash=phash,
                        password_file=(base / pfile).resolve() if pfile else None,
                        password_env=get("password_env", str),
                        authorized_keys=r.strings("users", "authorized_keys", node, label)))
    names = [u.name for u in out]
    if len(set(names)) != len(names):
        raise r.fail("users", "a user name is given twice")
    return out


def _files(r: _Reader, data: dict[str, Any], base: Path) -> list[FileOverlay]:
    out = []
    for label, _, get in r.tables("files", data.get("files", []), "use [[files]] tables, one per file"):
        src, dest = get("source", str), get("dest", str)
        if not src or not dest or not dest.startswith("/"):
            raise r.fail(label, "needs source and an absolute dest, e.g. dest = \"/etc/motd\"")
        mode = get("mode", str)
        try:
            mode_i = int(mode, 8) if mode is not None else None
        except ValueError:
            raise r.fail(f"{label}.mode", f"{mode!r} is not an octal mode such as \"0644\"") from None
        owner = get("owner", str, "0:0")
        try:
            uid, gid = (int(x) for x in owner.split(":"))
        except ValueError:
            raise r.fail(f"{label}.owner", f"{owner!r}: give numeric uid:gid such as \"1001:50\"") from None
        out.append(FileOverlay((base / src).resolve(), dest, mode_i, uid, gid))
    return out


def _custom(r: _Reader, data: dict[str, Any], base: Path) -> Customisation:
    bundle = r.get("certificates", "bundle", str)
    host_keys = r.get("ssh", "host_keys", str)
    sshd = r.get("ssh", "config", str)
    return Customisation(
        users=_users(r, data, base),
        lock_root=r.get("accounts", "lock_root", bool, True),
        autologin=r.get("boot", "autologin", bool, True),
        serial_getty=r.get("boot", "serial_getty", bool, False),
        hostname=r.get("boot", "hostname", str),
        modules=r.strings("boot", "modules"),
        ssh=r.get("ssh", "enable", bool, bool(r.table("ssh"))),
        ssh_host_keys=(base / host_keys).resolve() if host_keys else None,
        sshd_config=(base / sshd).resolve() if sshd else None,
        ca_bundle=bundle if bundle in (None, "host") else str((base / bundle).resolve()),
        bootlocal=r.strings("services", "bootlocal"),
        bootsync=r.strings("services", "bootsync"),
        filetool=r.strings("services", "filetool"),
        files=_files(r, data, base),
        kiosk_url=r.get("kiosk", "url", str),
    )


def load_any(path: Path, ext_dirs: list[Path] | None = None) -> BuildConfig:
    """Pick the reader by name: *.toml is native, anything else is read as ezremaster.cfg."""
    if path.suffix == ".toml":
        return load(path, ext_dirs)
    from pebuilder.config import ezcfg

    return ezcfg.load(path, ext_dirs)
