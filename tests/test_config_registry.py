"""The key registry: one declaration per key, and everything generated from it agrees.

A config using every registered key goes through `config show` and back to the identical model;
every key is listed by `config keys` and in the README; a new key without a test value here fails
the first test, so the round trip keeps covering all of them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, pebuilder, ssh_public_key

from pebuilder.config import registry, toml
from pebuilder.config.registry import all_keys
from pebuilder.errors import Exit

HASH = "$6$pbsalt01$" + "A" * 86
# One hand-picked valid value per key, different from its default where the key allows it. For keys
# of arrays of tables ([[users]], [[files]], [[output.disk]]) a list with one value per table (None: the
# key is left out of that table).
VALUES: dict[str, Any] = {
    "system": "debian",
    "template.iso": "tc.iso",
    "base.distro": "debian",  # the only accepted value (its default)
    "base.suite": "trixie",
    "base.variant": "minbase",
    "base.arch": "aarch64",
    "base.packages": ["curl", "openssh-server"],
    "base.mirror": "http://deb.example.org/debian",
    "base.trim": False,
    "base.compression": "zstd",
    "work.dir": "w",
    "work.extract_limit": "1G",
    "extensions.dirs": ["exts", "more/exts"],
    "extensions.initrd": ["openssh"],
    "extensions.onboot": ["nginx.tcz", "dialog"],
    "extensions.builtin": ["iptables"],
    "extensions.ondemand": ["gcc"],
    "extensions.scripts": "ignore",
    "extensions.copy2fs": ["nginx"],
    "extensions.mirrors": ["http://mirror.example/tc/", "https://other.example/tinycorelinux"],
    "extensions.repo": "14.x/x86_64/tcz",
    "extensions.offline": True,
    "boot.codes": ["quiet", "tce=LABEL=TC", "console=ttyS0,115200"],
    "boot.timeout": 2.5,
    "boot.serial": True,
    "boot.modules": ["virtio_blk", "e1000"],
    "boot.autologin": False,
    "boot.serial_getty": True,
    "boot.hostname": "box.example",
    "boot.secure_boot": True,  # needs amd64: left out beside base.arch = aarch64 (see VARIANTS)
    "initrd.compression": "xz",
    "initrd.level": 6,
    "kernel.package": "linux-image-cloud-amd64",  # either this ...
    "kernel.vmlinuz": "k/vmlinuz",  # ... or these two
    "kernel.modules_dir": "k/root",
    "kernel.modules": ["drivers/net", "virtio_blk"],
    "kernel.firmware": True,
    "users[].name": ["alice", "bob", "carol"],
    "users[].uid": [1100, 1101, 1102],
    "users[].groups": [["staff"], None, ["staff", "wheel"]],
    "users[].shell": ["/bin/bash", None, None],
    "users[].sudo": [True, None, None],
    "users[].password_hash": [HASH, None, None],  # one password source per user
    "users[].password_file": [None, "bob.pw", None],
    "users[].password_env": [None, None, "CAROL_PW"],
    "users[].authorized_keys": [[ssh_public_key("alice@a"), ssh_public_key("alice@b", "2")], None, None],
    "users[].replace": [None, True, None],
    "accounts.lock_root": False,
    "accounts.salt_file": "salt",
    "ssh.enable": True,
    "ssh.host_keys": "keys",
    "ssh.config": "sshd_config",
    "certificates.bundle": "ca.pem",
    "services.bootlocal": ["echo hi > /dev/console", "sleep 1"],
    "services.bootsync": ["echo sync"],
    "services.filetool": ["etc/x.conf"],
    "files[].source": ["motd", "overlay"],
    "files[].dest": ["/etc/motd", "/opt/overlay"],
    "files[].mode": ["0600", None],
    "files[].owner": ["1100:50", None],
    "kiosk.url": "http://127.0.0.1:8080/kiosk?x=1",
    "output.iso.path": "out/x.iso",
    "output.iso.volume_id": "MYTC",
    "output.iso.uefi": False,
    "output.disk[].path": ["out/d1.raw", "out/d2.qcow2"],
    "output.disk[].size": ["2G", 1 << 30],
    "output.disk[].table": ["gpt", None],
    "output.disk[].firmware": ["both", "uefi"],
    "output.disk[].filesystem": ["ext3", None],
    "output.disk[].label": ["ROOT", None],
    "output.disk[].format": [None, "qcow2"],
    "output.disk[].data_size": ["256M", None],
    "output.disk[].data_label": ["DATA", None],
    "output.disk[].persist": [["home", "opt"], None],
    "output.disk[].mydata": ["mydata", None],
    "output.netboot.dir": "out/netboot",
    "output.netboot.mode": "fetch",
    "output.netboot.url": "http://pxe.example/pe/",
    "provision.image": "http://images.example/disk.raw.xz",  # either an image ...
    "provision.sha256": "0" * 64,
    "provision.install": "self",  # ... or the live system itself
    "provision.target": "/dev/vda",
    "provision.then": "poweroff",
    "provision.grow": False,
    "provision.script": ["echo done > /target/etc/motd"],
    "provision.suite": "trixie",
    "provision.mirror": "http://deb.example/debian",
    "provision.packages": ["jq"],
    "provision.kernel": "linux-image-cloud-amd64",
    "provision.hostname": "node1",
    "provision.swap": "64M",
    "provision.initramfs": "targeted",
}
# [kernel] takes a package or a local kernel, never both: two configs cover the keys between them.
VARIANTS = {"local-kernel": {"kernel.package", "provision.install", "boot.secure_boot"},
            "package-kernel": {"kernel.vmlinuz", "kernel.modules_dir", "provision.image", "provision.sha256",
                               "boot.secure_boot"},
            "secure-boot": {"base.arch", "kernel.vmlinuz", "kernel.modules_dir", "provision.image",
                            "provision.sha256"}}


def every_key_data(leave_out: set[str]) -> dict[str, Any]:
    """TOML-shaped data with every registered key (but `leave_out`), from the registry's own list."""
    data: dict[str, Any] = {}
    missing = [k.path for k in all_keys() if k.path not in VALUES]
    assert not missing, f"registry keys without a test value in VALUES: {missing}; add one"
    for k in all_keys():
        if k.path in leave_out:
            continue
        value = VALUES[k.path]
        if "[]." in k.path:
            table_path, _, name = k.path.partition("[].")
            *parents, last = table_path.split(".")
            node = data
            for p in parents:
                node = node.setdefault(p, {})
            tables = node.setdefault(last, [{} for _ in value])
            for t, v in zip(tables, value, strict=True):
                if v is not None:
                    t[name] = v
        else:
            registry.set_path(data, k.path, value)
    return data


