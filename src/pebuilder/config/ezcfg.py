"""ezremaster.cfg, read as remaster.sh reads it.

remaster.sh greps `^key = ` and takes the third whitespace field, so a value never holds spaces;
`cc` is the exception (every word after `cc =`), and a bare `copy2fs.flg` line is a flag.
"""

from __future__ import annotations

from pathlib import Path

from pebuilder.config.model import PLACEMENTS, BuildConfig, ExtensionSpec, IsoOutput, tcz_name
from pebuilder.errors import ConfigError, Exit

LIST_KEYS = {
    "app_extract_initrd": "initrd",
    "app_outside_initrd_onboot": "onboot",
    "app_outside_initrd_ondemand": "ondemand",
    "app_builtin_initrd": "builtin",
}
SINGLE_KEYS = {"cd_location", "temp_dir", "extract_tcz_script"}
KNOWN_FLAGS = {"copy2fs.flg"}
KNOWN_KEYS = set(LIST_KEYS) | SINGLE_KEYS | {"cc", "copy2fs.lst"}


def load(path: Path, ext_dirs: list[Path] | None = None) -> BuildConfig:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config ({exc}); give the path of a readable "
                          "ezremaster.cfg", Exit.CONFIG_UNREADABLE) from None
    return parse(text, path, ext_dirs or [])


def parse(text: str, path: Path, ext_dirs: list[Path]) -> BuildConfig:
    single: dict[str, tuple[str, int]] = {}
    exts: list[ExtensionSpec] = []
    codes: list[str] = []
    copy2fs_all = False
    copy2fs: list[str] = []
    warnings: list[str] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        where = f"{path}:{lineno}"
        if not line or line.startswith("#"):
            continue
        if line in KNOWN_FLAGS:
            copy2fs_all = True
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or " " in key or "\t" in key:
            raise ConfigError(f"{where}: expected 'key = value' (or the bare flag copy2fs.flg), got {raw!r}")
        if not value:
            raise ConfigError(f"{where}: key {key!r} has no value")
        words = value.split()
        if key == "cc":
            codes.extend(words)
            continue
        if len(words) > 1:
            raise ConfigError(f"{where}: the value of {key!r} holds spaces ({value!r}); remaster.sh reads "
                              "only the first word, so give one value per line")
        if key in LIST_KEYS:
            exts.append(ExtensionSpec(tcz_name(value), LIST_KEYS[key]))  # type: ignore[arg-type]
        elif key == "copy2fs.lst":
            copy2fs.append(tcz_name(value))
        elif key in SINGLE_KEYS:
            if key in single:
                raise ConfigError(f"{where}: {key!r} is given twice (first on line {single[key][1]}); "
                                  "keep one")
            single[key] = (value, lineno)
        else:
            warnings.append(f"{where}: unknown key {key!r} ignored (known: {', '.join(sorted(KNOWN_KEYS))})")
    if "cd_location" not in single:
        raise ConfigError(f"{path}: cd_location is missing; set it to the template ISO "
                          "(cd_location = /path/CorePure64.iso)", Exit.NO_TEMPLATE)
    if "temp_dir" not in single:
        raise ConfigError(f"{path}: temp_dir is missing; set it to a work folder "
                          "(temp_dir = /path/ezremaster/)", Exit.TEMP_DIR)
    policy = single.get("extract_tcz_script", ("run", 0))[0]
    if policy not in ("ignore", "run"):
        raise ConfigError(f"{path}:{single['extract_tcz_script'][1]}: extract_tcz_script = {policy!r}; "
                          "accepted values: ignore, run")
    base = path.parent
    temp_dir = (base / single["temp_dir"][0]).resolve()
    return BuildConfig(
        source=path,
        template_iso=(base / single["cd_location"][0]).resolve(),
        work_dir=temp_dir,
        ext_dirs=list(ext_dirs),
        extensions=sorted(exts, key=lambda e: PLACEMENTS.index(e.placement)),
        boot_codes=codes,
        extract_scripts=policy,  # type: ignore[arg-type]
        copy2fs_all=copy2fs_all,
        copy2fs=copy2fs,
        iso=IsoOutput(path=temp_dir / "ezremaster.iso", volume_id="Tinycore"),
        warnings=warnings,
    )
