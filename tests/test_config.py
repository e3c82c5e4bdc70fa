"""Both config readers: the seed's ezremaster.cfg as written, and a specific error for each mistake."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import pebuilder

from pebuilder.config import ezcfg, load_any, registry, toml
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
    assert cfg.kind == "tinycore"
    assert cfg.template.iso == tmp_path / "CorePure64-11.1.iso"
    assert cfg.work.dir == tmp_path / "ezremaster"
    assert cfg.boot.codes == ["home=sda1", "opt=sda1", "tce=sda1", "restore=sda1"]
    assert cfg.extensions.onboot == ["chromium-browser.tcz", "iptables.tcz", "faasd.tcz", "nginx.tcz"]
    assert cfg.extensions.initrd == ["openssh.tcz", "original-modules-5.4.3-tinycore64.tcz", "Xorg-7.7.tcz"]
    assert cfg.extensions.scripts == "ignore"
    assert cfg.extensions.copy2fs is True
    assert cfg.output.iso is not None and cfg.output.iso.path == tmp_path / "ezremaster" / "ezremaster.iso"
    assert cfg.output.iso.volume_id == "Tinycore" and cfg.output.disk == []
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
    (BASE + "cc = quiet a;reboot\n", r"e\.cfg:3: cc: 'a;reboot' holds ';'", Exit.CONFIG_INVALID),
    (BASE + "app_extract_initrd = ../../etc/x.tcz\n", r"extensions\.initrd: item '\.\./\.\./etc/x\.tcz'",
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
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("pebuilder: error:")


def test_unreadable_cfg_exit_2(tmp_path):
    proc = pebuilder("remaster", tmp_path / "nope.cfg", "rebuild", check=False)
    assert proc.returncode == Exit.CONFIG_UNREADABLE == 2
    assert "nope.cfg: cannot read the config" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("text,message", [
    ('[template]\nisos = "a.iso"\n',
     r"template\.isos: unknown key \(did you mean iso\?\); accepted in \[template\]: iso$"),
    ('[template]\nbuiltin = "debian"\n',
     r"template\.builtin: unknown key \(renamed: use system = \"debian\" \(at the top level\)\); "
     r"accepted in \[template\]: iso$"),
    ('[boot]\ntimeout = "fast"\n', r"boot\.timeout: expected a number, got str 'fast'"),
    ('[boot]\ntimeout = -1\n', r"boot\.timeout: -1(\.0)? is out of range; give a number from 0 to 3600"),
    ('[boot]\ncodes = "console=ttyS0"\n', r"boot\.codes: expected a list of strings, got str"),
    ('[boot]\ncodes = ["a b"]\n', r"boot\.codes: item 'a b': 'a b' holds ' '"),
    ('[boot]\ncodes = ["x}; reboot"]\n', r"boot\.codes: item .* holds ' ', ';', '}'"),
    ('[boot]\nhostname = "a;b"\n', r"boot\.hostname: 'a;b' is not a host name"),
    ('[extensions]\nscripts = "sometimes"\n', r"extensions\.scripts: got 'sometimes'; accepted values: run, ignore"),
    ('[extensions]\nmirrors = ["ftp://x/"]\n', r"extensions\.mirrors: item 'ftp://x/': .* is not an http"),
    ('[initrd]\ncompression = "lz4"\n', r"initrd\.compression: got 'lz4'; accepted values: gzip, xz, zstd, none"),
    ('[initrd]\nlevel = true\n', r"initrd\.level: expected a level name or number, got True"),
    ('[bootz]\n', r"bootz: unknown key \(did you mean boot\?\); accepted in the top level: system, template"),
    ('[kernel]\ndebian = "linux-image-cloud-amd64"\n',
     r"kernel\.debian: unknown key \(renamed: use \[kernel\] package\); accepted in \[kernel\]: package"),
    ('[kernel]\npackage = "nginx"\n', r"kernel\.package: 'nginx' is not a Debian kernel package"),
    ('[kernel]\nvmlinuz = "vmlinuz"\n', r"kernel\.modules_dir: missing; give the folder holding lib/modules"),
    ('[output.iso]\nvolume_id = ""\n', r"output\.iso\.volume_id: '': a label is 1 to 32 characters"),
    ('[[users]]\nname = "Bob"\nuid = 1000\n', r"users\[0\]\.name: 'Bob' is not a valid user name"),
    ('[[users]]\nname = "bob"\nuid = 0\n', r"users\[0\]\.uid: 0 is out of range; give a number from 1 to 65533"),
    ('[[users]]\nname = "bob"\n', r"users\[0\]\.uid: missing; numeric user id"),
    ('[[users]]\nname = "bob"\nuid = 5\npassword = "plain"\n', r"users\[0\]\.password: unknown key"),
    ('[[users]]\nname = "bob"\nuid = 5\npassword_hash = "$6$a$b"\npassword_env = "PW"\n',
     r"users\[0\]: give one of password_hash, password_file, password_env"),
    ('[[files]]\nsource = "x"\ndest = "etc/x"\n', r"files\[0\]\.dest: 'etc/x': give an absolute path"),
    ('[[files]]\nsource = "x"\ndest = "/etc/x"\nowner = "root"\n', r"files\[0\]\.owner: 'root': give a numeric"),
    ('[[files]]\nsource = "x"\ndest = "/etc/x"\nmode = "999"\n', r"files\[0\]\.mode: '999' is not an octal mode"),
    ('[boot\n', r"not valid TOML"),
])
def test_native_config_errors_name_the_key(tmp_path, text, message):
    p = tmp_path / "pebuilder.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        toml.load(p)
    assert info.value.code == Exit.CONFIG_INVALID
    proc = pebuilder("config", "show", p, check=False)
    assert proc.returncode == Exit.CONFIG_INVALID, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


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
    cfg = toml.load(p)
    assert cfg.kind == "tinycore" and cfg.source == p
    assert cfg.extensions.initrd == ["openssh"] and cfg.extensions.builtin == ["iptables"]
    assert cfg.extensions.copy2fs == ["nginx"] and cfg.boot.timeout == 2.5 and cfg.boot.serial is True
    assert cfg.extensions.dirs == [tmp_path / "tcz"] and cfg.work.dir == tmp_path / "w"
    assert cfg.output.iso is not None and cfg.output.iso.path == tmp_path / "out/x.iso"
    shown = json.loads(pebuilder("config", "show", p, "--format", "json").stdout)
    assert shown["boot"]["codes"] == ["tce=LABEL=TC", "cde"] and shown["output"]["iso"]["volume_id"] == "MYTC"
    assert shown["template"]["iso"] == str(tmp_path / "tc.iso")
    # TOML output reads back to the same model
    again = tmp_path / "again.toml"
    again.write_text(pebuilder("config", "show", p).stdout)
    assert toml.load(again) == cfg


def test_cli_flags_override_the_file(tmp_path):
    p = tmp_path / "pebuilder.toml"
    p.write_text('[template]\niso = "tc.iso"\n[extensions]\ndirs = ["b"]\n[boot]\ntimeout = 9\n')
    shown = json.loads(pebuilder("config", "show", p, "--format", "json", "--ext-dir", tmp_path / "a",
                                 "--menu-timeout", "1.5", "--serial", "--set", "boot.hostname=box",
                                 "--set", 'initrd.compression="xz"').stdout)
    assert shown["extensions"]["dirs"] == [str(tmp_path / "a"), str(tmp_path / "b")]  # flags come first
    assert shown["boot"] == {"timeout": 1.5, "serial": True, "hostname": "box"}
    assert shown["initrd"]["compression"] == "xz"
    bad = pebuilder("config", "show", p, "--menu-timeout", "soon", check=False)
    assert bad.returncode == Exit.CONFIG_INVALID and "boot.timeout: expected a number, got str 'soon'" in bad.stderr
    unknown = pebuilder("config", "show", p, "--set", "boot.nosuch=1", check=False)
    assert unknown.returncode == Exit.CONFIG_INVALID and "--set boot.nosuch=1: give TABLE.KEY=VALUE" in unknown.stderr


def test_ezremaster_cfg_converts_to_native(tmp_path):
    p = tmp_path / "ezremaster.cfg"
    p.write_text(SEED_CFG.format(iso=tmp_path / "tc.iso", work=tmp_path / "w"))
    out = tmp_path / "converted.toml"
    out.write_text(pebuilder("config", "show", p).stdout)
    assert toml.load(out) == ezcfg.load(p)
    assert load_any(out) == load_any(p)


def test_usage_and_bad_function_exit_codes(tmp_path):
    usage = pebuilder("remaster", check=False)
    assert usage.returncode == Exit.USAGE and "usage: pebuilder remaster CFG" in usage.stderr
    p = tmp_path / "e.cfg"
    p.write_text(BASE)
    proc = pebuilder("remaster", p, "frobnicate", check=False)
    assert proc.returncode == Exit.BAD_FUNCTION == 3 and "unknown function 'frobnicate'" in proc.stderr


def test_missing_template_exit_5(tmp_path):
    p = tmp_path / "e.cfg"
    p.write_text(f"cd_location = {tmp_path}/none.iso\ntemp_dir = {tmp_path}/w\n")
    proc = pebuilder("remaster", p, "rebuild", check=False)
    assert proc.returncode == Exit.NO_TEMPLATE == 5 and "none.iso does not exist" in proc.stderr, proc.stderr
    notiso = tmp_path / "fake.iso"
    notiso.write_bytes(b"\0" * 40000)
    p.write_text(f"cd_location = {notiso}\ntemp_dir = {tmp_path}/w\n")
    proc = pebuilder("remaster", p, "rebuild", check=False)
    assert proc.returncode == Exit.NO_TEMPLATE and "not an ISO 9660 image" in proc.stderr, proc.stderr
    assert not Path(tmp_path / "w/ezremaster.iso").exists()


def test_disk_outputs_round_trip_through_show(tmp_path):
    p = tmp_path / "pebuilder.toml"
    p.write_text("""