def toml_text(data: dict[str, Any]) -> str:
    """An independent writer (inline tables, one top-level key a line), not the one under test."""
    def value(x: Any) -> str:
        if isinstance(x, bool):
            return "true" if x else "false"
        if isinstance(x, (int, float)):
            return repr(x)
        if isinstance(x, str):
            return json.dumps(x)
        if isinstance(x, list):
            return "[" + ", ".join(value(i) for i in x) + "]"
        return "{" + ", ".join(f"{k} = {value(v)}" for k, v in x.items()) + "}"

    return "".join(f"{k} = {value(v)}\n" for k, v in data.items())


def key_paths(data: dict[str, Any], prefix: str = "") -> set[str]:
    out: set[str] = set()
    for k, v in data.items():
        path = prefix + k
        if isinstance(v, dict):
            out |= key_paths(v, path + ".")
        elif isinstance(v, list) and v and all(isinstance(t, dict) for t in v):
            for t in v:
                out |= key_paths(t, path + "[].")
        else:
            out.add(path)
    return out


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_key_round_trips_through_config_show(tmp_path, variant):
    original = tmp_path / "pebuilder.toml"
    original.write_text(toml_text(every_key_data(VARIANTS[variant])))
    cfg = toml.load(original)
    # every key was read: all but the ones given their default value come back out of the model
    expected = {k.path for k in all_keys()} - VARIANTS[variant] - {"base.distro"}
    assert key_paths(registry.to_data(cfg)) == expected
    assert cfg.boot.timeout == 2.5 and cfg.users[1].password_file == tmp_path / "bob.pw"
    assert cfg.output.disk[0].size == 2 << 30 and cfg.files[0].mode == 0o600
    assert cfg.extensions.dirs == [tmp_path / "exts", tmp_path / "more/exts"]
    # config show (through the CLI), written elsewhere, reads back to the identical model
    shown = pebuilder("config", "show", original).stdout
    again = tmp_path / "elsewhere" / "again.toml"
    again.parent.mkdir()
    again.write_text(shown)
    assert toml.load(again) == cfg
    as_json = json.loads(pebuilder("config", "show", original, "--format", "json").stdout)
    assert registry.parse(as_json, again) == cfg
    # and showing it again prints the same text
    assert pebuilder("config", "show", again).stdout == shown


def test_variants_cover_every_key():
    left_out_everywhere = set.intersection(*VARIANTS.values())
    assert left_out_everywhere == set()


