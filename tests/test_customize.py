"""Customisation from the config: accounts, SSH, certificates, services, files, kernel and modules."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path

import pytest
from conftest import ROOTFS, TCZ, needs_fixtures, network_unavailable, pebuilder, ssh_public_key

from pebuilder.errors import Exit
from pebuilder.formats import cpio, iso

PASSWORD = "correct horse 42"
KEY = ssh_public_key("alice@test")


def _config(base: Path, template: Path, extra: str = "", kernel: bool = False) -> Path:
    (base / "pw.txt").write_text(PASSWORD + "\n")
    (base / "motd").write_text("welcome\n")
    (base / "secret.conf").write_text("token=1\n")
    pem = base / "ca.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\nMIIBtest\n-----END CERTIFICATE-----\n")
    cfg = base / "pebuilder.toml"
    cfg.write_text(f"""
[template]
iso = "{template}"
[work]
dir = "work"
[extensions]
dirs = ["{TCZ}"]
onboot = ["kmaps"]
mirrors = ["http://127.0.0.1:9/tc/"]
{'[kernel]' + chr(10) + 'package = "linux-image-cloud-amd64"' if kernel else ''}
[boot]
codes = ["console=ttyS0"]
hostname = "pbcustom"
timeout = 1
serial_getty = true
autologin = false
[[users]]
name = "alice"
uid = 1100
groups = ["staff"]
sudo = true
password_file = "pw.txt"
authorized_keys = ["{KEY}"]
[ssh]
enable = true
[certificates]
bundle = "ca.pem"
[services]
bootlocal = ["echo PEBUILDER-BOOTLOCAL > /dev/console"]
filetool = ["etc/pebuilder.conf"]
[[files]]
source = "motd"
dest = "/etc/motd"
mode = "0644"
[[files]]
source = "secret.conf"
dest = "/etc/pebuilder.conf"
mode = "0640"
owner = "1100:50"
[kiosk]
url = "http://127.0.0.1/"
[output.iso]
path = "out.iso"
{extra}
""")
    return cfg


@pytest.fixture(scope="module")
def built(tmp_path_factory, template_iso):
    base = tmp_path_factory.mktemp("custom")
    cfg = _config(base, template_iso)
    pebuilder("build", cfg, "--offline")  # every extension is local: no mirror is asked
    pebuilder("build", cfg, "--force", "--offline")  # twice: nothing may accumulate
    initrd = iso.extract_files(base / "out.iso", ["boot/corepure64.gz"], base / "got")["boot/corepure64.gz"]
    return base, initrd, {e.name: e for e in cpio.list_entries(initrd)}


def member(initrd: Path, name: str) -> str:
    data = cpio.read_member(initrd, name)
    assert data is not None, name
    return data.decode()


@needs_fixtures
def test_accounts(built):
    base, initrd, entries = built
    shadow = member(initrd, "etc/shadow").splitlines()
    alice = [ln for ln in shadow if ln.startswith("alice:")][0]
    h = alice.split(":")[1]
    assert h.startswith("$6$") and PASSWORD not in "\n".join(shadow)
    salt = h.split("$")[2]
    again = subprocess.run(["openssl", "passwd", "-6", "-salt", salt, "-stdin"], input=PASSWORD + "\n",
                           capture_output=True, text=True).stdout.strip()
    assert again == h
    assert [ln for ln in shadow if ln.startswith("root:")][0].startswith("root:!:")
    template = {ln for ln in cpio.read_member(ROOTFS, "etc/shadow").decode().splitlines()}
    host = set(Path("/etc/shadow").read_text().splitlines()) if Path("/etc/shadow").exists() else set()
    assert not ((set(shadow) & host) - template), "a line of the build host's /etc/shadow is in the image"
    assert "alice:x:1100:50:alice:/home/alice:/bin/sh" in member(initrd, "etc/passwd").splitlines()
    staff = [ln for ln in member(initrd, "etc/group").splitlines() if ln.startswith("staff:")][0]
    assert "alice" in staff.split(":")[3].split(",")
    assert "alice\tALL=(ALL) NOPASSWD: ALL" in member(initrd, "etc/sudoers").splitlines()
    sh = entries["etc/shadow"]
    assert (sh.uid, sh.gid, stat.S_IMODE(sh.mode)) == (0, 50, 0o660)  # the template's owner and mode kept
    assert "ttyS0::respawn:/sbin/getty -L 115200 ttyS0 vt100" in member(initrd, "etc/inittab")
    cfg = iso.extract_files(base / "out.iso", ["boot/isolinux/isolinux.cfg"], base / "g2")
    text = cfg["boot/isolinux/isolinux.cfg"].read_text()
    assert text.count("noautologin") == 1 and text.count("host=pbcustom") == 1


@needs_fixtures
def test_ssh_files(built):
    _, initrd, entries = built
    ak = entries["home/alice/.ssh/authorized_keys"]
    assert (ak.uid, ak.gid, stat.S_IMODE(ak.mode)) == (1100, 50, 0o600)
    d = entries["home/alice/.ssh"]
    assert (d.uid, stat.S_IMODE(d.mode)) == (1100, 0o700)
    assert member(initrd, "home/alice/.ssh/authorized_keys") == KEY + "\n"
    assert "PasswordAuthentication no" in member(initrd, "usr/local/etc/ssh/sshd_config")
    assert not [n for n in entries if n.startswith("usr/local/etc/ssh/ssh_host_")]
    bootlocal = member(initrd, "opt/bootlocal.sh")
    assert bootlocal.count("/usr/local/etc/init.d/openssh start") == 1
    assert bootlocal.count("echo PEBUILDER-BOOTLOCAL") == 1


@needs_fixtures
def test_supplied_host_keys(tmp_path, template_iso):
    keys = tmp_path / "keys"
    keys.mkdir()
    # Only where the key lands and with which mode matters here, not the key itself.
    (keys / "ssh_host_ed25519_key").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\ntest\n")
    (keys / "ssh_host_ed25519_key.pub").write_text("ssh-ed25519 AAAAtest host\n")
    cfg = _config(tmp_path, template_iso)
    cfg.write_text(cfg.read_text().replace("enable = true", 'enable = true\nhost_keys = "keys"'))
    pebuilder("build", cfg, "--offline")
    initrd = iso.extract_files(tmp_path / "out.iso", ["boot/corepure64.gz"], tmp_path / "g")["boot/corepure64.gz"]
    entries = {x.name: x for x in cpio.list_entries(initrd)}
    key, pub = entries["usr/local/etc/ssh/ssh_host_ed25519_key"], entries["usr/local/etc/ssh/ssh_host_ed25519_key.pub"]
    assert (key.uid, stat.S_IMODE(key.mode)) == (0, 0o600) and stat.S_IMODE(pub.mode) == 0o644


@needs_fixtures
def test_certificates_mirror_services_files(built):
    base, initrd, entries = built
    for path in ("usr/local/etc/ssl/certs/ca-certificates.crt", "etc/ssl/certs/ca-certificates.crt"):
        assert "BEGIN CERTIFICATE" in member(initrd, path)
    assert member(initrd, "opt/tcemirror") == "http://127.0.0.1:9/tc/\n"  # one line, after two builds
    assert member(initrd, "opt/.filetool.lst").splitlines().count("etc/pebuilder.conf") == 1
    motd, conf = entries["etc/motd"], entries["etc/pebuilder.conf"]
    assert (motd.uid, motd.gid, stat.S_IMODE(motd.mode)) == (0, 0, 0o644)
    assert (conf.uid, conf.gid, stat.S_IMODE(conf.mode)) == (1100, 50, 0o640)
    assert member(initrd, "etc/pebuilder.conf") == "token=1\n"
    assert "http://127.0.0.1/" in member(initrd, "etc/skel/.X.d/kiosk")
    assert member(initrd, "etc/sysconfig/Xserver") == "Xorg\n"


@needs_fixtures
@pytest.mark.boot
def test_build_check_boots_the_customised_iso(built):
    """`build --check`: a no-op rebuild, then the ISO boots under QEMU to tc-config's host name line."""
    base, _, _ = built
    proc = pebuilder("build", base / "pebuilder.toml", "--offline", "--check", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"boot check: {base / 'out.iso'} (x86_64, bios, as cdrom) ..." in proc.stdout
    assert "Setting hostname to" in proc.stdout and "boot check passed in " in proc.stdout
    assert "skipped (unchanged)" in proc.stderr and "✓" not in proc.stderr


@needs_fixtures
@pytest.mark.parametrize("old,new,message,code", [
    ('password_file = "pw.txt"', 'password = "plain"', "users[0].password: unknown key", Exit.CONFIG_INVALID),
    ('password_file = "pw.txt"', 'password_file = "nope.txt"', "users.alice: cannot read password_file",
     Exit.CONFIG_INVALID),
    ('groups = ["staff"]', 'groups = ["wheel"]', "group 'wheel' does not exist in the image's /etc/group",
     Exit.CONFIG_INVALID),
    ('name = "alice"', 'name = "tc"', "users[0].name: 'tc' already exists in the image", Exit.CONFIG_INVALID),
    ('hostname = "pbcustom"', 'hostname = "pbcustom"\nmodules = ["no_such_module"]',
     "boot.modules: 'no_such_module' is in no module tree of the image", Exit.KERNEL),
    ("uid = 1100", "uid = 0", "users[0].uid: 0 is out of range; give a number from 1 to 65533", Exit.CONFIG_INVALID),
    ('bundle = "ca.pem"', 'bundle = "motd"', "certificates.bundle: ", Exit.CONFIG_INVALID),
])
def test_bad_customisation_is_a_clear_error(tmp_path, template_iso, old, new, message, code):
    cfg = _config(tmp_path, template_iso)
    cfg.write_text(cfg.read_text().replace(old, new))
    proc = pebuilder("build", cfg, "--offline", check=False)
    assert proc.returncode == code, proc.stderr
    assert message in proc.stderr.splitlines()[-1] and proc.stderr.splitlines()[-1].startswith("pebuilder: error:")
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out.iso").exists()


# -- with Debian's kernel: real tce-load, real extensions, serial login, virtio disk -----------------

@pytest.fixture(scope="module")
def debian_kernel_build(tmp_path_factory, template_iso):
    base = tmp_path_factory.mktemp("debkernel")
    disk = '[[output.disk]]\npath = "virtio.raw"\nsize = "1G"\n'
    cfg = _config(base, template_iso, extra=disk, kernel=True)
    cfg.write_text(cfg.read_text().replace(
        'bootlocal = ["echo PEBUILDER-BOOTLOCAL > /dev/console"]',
        'bootlocal = ["grep -q \' /tmp/tcloop/kmaps squashfs\' /proc/mounts && echo KMAPS-SQUASHFS-MOUNT '
        '> /dev/console", "[ -e /usr/share/kmap/azerty/fr.kmap ] && echo KMAP-FILES-REACHABLE > /dev/console", '
        '"echo TCEDIR=$(readlink /etc/sysconfig/tcedir) > /dev/console"]').replace(
        'hostname = "pbcustom"', 'hostname = "pbcustom"\nmodules = ["virtio_blk"]'))
    proc = pebuilder("build", cfg, "--offline", "--json", check=False)  # --offline: Tiny Core mirrors only
    if proc.returncode == Exit.DOWNLOAD:
        network_unavailable(f"Debian's kernel package cannot be fetched here: {proc.stderr[-300:]}")
    assert proc.returncode == 0, proc.stderr
    return base


@needs_fixtures
@pytest.mark.network
def test_debian_kernel_files(debian_kernel_build):
    base = debian_kernel_build
    initrd = iso.extract_files(base / "out.iso", ["boot/corepure64.gz"], base / "g")["boot/corepure64.gz"]
    names = {e.name for e in cpio.list_entries(initrd)}
    mods = [n for n in names if n.startswith("lib/modules/") and n.endswith("modules.dep")]
    assert len(mods) == 1 and "cloud-amd64" in mods[0]
    assert any(n.endswith("/squashfs.ko") for n in names) and any(n.endswith("/virtio_blk.ko") for n in names)
    assert b"bs=4096" not in cpio.read_member(initrd, "usr/bin/tce-load")
    assert "virtio_blk" in cpio.read_member(initrd, "etc/init.d/pebuilder-modules").decode()


@needs_fixtures
@pytest.mark.network
@pytest.mark.boot
def test_debian_kernel_iso_loads_cde_and_serial_login(debian_kernel_build, tmp_path):
    base = debian_kernel_build
    script = tmp_path / "login.script"
    script.write_text("expect pbcustom login:\nsend alice\\n\nexpect Password:\n"
                      f"send {PASSWORD}\\n\nexpect $ \nsend id\\n\nexpect uid=1100(alice) gid=50(staff)\n"
                      "send exit\\n\nexpect pbcustom login:\nsend alice\\n\nexpect Password:\n"
                      "send not-the-password\\n\nexpect Login incorrect\n")
    proc = pebuilder("boot", base / "out.iso", "--expect", "KMAPS-SQUASHFS-MOUNT", "--expect", "KMAP-FILES-REACHABLE",
                     "--script", script, "--timeout", "170", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@needs_fixtures
@pytest.mark.network
@pytest.mark.boot
def test_virtio_only_disk_finds_tce(debian_kernel_build):
    base = debian_kernel_build
    proc = pebuilder("boot", base / "virtio.raw", "--as", "disk", "--drive-if", "virtio",
                     "--expect", "pebuilder: loaded module virtio_blk", "--expect", "TCEDIR=/mnt/vda1/tce",
                     "--expect", "KMAPS-SQUASHFS-MOUNT", "--expect", "KMAP-FILES-REACHABLE", "--timeout", "170",
                     check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@needs_fixtures
@pytest.mark.network
def test_local_kernel_and_modules_folder(debian_kernel_build, tmp_path, template_iso):
    """kernel = a local vmlinuz + a folder with lib/modules/<version> (here: the unpacked Debian one)."""
    # The kernel that build unpacked (the shared cache holds others: other suites, arches, meta packages).
    used = [json.loads(p.read_text()) for p in debian_kernel_build.rglob(".pebuilder/kernel.json")]
    assert len(used) == 1, f"debian_kernel_build left {len(used)} kernel.json files"
    root, vmlinuz = Path(used[0]["root"]), Path(used[0]["vmlinuz"])
    cfg = tmp_path / "k.toml"
    cfg.write_text(f'[template]\niso = "{template_iso}"\n[kernel]\nvmlinuz = "{vmlinuz}"\nmodules_dir = "{root}"\n'
                   '[boot]\nmodules = ["virtio_net"]\n[output.iso]\npath = "k.iso"\n')
    pebuilder("build", cfg)
    got = iso.extract_files(tmp_path / "k.iso", ["boot/corepure64.gz", "boot/vmlinuz64"], tmp_path / "g")
    assert got["boot/vmlinuz64"].read_bytes() == vmlinuz.read_bytes()
    names = {e.name for e in cpio.list_entries(got["boot/corepure64.gz"])}
    assert any(n.endswith("/virtio_net.ko") for n in names)
    bad = tmp_path / "bad.toml"
    bad.write_text(cfg.read_text().replace(f'modules_dir = "{root}"', f'modules_dir = "{tmp_path}"'))
    proc = pebuilder("build", bad, check=False)
    assert proc.returncode == 39 and "expected one lib/modules/<version> folder" in proc.stderr
