"""Property tests (issue 9): generated boot codes, host names and passwd fields are either refused when
the config is read (with a message naming the key) or written so that the boot menus and the account
files read back to exactly the entries that were asked for — never one more line, field or word."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest
from adversarial.helpers import grub_linux_words, grub_script_check, grub_words, isolinux_append_words
from conftest import ssh_public_key
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from pebuilder.config import ezcfg, registry
from pebuilder.customise import accounts
from pebuilder.customise.profile import TINYCORE
from pebuilder.errors import ConfigError
from pebuilder.fsroot import FsRoot
from pebuilder.outputs.bootmenu import BootEntry, grub_cfg, grub_quote, grub_word
from pebuilder.tinycore import isolinux_cfg

# hypothesis keeps caches in ./.hypothesis; not in the checkout (no example database either: every run explores)
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "pebuilder-hypothesis")
SETTINGS = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
TEMPLATE = "/nonexistent/CorePure64.iso"
PRISTINE = ("display boot.msg\nDEFAULT tc\nLABEL tc\n  KERNEL /boot/vmlinuz64\n"
            "  APPEND initrd=/boot/core.gz\nTIMEOUT 50\n")
SYNTAX = " \t\n\r\0\x0b\x0c\x7f;{}|&$<>#'\"\\`()[]*"

# Text that mixes plain word characters, every GRUB/ISOLINUX/shell metacharacter and any Unicode.
word_chars = st.one_of(st.sampled_from(list("abcXYZ019_.,:/=+@%~?!-")), st.sampled_from(list(SYNTAX)),
                       st.characters())
words = st.text(word_chars, min_size=0, max_size=16)
plain = st.from_regex(r"[A-Za-z0-9_.,:/=+@%~?!-]{1,16}", fullmatch=True)


def edged(good: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A good value with one syntax character stuck to its start or end (a regex's `$` lets "x\n" by)."""
    syntax = st.one_of(st.just("\n"), st.sampled_from(list(SYNTAX)))
    return st.builds(lambda w, c, end: w + c if end else c + w, good, syntax, st.booleans())


def parse(data: dict) -> registry.m.Config:
    return registry.parse({"template": {"iso": TEMPLATE}, **data}, None, Path("/"))


def menus(codes: list[str]) -> tuple[str, str]:
    """isolinux.cfg and grub.cfg for these codes, as the Tiny Core build writes them."""
    text = isolinux_cfg.rewrite(PRISTINE, codes=codes, timeout_tenths=None, serial=False)
    label = isolinux_cfg.parse(text).default_label()
    assert label is not None
    entry = BootEntry(title=f"{label.name} (pebuilder)", kernel="/boot/vmlinuz64", initrds=["/boot/core.gz"],
                      cmdline=label.append)
    return text, grub_cfg(entry)


def check_menus(codes: list[str]) -> None:
    """Both menus hold exactly these codes as words, and nothing else changed shape."""
    text, grub = menus(codes)
    expected = list(dict.fromkeys(codes))
    assert len(text.splitlines()) == len(PRISTINE.splitlines())
    assert isolinux_append_words(text) == [["initrd=/boot/core.gz", *expected]]
    parsed = isolinux_cfg.parse(text)
    assert [(lab.name, lab.kernel, lab.initrds) for lab in parsed.labels] == [("tc", "/boot/vmlinuz64",
                                                                             ["/boot/core.gz"])]
    assert grub_linux_words(grub) == [["/boot/vmlinuz64", *expected]]
    assert [ln.split()[0] for ln in grub.splitlines() if ln.strip()] == [
        "set", "set", "menuentry", "linux", "initrd", "}"]
    with tempfile.TemporaryDirectory() as d:
        check = grub_script_check(grub, Path(d))
    assert check.returncode == 0, check.stdout + check.stderr + grub


@SETTINGS
@given(codes=st.lists(st.one_of(words, plain, edged(plain)), min_size=1, max_size=5))
def test_boot_codes_refused_or_read_back(codes):
    try:
        cfg = parse({"boot": {"codes": codes}})
    except ConfigError as exc:
        assert "boot.codes" in str(exc)
        return
    for c in cfg.boot.codes:
        assert c and not any(ch in SYNTAX or ord(ch) < 32 for ch in c), c
    check_menus(cfg.boot.codes)


