"""Both config readers: the seed's ezremaster.cfg as written, and a specific error for each mistake."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import pebuilder

from pebuilder.config import ezcfg, native
from pebuilder.errors import ConfigError, Exit

# Section 1 of the seed, verbatim but for the two paths.
SEED_CFG = """cd_location = {iso}
temp_dir = {work}/
cc = home=sda1 opt=sda1 tce=sda1 restore=sda1
app_outside_initrd_onboot = chromium-browser.tcz
app_outside_initrd_onboot = iptables.tcz
app_outside_initrd_onboot = faasd.tcz
app_outside_initrd_onboot = nginx.tcz
app_extract_initrd = openssh.tcz
app_extract_initrd = original-modules-5.4.3-tinycore64.tcz
app_extract_initrd = Xorg-7.7.tcz
extract_tcz_script = ignore
copy2fs.flg"""


def test_seed_cfg_loads_as_written(tmp_path):
    p = tmp_path / "ezremaster.cfg"
    p.write_text(SEED_CFG.format(iso=tmp_path / "CorePure64-11.1.iso", work=tmp_path / "ezremaster"))
    cfg = ezcfg.load(p)
    assert cfg.template_iso == tmp_path / "CorePure64-11.1.iso"
    assert cfg.work_dir == tmp_path / "ezremaster"
    assert cfg.boot_codes == ["home=sda1", "opt=sda1", "tce=sda1", "restore=sda1"]
    assert cfg.names("onboot") == ["chromium-browser.tcz", "iptables.tcz", "faasd.tcz", "nginx.tcz"]
    assert cfg.names("initrd") == ["openssh.tcz", "original-modules-5.4.3-tinycore64.tcz", "Xorg-7.7.tcz"]
    assert cfg.extract_scripts == "ignore"
    assert cfg.copy2fs_all is True
    assert cfg.iso is not None and cfg.iso.path == tmp_path / "ezremaster" / "ezremaster.iso"
    assert cfg.warnings == []


def test_unknown_key_warns_with_line_number(tmp_path):
    p = tmp_path / "e.cfg"
    p.write_text(f"cd_location = {tmp_path}/x.iso\ntemp_dir = {tmp_path}/w\nbackup_data = yes\n")
    cfg = ezcfg.load(p)
    assert cfg.warnings == [f"{p}:3: unknown key 'backup_data' ignored (known: " + ", ".join(
        sorted(ezcfg.KNOWN_KEYS)) + ")"]
    proc = pebuilder("config", "show", p)
    assert f"{p}:3: unknown key 'backup_data'" in proc.stderr


BASE = "cd_location = /x.iso\ntemp_dir = /w\n"


@pytest.mark.parametrize("text,message,code", [
    (BASE + "cc\n", r"e\.cfg:3: expected 'key = value'", Exit.CONFIG_INVALID),
    (BASE + "just some words\n", r"e\.cfg:3: expected 'key = value'", Exit.CONFIG_INVALID),
    (BASE + "app_extract_initrd =\n", r"e\.cfg:3: key 'app_extract_initrd' has no value", Exit.CONFIG_INVALID),
    (BASE + "app_extract_initrd = a.tcz b.tcz\n", r"e\.cfg:3: the value of 'app_extract_initrd' holds spaces",
     Exit.CONFIG_INVALID),
    (BASE + "temp_dir = /other\n", r"e\.cfg:3: 'temp_dir' is given twice \(first on line 2\)", Exit.CONFIG_INVALID),
    (BASE + "extract_tcz_script = maybe\n", r"e\.cfg:3: extract_tcz_script = 'maybe'; accepted values: ignore, run",
     Exit.CONFIG_INVALID),
    ("temp_dir = /w\n", r"cd_location is missing", Exit.NO_TEMPLATE),
    ("cd_location = /x.iso\n", r"temp_dir is missing", Exit.TEMP_DIR),
])
def test_malformed_cfg_errors(tmp_path, text, message, code):
    p = tmp_path / "e.cfg"
    p.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        ezcfg.load(p)
    assert info.value.code == code
    proc = pebuilder("config", "show", p, check=False)
    assert proc.returncode == code
    assert "Traceback" not in proc.stderr and "pebuilder: error:" in proc.stderr


def test_unreadable_cfg_exit_2(tmp_path):
    proc = pebuilder("remaster", tmp_path / "nope.cfg", "rebuild", check=False)
    assert proc.returncode == 2
    assert "nope.cfg: cannot read the config" in proc.stderr


@pytest.mark.parametrize("toml,message", [
    ('[template]\nisos = "a.iso"\n', r"template\.isos: unknown key; accepted keys in \[template\]: builtin, iso"),
    ('[boot]\ntimeout = "fast"\n', r"boot\.timeout: expected int or float, got str 'fast'"),
    ('[boot]\ntimeout = -1\n', r"boot\.timeout: -1 is out of range"),
    ('[boot]\ncodes = "console=ttyS0"\n', r"boot\.codes: expected list, got str"),
    ('[boot]\ncodes = ["a b"]\n', r"boot\.codes: 'a b' holds white space"),
    ('[extensions]\nscripts = "sometimes"\n', r"extensions\.scripts: got 'sometimes'; accepted values: run, ignore"),
    ('[initrd]\ncompression = "lz4"\n', r"initrd\.compression: got 'lz4'; accepted values: gzip, xz, zstd, none"),
    ('[bootz]\n', r"bootz: unknown table"),
    ('[template]\nbuiltin = "arch"\n', r"template\.builtin: unknown template 'arch'; accepted: debian"),
    ('[output.iso]\nvolume_id = ""\n', r"output\.iso\.volume_id: must be 1 to 32 characters"),
    ('[boot\n', r"not valid TOML"),
])
def test_native_config_errors_name_the_key(tmp_path, toml, message):
    p = tmp_path / "pebuilder.toml"
    p.write_text(toml)
    with pytest.raises(ConfigError, match=message):
        native.load(p)


def test_native_config_and_show(tmp_path):
    p = tmp_path / "pebuilder.toml"
    p.write_text("""