def test_config_keys_lists_every_key():
    text = pebuilder("config", "keys").stdout
    rows = [ln for ln in text.splitlines() if ln.startswith("| `")]
    listed = [re.match(r"\| `([^`]+)`", ln).group(1) for ln in rows]
    assert listed == [k.path for k in all_keys()]
    for k in all_keys():
        if k.cli:
            assert f"(`{k.cli}`)" in rows[listed.index(k.path)]
    as_json = json.loads(pebuilder("config", "keys", "--format", "json").stdout)
    assert [k["path"] for k in as_json] == listed
    assert text == registry.markdown_table()


def test_cli_flags_exist_for_keys_that_declare_one():
    help_text = pebuilder("build", "--help").stdout + pebuilder("remaster", "--help").stdout
    for k in registry.cli_keys():
        assert help_text.count(k.cli) >= 2, k.cli


def test_readme_key_table_is_generated():
    readme = (ROOT / "README.md").read_text()
    begin, end = "<!-- keys:begin -->", "<!-- keys:end -->"
    if begin not in readme or end not in readme:
        pytest.fail(f"README.md has no {begin} ... {end} section: run `pebuilder config keys` and paste its "
                    "output between those two markers", pytrace=False)
    table = readme.split(begin, 1)[1].split(end, 1)[0].strip("\n") + "\n"
    assert table == registry.markdown_table(), ("README.md's key table is out of date: run `pebuilder config "
                                                "keys` and paste its output between the markers")


def test_non_utf8_config_is_exit_2_with_one_line(tmp_path):
    p = tmp_path / "pebuilder.toml"
    p.write_bytes(b'[template]\niso = "caf\xe9.iso"\n')
    proc = pebuilder("config", "show", p, check=False)
    assert proc.returncode == Exit.CONFIG_UNREADABLE == 2
    assert proc.stderr.splitlines() == [f"pebuilder: error: {p}: not UTF-8 text (byte 21); a pebuilder.toml is "
                                        "a UTF-8 TOML file"]
    build = pebuilder("build", p, check=False)
    assert build.returncode == 2 and len(build.stderr.splitlines()) == 1


def test_empty_config_is_exit_30_with_the_minimal_config(tmp_path):
    p = tmp_path / "pebuilder.toml"
    p.write_text("# nothing yet\n")
    proc = pebuilder("config", "show", p, check=False)
    assert proc.returncode == Exit.CONFIG_INVALID == 30
    assert proc.stderr.startswith(f"pebuilder: error: {p}: config: is empty. A minimal pebuilder.toml is either")
    assert '[template]\n    iso = "CorePure64.iso"' in proc.stderr and '[base]\n    variant = "tiny"' in proc.stderr
    assert "Traceback" not in proc.stderr
    # the hint is itself a valid config
    hint = proc.stderr.split("or\n", 1)[1]
    p.write_text("\n".join(ln.split("#")[0].strip() for ln in hint.splitlines()))
    assert toml.load(p).template.iso == tmp_path / "CorePure64.iso"


def test_relative_paths_are_taken_from_the_config_folder(tmp_path):
    sub = tmp_path / "project"
    sub.mkdir()
    p = sub / "pebuilder.toml"
    p.write_text('[template]\niso = "../tc.iso"\n')
    proc = pebuilder("config", "show", Path("project/pebuilder.toml"), "--format", "json", cwd=tmp_path)
    shown = json.loads(proc.stdout)
    assert shown["template"]["iso"] == str(tmp_path / "tc.iso")
    assert shown["work"]["dir"] == str(sub / "build") and shown["output"]["iso"]["path"] == str(sub / "pebuilder.iso")


@pytest.mark.parametrize("text, expect", [
    ('system = "debian"\n[kernel]\ndebian = "linux-image-cloud-amd64"\n',
     "kernel.debian: unknown key (renamed: use [kernel] package); accepted in [kernel]: package,"),
    ('[template]\nbuiltin = "debian"\n',
     'template.builtin: unknown key (renamed: use system = "debian" (at the top level)); accepted in'),
    ('system = "debian"\n[boot]\ntimout = 3\n', "boot.timout: unknown key (did you mean timeout?); accepted in"),
    ('system = "debian"\n[kernel]\nmodules = "/srv/modules"\n',
     "kernel.modules: is a list of module names; the folder '/srv/modules' (lib/modules/<version> for vmlinuz) "
     "goes in [kernel] modules_dir"),
])
def test_old_and_misspelt_keys_name_what_to_write(tmp_path, text, expect):
    p = tmp_path / "pebuilder.toml"
    p.write_text(text)
    proc = pebuilder("config", "show", p, check=False)
    assert proc.returncode == Exit.CONFIG_INVALID
    assert proc.stderr.startswith(f"pebuilder: error: {p}: {expect}"), proc.stderr
    assert len(proc.stderr.splitlines()) == 1