@SETTINGS
@given(line=st.lists(st.one_of(words, plain), min_size=1, max_size=5).map(" ".join))
def test_ezremaster_cc_refused_or_read_back(line):
    text = f"cd_location = {TEMPLATE}\ntemp_dir = /tmp/w/\ncc = {line}\n"
    try:
        data, _ = ezcfg.to_data(text, Path("/tmp/ezremaster.cfg"))
        cfg = registry.parse(data, Path("/tmp/ezremaster.cfg"))
    except ConfigError as exc:
        assert "ezremaster.cfg" in str(exc)
        return
    # remaster.sh's reading: every whitespace-separated word after `cc =` on that one line
    assert cfg.boot.codes == text.splitlines()[2].partition("=")[2].split()
    check_menus(cfg.boot.codes)


RFC1123_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?", re.ASCII)


def rfc1123(name: str) -> bool:
    return 1 <= len(name) <= 253 and all(RFC1123_LABEL.fullmatch(lab) for lab in name.split("."))


hostnames = st.one_of(
    st.text(max_size=70),
    st.text(st.sampled_from(list("ab0-._ \n\tZ")), max_size=300),
    st.from_regex(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?){0,5}", fullmatch=True),
    st.from_regex(r"[a-z]{1,8}(\n|\s|initrd=/evil|\x00|;reboot|\"\})?", fullmatch=True),
)


@SETTINGS
@given(host=hostnames)
def test_hostnames_refused_or_read_back(host):
    try:
        cfg = parse({"boot": {"hostname": host}})
    except ConfigError as exc:
        assert "boot.hostname" in str(exc)
        assert not rfc1123(host) or "\0" in host
        return
    assert rfc1123(cfg.boot.hostname), host
    check_menus(["quiet", f"host={cfg.boot.hostname}"])


@SETTINGS
@given(text=st.text(st.characters(blacklist_characters="\n\r\0"), max_size=40))
def test_grub_quoting_reads_back(text):
    """Words GRUB gets from a template (never checked against the config's grammar) stay one word."""
    assert grub_words(grub_quote(text)) == [text]
    if text:
        assert grub_words(grub_word(text)) == [text]


# -- passwd, shadow, group -------------------------------------------------------------------------

PASSWD = ["root:x:0:0:root:/root:/bin/sh", "lp:x:7:7:lp:/var/spool/lpd:/bin/sh",
          "nobody:x:65534:65534:nobody:/nonexistent:/bin/false", "tc:x:1001:50:Linux User,,,:/home/tc:/bin/sh"]
SHADOW = ["root:*:13525:0:99999:7:::", "lp:*:13510:0:99999:7:::", "nobody:*:13509:0:99999:7:::",
          "tc:*:13646:0:99999:7:::"]
GROUP = ["root:x:0:", "lp:x:7:lp", "nogroup:x:65534:", "staff:x:50:", "tc:x:1001:"]

def mostly(good: st.SearchStrategy, *bad: st.SearchStrategy) -> st.SearchStrategy:
    """Good values three times in four, so most examples reach the files and a bad field is alone."""
    return st.one_of(good, good, good, st.one_of(*bad))


good_names = st.sampled_from(["alice", "bob", "root", "tc", "lp", "_svc", "a-b", "x$", "u" * 32])
names = mostly(good_names, edged(good_names), st.text(st.sampled_from(list("abz09_-$:\n A.")), max_size=34),
               st.text(max_size=10))
good_shells = st.sampled_from(["/bin/sh", "/bin/ash", "/usr/bin/fish"])
shells = mostly(good_shells, edged(good_shells), st.text(st.sampled_from(list("/bin:sh\n x,.")), max_size=20),
                st.text(max_size=12))
