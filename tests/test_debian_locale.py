"""The live system's locale, file by file (no mirror, no boot): C.UTF-8 taken out of libc-bin into a
tiny base, LANG=C.UTF-8 in /etc/default/locale, and the profile.d script that hands it to shells
and services. The built system and a boot are checked by test_debian_live.py and test_debian_ext.py.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from test_deb_format import make_deb

from pebuilder.arch import parse
from pebuilder.debian import base
from pebuilder.errors import Exit, PebuilderError
from pebuilder.fsroot import Budget, FsRoot

D, F, L = tarfile.DIRTYPE, tarfile.REGTYPE, tarfile.SYMTYPE
LIBC_BIN = [  # the shape of bookworm's libc-bin (dpkg-deb -c): programs, and the compiled C.utf8
    ("./", D, {"mode": 0o755}, None),
    ("./sbin/", D, {"mode": 0o755}, None),
    ("./sbin/ldconfig", F, {"mode": 0o755}, b"\x7fELF ldconfig"),
    ("./usr/", D, {"mode": 0o755}, None),
    ("./usr/bin/", D, {"mode": 0o755}, None),
    ("./usr/bin/locale", F, {"mode": 0o755}, b"\x7fELF locale"),
    ("./usr/lib/", D, {"mode": 0o755}, None),
    ("./usr/lib/locale/", D, {"mode": 0o755}, None),
    ("./usr/lib/locale/C.utf8/", D, {"mode": 0o755}, None),
    ("./usr/lib/locale/C.utf8/LC_CTYPE", F, {}, b"ctype" * 100),
    ("./usr/lib/locale/C.utf8/LC_MESSAGES/", D, {"mode": 0o755}, None),
    ("./usr/lib/locale/C.utf8/LC_MESSAGES/SYS_LC_MESSAGES", F, {}, b"messages"),
    ("./usr/lib/x86_64-linux-gnu/", D, {"mode": 0o755}, None),
    ("./usr/lib/x86_64-linux-gnu/audit/", D, {"mode": 0o755}, None),
    ("./usr/lib/x86_64-linux-gnu/audit/sotruss-lib.so", F, {}, b"\x7fELF"),
    ("./usr/share/doc/libc-bin/copyright", F, {}, b"LGPL\n"),
]
LOCALE_SH = Path(base.LIVE / "locale.sh")


def test_install_locale_takes_only_c_utf8_from_libc_bin(tmp_path):
    fs = FsRoot(tmp_path / "root")
    base.skeleton(fs, parse("amd64"))
    debfile = make_deb(tmp_path, LIBC_BIN, name="libc-bin_2.36-9_amd64.deb")
    size = base.install_locale(fs, debfile, Budget())
    assert size == len(b"ctype" * 100) + len(b"messages")
    assert (tmp_path / "root/usr/lib/locale/C.utf8/LC_CTYPE").read_bytes() == b"ctype" * 100
    assert (tmp_path / "root/usr/lib/locale/C.utf8/LC_MESSAGES/SYS_LC_MESSAGES").is_file()
    for gone in ("usr/bin/locale", "usr/sbin/ldconfig", "usr/lib/x86_64-linux-gnu", "usr/share/doc/libc-bin"):
        assert not (tmp_path / "root" / gone).exists(), gone
    assert (tmp_path / "root/lib").is_symlink()  # the merged-/usr skeleton is left as it was
    assert fs.meta.entries["usr/lib/locale/C.utf8/LC_CTYPE"][1:] == [0, 0]


def test_a_libc_bin_without_the_locale_is_one_clear_error(tmp_path):
    fs = FsRoot(tmp_path / "root")
    base.skeleton(fs, parse("amd64"))
    debfile = make_deb(tmp_path, [m for m in LIBC_BIN if "C.utf8" not in m[0]], name="libc-bin_9_amd64.deb")
    with pytest.raises(PebuilderError) as err:
        base.install_locale(fs, debfile, Budget())
    assert err.value.code == Exit.UNRESOLVABLE and "libc-bin_9_amd64.deb" in str(err.value)
    assert "usr/lib/locale/C.utf8/LC_CTYPE" in str(err.value)


def test_lang_defaults_and_the_profile_reads_them(tmp_path):
    fs = FsRoot(tmp_path / "root")
    base.skeleton(fs, parse("amd64"))
    base.locale_defaults(fs)
    assert (tmp_path / "root/etc/default/locale").read_text() == "LANG=C.UTF-8\n"
    assert (tmp_path / "root/etc/profile.d/locale.sh").read_bytes() == LOCALE_SH.read_bytes()
    assert "for i in /etc/profile.d/*.sh" in (tmp_path / "root/etc/profile").read_text()
    # A /etc/default/locale the config's [files] brought is kept.
    fs.write_keeping_owner("etc/default/locale", "LANG=C\n", (0o644, 0, 0))
    base.locale_defaults(fs)
    assert (tmp_path / "root/etc/default/locale").read_text() == "LANG=C\n"
    rcs = (base.LIVE / "rcS").read_text()
    assert ". /etc/profile.d/locale.sh" in rcs and rcs.index("locale.sh") < rcs.index("/etc/init.d/S??*")


SHELLS = [s for s in (["dash"], ["busybox", "sh"], ["bash", "--posix"]) if shutil.which(s[0])]


@pytest.mark.parametrize("shell", SHELLS, ids=lambda s: s[0])
def test_locale_sh_sets_what_is_unset_and_nothing_else(tmp_path, shell):
    conf = tmp_path / "locale"
    conf.write_text(f'# a comment\nLANG="C.UTF-8"\nLC_$(touch {tmp_path}/pwned)=x\nPATH=/evil\nLC_TIME=C')
    script = tmp_path / "locale.sh"
    script.write_text(LOCALE_SH.read_text().replace("/etc/default/locale", str(conf)))

    def run(env: dict[str, str]) -> str:
        cmd = f'set -u; . {script}; echo "LANG=$LANG LC_TIME=$LC_TIME PATH=$PATH"; env | grep -c "^LANG="'
        return subprocess.run([*shell, "-c", cmd], env={"PATH": "/usr/bin:/bin", **env}, capture_output=True,
                              text=True, check=True).stdout

    assert run({}) == "LANG=C.UTF-8 LC_TIME=C PATH=/usr/bin:/bin\n1\n"  # exported, quotes gone, PATH untouched
    assert run({"LANG": "de_DE.UTF-8", "LC_TIME": ""}).startswith("LANG=de_DE.UTF-8 LC_TIME=C ")
    assert not (tmp_path / "pwned").exists()
