"""Password salts (issue 9): random by default; with SOURCE_DATE_EPOCH they come from a per-project secret
(`.pebuilder-salt`, 0600, beside the config, never in the image), so the same project repeats its hash
while the salt stays underivable from the password."""

from __future__ import annotations

import base64
import hashlib
import stat
import subprocess
from pathlib import Path

from adversarial.helpers import assert_ok, build, initrd_member, iso_member, tc_config
from conftest import needs_fixtures

from pebuilder.formats import cpio, iso

PASSWORD = "correct horse battery staple"


def project(base: Path, template: Path, name: str = "pebuilder.toml") -> Path:
    base.mkdir(parents=True, exist_ok=True)
    (base / "alice.pw").write_text(PASSWORD + "\n")
    stem = Path(name).stem
    return tc_config(base, template, name=name, work={"dir": str(base / f"work-{stem}")},
                     output={"iso": {"path": str(base / "out" / f"{stem}.iso")}},
                     users=[{"name": "alice", "uid": 1500, "password_file": str(base / "alice.pw")}])


def alice_hash(out: Path, scratch: Path) -> str:
    shadow = initrd_member(out, "etc/shadow", scratch).decode()
    (line,) = [ln for ln in shadow.splitlines() if ln.startswith("alice:")]
    return line.split(":")[1]


def verify(hash_: str, password: str) -> bool:
    salt = hash_.split("$")[2]
    out = subprocess.run(["openssl", "passwd", "-6", "-salt", salt, "-stdin"], input=password + "\n",
                         capture_output=True, text=True, check=True).stdout.strip()
    return out == hash_


def everything_in(out: Path, scratch: Path) -> bytes:
    """Every byte of the ISO's files and of its initrd's members, names included."""
    blobs = []
    for name in iso.list_files(out):
        p = iso_member(out, name.lstrip("/"), scratch / "iso")
        blobs += [name.encode(), p.read_bytes()]
    initrd = scratch / "iso" / "boot" / "corepure64.gz"
    for e, body in cpio.iter_archive(initrd):
        blobs += [e.name.encode(), b"".join(body.chunks())]
    return b"\0".join(blobs)


@needs_fixtures
def test_reproducible_salt_comes_from_the_project_secret(tmp_path, template_iso):
    one = tmp_path / "one"
    a, b = project(one, template_iso, "a.toml"), project(one, template_iso, "b.toml")
    assert_ok(build(a))
    assert_ok(build(b))
    h_a = alice_hash(one / "out" / "a.iso", tmp_path / "ga")
    h_b = alice_hash(one / "out" / "b.iso", tmp_path / "gb")
    assert h_a == h_b and h_a.startswith("$6$") and verify(h_a, PASSWORD)

    secret = one / ".pebuilder-salt"
    assert secret.is_file() and stat.S_IMODE(secret.stat().st_mode) == 0o600
    secret_bytes = secret.read_bytes().strip()
    assert len(secret_bytes) >= 32
    # never in the image, never in the work folder's packed trees
    everything = everything_in(one / "out" / "a.iso", tmp_path / "all")
    assert secret_bytes not in everything and b".pebuilder-salt" not in everything
    assert PASSWORD.encode() not in everything
    for p in (one / "work-a").rglob("*"):
        if p.is_file() and not p.is_symlink():
            data = p.read_bytes()
            assert secret_bytes not in data and PASSWORD.encode() not in data, p

    # another project (its own secret) with the same password: another salt, another hash
    two = tmp_path / "two"
    assert_ok(build(project(two, template_iso)))
    h_two = alice_hash(two / "out" / "pebuilder.iso", tmp_path / "g2")
    assert verify(h_two, PASSWORD) and h_two != h_a
    assert (two / ".pebuilder-salt").read_bytes() != secret.read_bytes()

    # the salt is not the old one made of the user and the password
    old = base64.b64encode(hashlib.sha256(f"pebuilder|alice|{PASSWORD}".encode()).digest(), b"./").decode()[:16]
    assert h_a.split("$")[2] != old and h_two.split("$")[2] != old

    # a replaced secret file changes the hash of the same project
    secret.write_text("another secret of the same project\n")
    (one / "out" / "a.iso").unlink()
    assert_ok(build(a, "--force"))
    h_new = alice_hash(one / "out" / "a.iso", tmp_path / "gn")
    assert verify(h_new, PASSWORD) and h_new != h_a


@needs_fixtures
def test_without_source_date_epoch_salts_are_random(tmp_path, template_iso):
    base = tmp_path / "p"
    a, b = project(base, template_iso, "a.toml"), project(base, template_iso, "b.toml")
    env = {"SOURCE_DATE_EPOCH": None}
    assert_ok(build(a, env=env))
    assert_ok(build(b, env=env))
    h_a = alice_hash(base / "out" / "a.iso", tmp_path / "ga")
    h_b = alice_hash(base / "out" / "b.iso", tmp_path / "gb")
    assert verify(h_a, PASSWORD) and verify(h_b, PASSWORD) and h_a != h_b
    assert not (base / ".pebuilder-salt").exists()