good_hashes = st.sampled_from([None, "$6$saltsalt$" + "b" * 86, "!$6$ab$cd", "!"])
hashes = mostly(good_hashes, edged(good_hashes.filter(bool)), st.text(st.sampled_from(list("$6abc./:\n!*")),
                                                                   max_size=24), st.text(max_size=12))
uids = mostly(st.integers(1000, 2000), st.integers(-2, 70000), st.sampled_from([0, 7, 1001, 65534, 65533]))
good_keys = st.sampled_from([ssh_public_key(), ssh_public_key("bob", seed="b")])
keys = st.lists(mostly(good_keys, st.just(ssh_public_key() + '\ncommand="evil" ' + ssh_public_key("x")),
                       edged(good_keys), st.text(max_size=20)), max_size=2)
users = st.lists(st.fixed_dictionaries({"name": names, "uid": uids, "shell": shells},
                                       optional={"password_hash": hashes, "replace": st.booleans(),
                                                 "authorized_keys": keys, "groups": st.lists(
                                                     st.sampled_from(["staff", "lp", "wheel"]), max_size=2)}),
                 min_size=1, max_size=3)


def _table(lines: list[str], fields: int) -> dict[str, list[str]]:
    out = {}
    for ln in lines:
        f = ln.split(":")
        assert len(f) == fields, ln
        assert f[0] not in out, f"{f[0]} twice"
        out[f[0]] = f
    return out


@SETTINGS
@given(given_users=users, lock_root=st.booleans())
def test_passwd_fields_refused_or_read_back(given_users, lock_root):
    data = [{k: v for k, v in u.items() if v is not None} for u in given_users]
    try:
        cfg = parse({"users": data})
    except ConfigError as exc:
        assert re.search(r"users\[\d\]", str(exc)), str(exc)
        return
    with tempfile.TemporaryDirectory() as d:
        fs = FsRoot(Path(d))
        for rel, lines in (("etc/passwd", PASSWD), ("etc/shadow", SHADOW), ("etc/group", GROUP)):
            fs.write(rel, "\n".join(lines) + "\n")
        try:
            accounts.apply(fs, cfg.users, lock_root, TINYCORE, None)
        except ConfigError as exc:
            assert re.search(r"users(\[\d\]|\.[a-z_][a-z0-9_-]*)", str(exc)), str(exc)
            clash = any(u.name in ("root", *(p.split(":")[0] for p in PASSWD)) or
                        u.uid in (0, 7, 65534, 1001) or set(u.groups) - {"staff", "lp"} for u in cfg.users)
            assert clash, str(exc)
            return
        passwd = _table(fs.read_lines("etc/passwd"), 7)
        shadow = _table(fs.read_lines("etc/shadow"), 9)
        group = _table(fs.read_lines("etc/group"), 4)
        keys_files = {u.name: fs.read_lines(f"home/{u.name}/.ssh/authorized_keys") for u in cfg.users}
    new = {u.name: u for u in cfg.users}
    old = _table(PASSWD, 7)
    assert set(passwd) == set(old) | set(new)
    for name, f in passwd.items():
        if name in new:
            u = new[name]
            assert f == [u.name, "x", str(u.uid), "50", u.name, f"/home/{u.name}", u.shell]
            assert shadow[name][1] == (u.password_hash or "!")
            assert keys_files[name] == [k.strip() for k in u.authorized_keys]
            for g in u.groups:
                assert name in group[g][3].split(",")
        else:
            assert f == old[name]
    assert shadow["root"][1].startswith("!") == lock_root or shadow["root"][1] == "*"
    assert set(group) == set(_table(GROUP, 4))


def test_property_helpers_catch_injection():
    """The read-back checks fail on exactly the injections the issue found (so a pass means something)."""
    with pytest.raises(AssertionError):
        check_menus(["host=box\nLABEL evil"])
    with pytest.raises(ValueError):
        grub_words("  linux /boot/vmlinuz64 x;reboot")
    with pytest.raises((ValueError, IndexError)):
        grub_words('  linux /boot/vmlinuz64 "}')
    with pytest.raises(AssertionError):
        _table(["alice:x:1500:50:alice:/home/alice:/bin/sh", "evil:x:0:0:::/bin/sh:extra"], 7)