[template]
iso = "tc.iso"
[work]
dir = "w"
[extensions]
dirs = ["tcz"]
initrd = ["openssh"]
onboot = ["nginx.tcz"]
builtin = ["iptables"]
copy2fs = ["nginx"]
[boot]
codes = ["tce=LABEL=TC", "cde"]
timeout = 2.5
serial = true
[output.iso]
path = "out/x.iso"
volume_id = "MYTC"
""")
    cfg = native.load(p)
    assert cfg.names("initrd") == ["openssh.tcz"] and cfg.names("builtin") == ["iptables.tcz"]
    assert cfg.copy2fs == ["nginx.tcz"] and cfg.menu_timeout == 2.5 and cfg.serial
    assert cfg.ext_dirs == [tmp_path / "tcz"] and cfg.iso and cfg.iso.path == tmp_path / "out/x.iso"
    shown = json.loads(pebuilder("config", "show", p, "--format", "json").stdout)
    assert shown["boot_codes"] == ["tce=LABEL=TC", "cde"] and shown["iso"]["volume_id"] == "MYTC"
    # TOML output reads back to the same model
    again = tmp_path / "again.toml"
    again.write_text(pebuilder("config", "show", p).stdout)
    reread, original = native.load(again).to_dict(), cfg.to_dict()
    reread.pop("source"), original.pop("source")
    assert reread == original


def test_ezremaster_cfg_converts_to_native(tmp_path):
    p = tmp_path / "ezremaster.cfg"
    p.write_text(SEED_CFG.format(iso=tmp_path / "tc.iso", work=tmp_path / "w"))
    out = tmp_path / "converted.toml"
    out.write_text(pebuilder("config", "show", p).stdout)
    a, b = ezcfg.load(p).to_dict(), native.load(out).to_dict()
    a.pop("source"), b.pop("source")
    a["iso"].pop("path"), b["iso"].pop("path")
    assert a == b


def test_usage_and_bad_function_exit_codes(tmp_path):
    assert pebuilder("remaster", check=False).returncode == 1
    p = tmp_path / "e.cfg"
    p.write_text(BASE)
    proc = pebuilder("remaster", p, "frobnicate", check=False)
    assert proc.returncode == 3 and "unknown function 'frobnicate'" in proc.stderr


def test_missing_template_exit_5(tmp_path):
    p = tmp_path / "e.cfg"
    p.write_text(f"cd_location = {tmp_path}/none.iso\ntemp_dir = {tmp_path}/w\n")
    proc = pebuilder("remaster", p, "rebuild", check=False)
    assert proc.returncode == 5 and "none.iso does not exist" in proc.stderr
    notiso = tmp_path / "fake.iso"
    notiso.write_bytes(b"\0" * 40000)
    p.write_text(f"cd_location = {notiso}\ntemp_dir = {tmp_path}/w\n")
    proc = pebuilder("remaster", p, "rebuild", check=False)
    assert proc.returncode == 5 and "not an ISO 9660 image" in proc.stderr
    assert not Path(tmp_path / "w/ezremaster.iso").exists()


def test_disk_outputs_round_trip_through_show(tmp_path):
    p = tmp_path / "pebuilder.toml"
    p.write_text("""
[template]
iso = "tc.iso"
[output.disk]
path = "out/d.qcow2"
size = "2G"
table = "gpt"
firmware = "both"
format = "qcow2"
data_size = "512M"
persist = ["home", "opt"]
mydata = "backup"
""")
    cfg = native.load(p)
    d = cfg.disks[0]
    assert (d.size, d.table, d.firmware, d.format, d.data_size) == (2 << 30, "gpt", "both", "qcow2", 512 << 20)
    assert d.mydata == tmp_path / "backup" and d.persist == ["home", "opt"]
    assert cfg.iso is None  # only the disk was asked for
    again = tmp_path / "again.toml"
    again.write_text(pebuilder("config", "show", p).stdout)
    assert native.load(again).disks == cfg.disks