[template]
iso = "tc.iso"
[[output.disk]]
path = "out/d.qcow2"
size = "2G"
table = "gpt"
firmware = "both"
format = "qcow2"
data_size = "512M"
persist = ["home", "opt"]
mydata = "backup"
""")
    cfg = toml.load(p)
    d = cfg.output.disk[0]
    assert (d.size, d.table, d.firmware, d.format, d.data_size) == (2 << 30, "gpt", "both", "qcow2", 512 << 20)
    assert d.mydata == tmp_path / "backup" and d.persist == ["home", "opt"] and d.path == tmp_path / "out/d.qcow2"
    assert cfg.output.iso is None  # only the disk was asked for
    again = tmp_path / "again.toml"
    again.write_text(pebuilder("config", "show", p).stdout)
    assert toml.load(again).output.disk == cfg.output.disk


def test_config_errors_for_outputs(tmp_path):
    p = tmp_path / "pebuilder.toml"
    p.write_text('[template]\niso = "tc.iso"\n[output.iso]\npath = "x.img"\n[[output.disk]]\npath = "x.img"\n')
    with pytest.raises(ConfigError, match="two outputs write to the same path"):
        toml.load(p)
    p.write_text('[template]\niso = "tc.iso"\n[[output.disk]]\npath = "d.raw"\nsize = "3T"\n')
    with pytest.raises(ConfigError, match=r"output\.disk\[0\]\.size: an msdos table cannot address more than 2 TiB"):
        toml.load(p)


def test_to_data_is_the_inverse_of_parse(tmp_path):
    p = tmp_path / "pebuilder.toml"
    p.write_text('[template]\niso = "tc.iso"\n[boot]\ncodes = ["quiet"]\n[[files]]\nsource = "a"\ndest = "/a"\n'
                 'mode = "0600"\n')
    cfg = toml.load(p)
    data = registry.to_data(cfg)
    assert data["files"] == [{"source": str(tmp_path / "a"), "dest": "/a", "mode": "0600"}]
    assert registry.parse(data, p) == cfg
