"""Values that reach boot menus, shell scripts and account files (issue 9): each hostile one is refused
when the config is read, with one line naming the file and the key; the good ones are written so that
GRUB, ISOLINUX, the shell and passwd read back exactly what was given."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest
from adversarial.helpers import (
    assert_error,
    assert_ok,
    build,
    cli,
    grub_linux_words,
    grub_script_check,
    initrd_member,
    iso_member,
    isolinux_append_words,
    merge,
    tc_config,
    write_config,
)
from conftest import make_template_tree, needs_fixtures, ssh_public_key

from pebuilder.errors import Exit

TEMPLATE = "/nonexistent/CorePure64.iso"  # reading a config never opens the template
KEY = ssh_public_key()
HASH = "$6$saltsalt$" + "A" * 86


def user(**kw):
    return [{"name": "alice", "uid": 1500, **kw}]


def files(**kw):
    return [{"source": "/etc/hostname", "dest": "/etc/x", **kw}]


def disk(**kw):
    return {"output": {"disk": [{"path": "/tmp/pb-adv.raw", **kw}]}}


# (id, config data over a minimal Tiny Core config, words the one-line message must hold)
CONFIGS = [
    ("hostname-menuentry", {"boot": {"hostname": 'box\nmenuentry "evil" {\n  linux /evil\n}\nLABEL evil'}},
     ["boot.hostname"]),
    ("hostname-initrd", {"boot": {"hostname": "box initrd=/evil.gz"}}, ["boot.hostname"]),
    ("hostname-space", {"boot": {"hostname": "my box"}}, ["boot.hostname"]),
    ("hostname-nul", {"boot": {"hostname": "box\0evil"}}, ["boot.hostname", "NUL"]),
    ("hostname-underscore", {"boot": {"hostname": "my_box"}}, ["boot.hostname", "RFC 1123"]),
    ("hostname-dash", {"boot": {"hostname": "-box"}}, ["boot.hostname"]),
    ("hostname-label-64", {"boot": {"hostname": "a" * 64}}, ["boot.hostname"]),
    ("hostname-254", {"boot": {"hostname": ".".join(["a" * 50] * 5)}}, ["boot.hostname"]),
    ("hostname-empty", {"boot": {"hostname": ""}}, ["boot.hostname"]),
    ("hostname-int", {"boot": {"hostname": 5}}, ["boot.hostname", "string"]),
    ("code-semicolon", {"boot": {"codes": ["x;reboot"]}}, ["boot.codes", "';'"]),
    ("code-quote-brace", {"boot": {"codes": ['"}']}}, ["boot.codes"]),
    ("code-nul", {"boot": {"codes": ["x\0y"]}}, ["boot.codes", "NUL"]),
    ("code-space", {"boot": {"codes": ["quiet initrd=/evil.gz"]}}, ["boot.codes"]),
    ("code-newline", {"boot": {"codes": ["x\nLABEL evil"]}}, ["boot.codes"]),
    ("code-dollar", {"boot": {"codes": ["$(reboot)"]}}, ["boot.codes"]),
    ("code-backtick", {"boot": {"codes": ["`reboot`"]}}, ["boot.codes"]),
    ("code-hash", {"boot": {"codes": ["#"]}}, ["boot.codes"]),
    ("code-brace", {"boot": {"codes": ["}"]}}, ["boot.codes"]),
    ("code-pipe", {"boot": {"codes": ["a|b"]}}, ["boot.codes"]),
    ("code-backslash", {"boot": {"codes": ["a\\"]}}, ["boot.codes"]),
    ("code-2MB", {"boot": {"codes": ["a" * 2_000_000]}}, ["boot.codes", "too long"]),
    ("codes-over-cmdline", {"boot": {"codes": ["a" * 1000] * 3}}, ["boot.codes", "2048"]),
    ("code-empty", {"boot": {"codes": [""]}}, ["boot.codes"]),
    ("user-shell-newline", {"users": user(shell="/bin/sh\nevil:x:0:0::/root:/bin/sh")}, ["users[0].shell"]),
    ("user-shell-colon", {"users": user(shell="/bin/sh:x")}, ["users[0].shell"]),
    ("user-shell-relative", {"users": user(shell="sh")}, ["users[0].shell"]),
    ("user-hash-colon", {"users": user(password_hash="$6$ab$cd:0:0:99999")}, ["users[0].password_hash"]),
    ("user-hash-newline", {"users": user(password_hash="$6$ab$cd\nevil::0:0:99999:7:::")},
     ["users[0].password_hash"]),
    ("user-hash-plaintext", {"users": user(password_hash="hunter2")}, ["users[0].password_hash", "openssl"]),
    ("user-hash-empty", {"users": user(password_hash="")}, ["users[0].password_hash"]),
    ("user-name-upper", {"users": [{"name": "Alice", "uid": 1500}]}, ["users[0].name"]),
    ("user-name-colon", {"users": [{"name": "al:ice", "uid": 1500}]}, ["users[0].name"]),
    ("user-name-newline", {"users": [{"name": "alice\nevil", "uid": 1500}]}, ["users[0].name"]),
    ("user-name-long", {"users": [{"name": "a" * 33, "uid": 1500}]}, ["users[0].name"]),
    ("user-name-missing", {"users": [{"uid": 1500}]}, ["users[0].name", "missing"]),
    ("user-uid-duplicate", {"users": [{"name": "alice", "uid": 1500}, {"name": "bob", "uid": 1500}]},
     ["users[1].uid"]),
    ("user-name-duplicate", {"users": [{"name": "alice", "uid": 1500}, {"name": "alice", "uid": 1501}]},
     ["users[1].name"]),
    ("user-uid-zero", {"users": [{"name": "alice", "uid": 0}]}, ["users[0].uid"]),
    ("user-uid-negative", {"users": [{"name": "alice", "uid": -1}]}, ["users[0].uid"]),
    ("user-uid-huge", {"users": [{"name": "alice", "uid": 2**32}]}, ["users[0].uid"]),
    ("user-two-secrets", {"users": user(password_hash=HASH, password_env="PW")}, ["users[0]", "one of"]),
    ("user-group-newline", {"users": user(groups=["staff\nevil"])}, ["users[0].groups"]),
    ("user-env-shell", {"users": user(password_env="A;B")}, ["users[0].password_env"]),
    ("key-newline-command", {"users": user(authorized_keys=[KEY + '\ncommand="evil" ' + ssh_public_key("x")])},
     ["users[0].authorized_keys", "newline"]),
    ("key-garbage", {"users": user(authorized_keys=["not a key"])}, ["users[0].authorized_keys"]),
    ("key-type-mismatch", {"users": user(authorized_keys=[KEY.replace("ssh-ed25519 ", "ssh-rsa ", 1)])},
     ["users[0].authorized_keys"]),
    ("kiosk-shell", {"kiosk": {"url": "http://x/; touch /tmp/pwned #"}}, ["kiosk.url"]),
    ("kiosk-quote", {"kiosk": {"url": "http://x/'$(reboot)'"}}, ["kiosk.url"]),
    ("kiosk-file", {"kiosk": {"url": "file:///etc/shadow"}}, ["kiosk.url"]),
    ("kiosk-newline", {"kiosk": {"url": "http://x/\nreboot"}}, ["kiosk.url"]),
    ("mirror-shell", {"extensions": {"mirrors": ["http://x/;reboot"]}}, ["extensions.mirrors"]),
    ("repo-climb", {"extensions": {"repo": "../../../etc"}}, ["extensions.repo"]),
    ("ext-name-climb", {"extensions": {"initrd": ["../../etc/passwd"]}}, ["extensions.initrd"]),
    ("ext-name-slash", {"extensions": {"onboot": ["a/b.tcz"]}}, ["extensions.onboot"]),
    ("module-shell", {"boot": {"modules": ["e1000;reboot"]}}, ["boot.modules"]),
    ("bootlocal-newline", {"services": {"bootlocal": ["echo hi\nrm -rf /"]}}, ["services.bootlocal"]),
    ("owner-minus-one", {"files": files(owner="-1:-1")}, ["files[0].owner"]),
    ("owner-uid-max", {"files": files(owner="4294967295:0")}, ["files[0].owner"]),
    ("owner-names", {"files": files(owner="root:root")}, ["files[0].owner"]),
    ("mode-minus-one", {"files": files(mode="-1")}, ["files[0].mode"]),
    ("mode-huge", {"files": files(mode="77777777777")}, ["files[0].mode"]),
    ("mode-not-octal", {"files": files(mode="0999")}, ["files[0].mode"]),
    ("mode-number", {"files": files(mode=420)}, ["files[0].mode"]),
    ("dest-root", {"files": [{"source": "/etc/hostname", "dest": "/"}]}, ["files[0].dest"]),
    ("dest-relative", {"files": [{"source": "/etc/hostname", "dest": "etc/x"}]}, ["files[0].dest"]),
    ("dest-climb", {"files": [{"source": "/etc/hostname", "dest": "/etc/../../x"}]}, ["files[0].dest"]),
    ("dest-newline", {"files": [{"source": "/etc/hostname", "dest": "/etc/x\ny"}]}, ["files[0].dest"]),
    ("disk-size-999999T", disk(size="999999T"), ["output.disk[0].size", "64 TiB"]),
    ("disk-size-inf", disk(size="inf"), ["output.disk[0].size"]),
    ("disk-size-1e400", disk(size="1e400"), ["output.disk[0].size"]),
    ("disk-size-negative", disk(size="-1G"), ["output.disk[0].size"]),
    ("disk-size-zero", disk(size="0"), ["output.disk[0].size"]),
    ("disk-size-nan", disk(size="nan"), ["output.disk[0].size"]),
    ("disk-msdos-3T", disk(size="3T"), ["output.disk[0].size", "gpt"]),
    ("disk-label-newline", disk(label="A\nB"), ["output.disk[0].label"]),
    ("data-size-inf", disk(data_size="inf"), ["output.disk[0].data_size"]),
    ("extract-limit-inf", {"work": {"extract_limit": "inf"}}, ["work.extract_limit"]),
    ("timeout-inf", {"boot": {"timeout": float("inf")}}, ["boot.timeout"]),
    ("timeout-nan", {"boot": {"timeout": float("nan")}}, ["boot.timeout"]),
    ("timeout-negative", {"boot": {"timeout": -1}}, ["boot.timeout"]),
    ("gzip-level-22", {"initrd": {"compression": "gzip", "level": 22}}, ["initrd.level"]),
    ("xz-level-15", {"initrd": {"compression": "xz", "level": 15}}, ["initrd.level"]),
    ("level-negative", {"initrd": {"compression": "gzip", "level": -1}}, ["initrd.level"]),
    ("level-name", {"initrd": {"compression": "xz", "level": "seed"}}, ["initrd.level"]),
    ("volume-id-space", {"output": {"iso": {"path": "/tmp/pb-adv.iso", "volume_id": "A B"}}},
     ["output.iso.volume_id"]),
    ("two-outputs-one-path", {"output": {"iso": {"path": "/tmp/pb-adv.img"}, "disk": [{"path": "/tmp/pb-adv.img"}]}},
     ["two outputs", "/tmp/pb-adv.img"]),
    ("unknown-key", {"boot": {"hostnmae": "box"}}, ["boot.hostnmae", "unknown key"]),
    ("unknown-table", {"bot": {"hostname": "box"}}, ["bot", "unknown key"]),
    ("system-bad", {"system": "windows"}, ["system"]),
    # `$` in a regex also matches before a final newline: every grammar must refuse one
    ("hostname-trailing-newline", {"boot": {"hostname": "box\n"}}, ["boot.hostname"]),
    ("code-trailing-newline", {"boot": {"codes": ["quiet\n"]}}, ["boot.codes"]),
    ("user-name-trailing-newline", {"users": [{"name": "alice\n", "uid": 1500}]}, ["users[0].name"]),
    ("user-shell-trailing-newline", {"users": user(shell="/bin/sh\n")}, ["users[0].shell"]),
    ("user-hash-trailing-newline", {"users": user(password_hash=HASH + "\n")}, ["users[0].password_hash"]),
    ("kiosk-trailing-newline", {"kiosk": {"url": "http://x/\n"}}, ["kiosk.url"]),
    ("ext-name-trailing-newline", {"extensions": {"initrd": ["kmaps\n"]}}, ["extensions.initrd"]),
    ("module-trailing-newline", {"boot": {"modules": ["e1000\n"]}}, ["boot.modules"]),
    ("volume-id-trailing-newline", {"output": {"iso": {"path": "/tmp/pb-adv.iso", "volume_id": "PB\n"}}},
     ["output.iso.volume_id"]),
    ("kernel-package-trailing-newline", {"kernel": {"package": "linux-image-amd64\n"}}, ["kernel.package"]),
    ("kernel-package-shell", {"kernel": {"package": "linux-image-amd64;reboot"}}, ["kernel.package"]),
]


@pytest.mark.parametrize("over,needles", [c[1:] for c in CONFIGS], ids=[c[0] for c in CONFIGS])
def test_hostile_value_is_refused_when_read(tmp_path, over, needles):
    cfg = write_config(tmp_path / "pebuilder.toml", merge({"template": {"iso": TEMPLATE}}, over))
    proc = cli("config", "show", cfg)
    assert_error(proc, Exit.CONFIG_INVALID, str(cfg), *needles)
    assert proc.stdout == ""


# -- ezremaster.cfg --------------------------------------------------------------------------------

EZ_BASE = f"cd_location = {TEMPLATE}\ntemp_dir = /tmp/pb-adv-work/\n"
EZCFGS = [
    ("cc-semicolon", "cc = quiet x;reboot\n", ["cc", "';'"]),
    ("cc-quote-brace", 'cc = "}\n', ["cc"]),
    ("cc-dollar", "cc = $(reboot)\n", ["cc"]),
    ("cc-2MB", "cc = " + "a " * 1_000_000 + "\n", ["4096"]),
    ("nul", "cc = quiet\0evil\n", ["NUL"]),
    ("ext-climb", "app_extract_initrd = ../../etc/passwd\n", ["extensions.initrd"]),
    ("temp-dir-twice", "temp_dir = /tmp/other/\n", ["temp_dir", "twice"]),
    ("value-with-space", "app_extract_initrd = a.tcz b.tcz\n", ["app_extract_initrd", "spaces"]),
    ("not-key-value", "rm -rf /\n", ["key = value"]),
]


@pytest.mark.parametrize("extra,needles", [c[1:] for c in EZCFGS], ids=[c[0] for c in EZCFGS])
def test_hostile_ezremaster_cfg_is_refused_when_read(tmp_path, extra, needles):
    cfg = tmp_path / "ezremaster.cfg"
    cfg.write_text(EZ_BASE + extra)
    proc = cli("config", "show", cfg)
    assert_error(proc, Exit.CONFIG_INVALID, str(cfg), *needles)


@pytest.mark.parametrize("name", ["pebuilder.toml", "ezremaster.cfg"])
def test_binary_config_is_unreadable_not_a_traceback(tmp_path, name):
    cfg = tmp_path / name
    cfg.write_bytes(b"[template]\niso = \"\xff\xfe\x00\x01\"\n\x89PNG\r\n\x1a\n" + bytes(range(256)))
    assert_error(cli("config", "show", cfg), Exit.CONFIG_UNREADABLE, str(cfg), "UTF-8")


def test_invalid_toml_names_the_file(tmp_path):
    cfg = tmp_path / "pebuilder.toml"
    cfg.write_text("[boot]\nhostname = box\n")
    assert_error(cli("config", "show", cfg), Exit.CONFIG_INVALID, str(cfg), "not valid TOML")


@pytest.mark.parametrize("text", ["", "\n\n", "# nothing here\n"], ids=["empty", "blank", "comment"])
def test_empty_config_says_what_a_minimal_one_is(tmp_path, text):
    cfg = tmp_path / "pebuilder.toml"
    cfg.write_text(text)
    for args in (["config", "show", cfg], ["build", cfg]):
        proc = cli(*args)
        assert proc.returncode == Exit.CONFIG_INVALID and "Traceback" not in proc.stderr
        assert proc.stderr.startswith("pebuilder: error: ") and "is empty" in proc.stderr.splitlines()[0]
        assert "[template]" in proc.stderr and "iso = " in proc.stderr and "[base]" in proc.stderr
    assert not (tmp_path / "build").exists() and not (tmp_path / "pebuilder.iso").exists()


def test_cli_overrides_get_the_same_checks(tmp_path):
    cfg = write_config(tmp_path / "pebuilder.toml", {"template": {"iso": TEMPLATE}})
    assert_error(cli("config", "show", cfg, "--set", 'boot.hostname="box\\nLABEL evil"'), Exit.CONFIG_INVALID,
                 "boot.hostname")
    assert_error(cli("config", "show", cfg, "--mirror", "http://x/;reboot"), Exit.CONFIG_INVALID,
                 "extensions.mirrors")
    assert_error(cli("config", "show", cfg, "--set", 'boot.codes=["x;reboot"]'), Exit.CONFIG_INVALID,
                 "boot.codes")


@needs_fixtures
@pytest.mark.parametrize("value", ["yesterday", "-1", "1e9", "99999999999", "17000000000000000000000"])
def test_bad_source_date_epoch_is_a_config_error(tmp_path, template_iso, value):
    proc = build(tc_config(tmp_path, template_iso), env={"SOURCE_DATE_EPOCH": value})
    assert_error(proc, Exit.CONFIG_INVALID, "SOURCE_DATE_EPOCH", value)
    assert not (tmp_path / "out" / "x.iso").exists()


# -- accounts the image already has: refused at build time, naming the key ---------------------------

@needs_fixtures
@pytest.mark.parametrize("users,needles", [
    ([{"name": "root", "uid": 1500}], ["users[0].name", "root"]),
    ([{"name": "root", "uid": 1500, "replace": True}], ["users[0].name", "root"]),
    ([{"name": "tc", "uid": 1500}], ["users[0].name", "'tc'", "replace = true"]),
    ([{"name": "alice", "uid": 1001}], ["users[0].uid", "1001", "'tc'"]),
    ([{"name": "alice", "uid": 1500, "groups": ["nosuchgroup"]}], ["users.alice.groups", "nosuchgroup"]),
], ids=["root", "root-replace", "tc-without-replace", "uid-of-tc", "missing-group"])
def test_existing_accounts_need_replace(tmp_path, template_iso, users, needles):
    proc = build(tc_config(tmp_path, template_iso, users=users))
    assert_error(proc, Exit.CONFIG_INVALID, *needles)


@needs_fixtures
def test_replacing_tc_with_replace_true_gives_one_entry(tmp_path, template_iso):
    users = [{"name": "tc", "uid": 1001, "shell": "/bin/ash", "password_hash": HASH, "replace": True,
              "authorized_keys": [KEY, ssh_public_key("bob@x", seed="bob")]}]
    assert_ok(build(tc_config(tmp_path, template_iso, users=users)))
    out = tmp_path / "out" / "x.iso"
    passwd = initrd_member(out, "etc/passwd", tmp_path / "a").decode().splitlines()
    shadow = initrd_member(out, "etc/shadow", tmp_path / "b").decode().splitlines()
    tc_lines = [ln.split(":") for ln in passwd if ln.startswith("tc:")]
    assert tc_lines == [["tc", "x", "1001", "50", "tc", "/home/tc", "/bin/ash"]]
    assert all(len(ln.split(":")) == 7 for ln in passwd if ln)
    assert [ln.split(":")[1] for ln in shadow if ln.startswith("tc:")] == [HASH]
    assert [ln.split(":")[1][:1] for ln in shadow if ln.startswith("root:")] == ["!"]
    keys = initrd_member(out, "home/tc/.ssh/authorized_keys", tmp_path / "c").decode()
    assert keys.splitlines() == [KEY, ssh_public_key("bob@x", seed="bob")]


# -- good values read back exactly: grub-script-check, GRUB's and ISOLINUX's word splitting -----------

@needs_fixtures
def test_generated_grub_cfg_passes_grub_script_check(tmp_path, template_iso):
    codes = ["quiet", "a=b,c:d/e+f@g%h~i?j!k-l_m.n", "console=ttyS0,115200n8", "tce=LABEL=DATA/tce"]
    cfg = tc_config(tmp_path, template_iso, boot={"codes": codes, "hostname": "box-1.example.org", "serial": True,
                                                  "timeout": 3},
                    kiosk={"url": "https://example.org/kiosk?a=1#top"},
                    output={"disk": [{"path": str(tmp_path / "out" / "d.raw"), "size": "64M"}]})
    assert_ok(build(cfg))
    out = tmp_path / "out" / "x.iso"
    grub = iso_member(out, "boot/grub/grub.cfg", tmp_path / "g").read_text()
    check = grub_script_check(grub, tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr + grub
    expected = [*codes, "host=box-1.example.org"]
    (linux,) = grub_linux_words(grub)
    assert linux[0] == "/boot/vmlinuz64"
    for code in expected:
        assert linux.count(code) == 1, (code, linux)
    isolinux = iso_member(out, "boot/isolinux/isolinux.cfg", tmp_path / "i").read_text()
    appends = isolinux_append_words(isolinux)
    assert appends and all(w.count(code) == 1 for w in appends for code in expected)
    # the disk's own grub.cfg
    raw = tmp_path / "out" / "d.raw"
    parts = subprocess.run(["sfdisk", "-J", str(raw)], capture_output=True, text=True, check=True).stdout
    import json

    start = json.loads(parts)["partitiontable"]["partitions"][0]["start"] * 512
    disk_grub = subprocess.run(["debugfs", "-R", "cat /boot/grub/grub.cfg", f"{raw}?offset={start}"],
                               capture_output=True, text=True, check=True).stdout
    assert "linux" in disk_grub
    check = grub_script_check(disk_grub, tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr + disk_grub
    for code in expected:
        assert grub_linux_words(disk_grub)[0].count(code) == 1
    # the kiosk URL reaches its shell line as one word
    kiosk = initrd_member(out, "etc/skel/.X.d/kiosk", tmp_path / "k").decode()
    assert "https://example.org/kiosk?a=1#top" in shlex.split(kiosk)


@needs_fixtures
def test_template_label_with_grub_syntax_is_quoted(tmp_path):
    """The menu title comes from the template's isolinux.cfg (someone else's words): GRUB must read it as
    one title, and the template's own append words as words, never as commands."""
    from adversarial.helpers import make_template

    def edit(tree: Path) -> None:
        p = tree / "boot/isolinux/isolinux.cfg"
        text = p.read_text()
        text = text.replace("label corepure64", "label core'}reboot;{'64").replace(
            "default corepure64", "default core'}reboot;{'64")
        text = text.replace("loglevel=3", "loglevel=3 x;reboot $(evil) \"}\"")
        p.write_text(text)

    tpl = make_template(tmp_path / "tpl.iso", edit=edit)
    assert_ok(build(tc_config(tmp_path, tpl)))
    grub = iso_member(tmp_path / "out" / "x.iso", "boot/grub/grub.cfg", tmp_path / "g").read_text()
    check = grub_script_check(grub, tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr + grub
    (linux,) = grub_linux_words(grub)
    assert {"x;reboot", "$(evil)", '"}"'} <= set(linux)
    assert sum(1 for ln in grub.splitlines() if ln.startswith("menuentry")) == 1


# -- cd_location pointing at a folder: an extracted CD ----------------------------------------------

@needs_fixtures
def test_cd_location_folder_builds(tmp_path):
    cd = make_template_tree(tmp_path / "cd")
    work = tmp_path / "work"
    cfg = tmp_path / "ezremaster.cfg"
    cfg.write_text(f"cd_location = {cd}\ntemp_dir = {work}/\ncc = host=fromfolder\n")
    proc = cli("remaster", cfg, "rebuild", "--json")
    assert_ok(proc)
    out = work / "ezremaster.iso"
    isolinux = iso_member(out, "boot/isolinux/isolinux.cfg", tmp_path / "g").read_text()
    assert any("host=fromfolder" in w for w in isolinux_append_words(isolinux))
