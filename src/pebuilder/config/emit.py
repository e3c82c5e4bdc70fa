"""Write a resolved model back out as pebuilder.toml, e.g. to move from ezremaster.cfg."""

from __future__ import annotations

import json

from pebuilder.config.model import PLACEMENTS, BuildConfig


def _v(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_v(x) for x in value) + "]"
    return json.dumps(str(value))


def to_toml(cfg: BuildConfig) -> str:
    out = ["[template]"]
    out.append(f"iso = {_v(cfg.template_iso)}" if cfg.template_iso else 'builtin = "debian"')
    out += ["", "[work]", f"dir = {_v(cfg.work_dir)}", "", "[extensions]",
            f"dirs = {_v([str(d) for d in cfg.ext_dirs])}"]
    for p in PLACEMENTS:
        if cfg.names(p):
            out.append(f"{p} = {_v(cfg.names(p))}")
    out.append(f"scripts = {_v(cfg.extract_scripts)}")
    if cfg.mirrors:
        out.append(f"mirrors = {_v(cfg.mirrors)}")
    if cfg.repo:
        out.append(f"repo = {_v(cfg.repo)}")
    if cfg.offline:
        out.append("offline = true")
    out.append(f"copy2fs = {_v(cfg.copy2fs if cfg.copy2fs else cfg.copy2fs_all)}")
    out += ["", "[boot]", f"codes = {_v(cfg.boot_codes)}", f"serial = {_v(cfg.serial)}"]
    if cfg.menu_timeout is not None:
        out.append(f"timeout = {_v(cfg.menu_timeout)}")
    out += ["", "[initrd]", f"compression = {_v(cfg.initrd_compression)}", f"level = {cfg.initrd_level}"]
    if cfg.iso:
        out += ["", "[output.iso]", f"path = {_v(cfg.iso.path)}", f"volume_id = {_v(cfg.iso.volume_id)}",
                f"uefi = {_v(cfg.iso.uefi)}"]
    for d in cfg.disks:
        out += ["", "[[output.disk]]", f"path = {_v(d.path)}", f"size = {d.size}", f"table = {_v(d.table)}",
                f"firmware = {_v(d.firmware)}", f"filesystem = {_v(d.filesystem)}", f"label = {_v(d.label)}",
                f"format = {_v(d.format)}", f"data_label = {_v(d.data_label)}", f"persist = {_v(d.persist)}"]
        if d.data_size:
            out.append(f"data_size = {d.data_size}")
        if d.mydata:
            out.append(f"mydata = {_v(d.mydata)}")
    return "\n".join(out) + "\n"
