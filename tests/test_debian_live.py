"""The Debian-based live system: the README's default, disks with persistence and extensions, minbase.

Images are built once per session (tests/shared.py) and booted by several tests; every boot reads
the serial console. Builds need Debian's package mirror (the host's apt sources).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from shared import add_codes, built, edit_grub_cfg, make_extension, pebuilder, run_console, shell_script

from pebuilder.boot.qemu import boot, console_text
from pebuilder.formats import iso

MARKER = "pebuilder: system is up"
SDE = {"SOURCE_DATE_EPOCH": "1700000000"}
pytestmark = pytest.mark.network


# -- the README's default ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def default(tmp_path_factory) -> Path:
    def make(folder: Path) -> None:
        pebuilder("build", "--out", folder / "out", "--json", env=SDE)

    return built(tmp_path_factory, "debian-default", make) / "out"


@pytest.mark.boot
def test_default_iso_boots_bios_cd(default, tmp_path):
    res = boot(default / "pebuilder-default.iso", expect=[MARKER], firmware="bios", media="cdrom", timeout=120,
               log_path=tmp_path / "serial.log")
    log = console_text((tmp_path / "serial.log").read_bytes())
    assert res.ok, log[-3000:]
    assert res.seen[MARKER] < 60
    assert "pebuilder: medium /dev/sr" in log and "read-only" in log
    assert "changes are kept in RAM" in log


@pytest.mark.boot
def test_default_iso_boots_uefi_disk(default, tmp_path):
    res = boot(default / "pebuilder-default.iso", expect=[MARKER], firmware="uefi", media="disk", timeout=120,
               log_path=tmp_path / "serial.log")
    assert res.ok, console_text((tmp_path / "serial.log").read_bytes())[-3000:]
    assert res.seen[MARKER] < 60


def test_default_medium_layout_and_size(default, tmp_path):
    image = default / "pebuilder-default.iso"
    assert image.stat().st_size <= 20 << 20, f"tiny ISO is {image.stat().st_size} bytes (goal: 20 MiB)"
    files = set(iso.list_files(image))
    assert {"/boot/vmlinuz", "/boot/initrd.img", "/os/core.sqfs", "/os/pebuilder.id", "/ext/onboot.lst",
            "/boot/grub/grub.cfg", "/boot/isolinux/isolinux.cfg", "/boot/isolinux/isolinux.bin"} <= files
    core = iso.extract_files(image, ["os/core.sqfs"], tmp_path)["os/core.sqfs"]
    listing = subprocess.run(["unsquashfs", "-lln", str(core)], capture_output=True, text=True, check=True).stdout
    lines = [ln for ln in listing.splitlines() if ln.strip()]
    assert all(" 0/0 " in ln or " 0/42 " in ln or " 0/50 " in ln for ln in lines), [
        ln for ln in lines if " 0/" not in ln][:5]
    for path in ("squashfs-root/bin -> usr/bin", "squashfs-root/usr/bin/busybox", "squashfs-root/usr/sbin/init",
                 "squashfs-root/etc/inittab", "squashfs-root/os", "squashfs-root/ext", "squashfs-root/data"):
        assert any(ln.endswith(path) or f"{path} ->" in ln for ln in lines), path
    assert "tmp" in listing and any(ln.startswith("drwxrwxrwt") and ln.endswith("/tmp") for ln in lines)
    got = iso.extract_files(image, ["boot/grub/grub.cfg", "boot/isolinux/isolinux.cfg", "os/pebuilder.id"], tmp_path)
    ident = got["os/pebuilder.id"].read_text()
    assert len(ident) == 17 and ident.endswith("\n") and int(ident, 16) >= 0
    for menu in ("boot/grub/grub.cfg", "boot/isolinux/isolinux.cfg"):
        text = got[menu].read_text()
        assert f"pb.media=LABEL=PEBUILDER pb.id={ident.strip()} " in text and "console=ttyS0,115200" in text, menu


def test_default_ships_the_c_utf8_locale_and_lang(default, tmp_path):
    """Debian's compiled C.UTF-8 (libc-bin's usr/lib/locale/C.utf8) and LANG=C.UTF-8 for logins and
    services, in a base that has no glibc of its own (glibc programs come later, as extensions)."""
    core = iso.extract_files(default / "pebuilder-default.iso", ["os/core.sqfs"], tmp_path)["os/core.sqfs"]
    listing = subprocess.run(["unsquashfs", "-lln", str(core)], capture_output=True, text=True, check=True).stdout
    sizes = {ln.split()[-1].removeprefix("squashfs-root/"): int(ln.split()[2]) for ln in listing.splitlines()
             if ln.startswith("-")}
    assert sizes["usr/lib/locale/C.utf8/LC_CTYPE"] > 300_000  # bookworm's: 353,616 bytes
    assert {"usr/lib/locale/C.utf8/LC_COLLATE", "usr/lib/locale/C.utf8/LC_MESSAGES/SYS_LC_MESSAGES"} <= set(sizes)
    assert not any("libc.so" in f or f.endswith("/ldconfig") or f.endswith("bin/locale") for f in sizes)

    def cat(rel: str) -> str:
        return subprocess.run(["unsquashfs", "-cat", str(core), rel], capture_output=True, text=True,
                              check=True).stdout

    assert cat("etc/default/locale") == "LANG=C.UTF-8\n"
    assert "/etc/profile.d/*.sh" in cat("etc/profile") and "/etc/default/locale" in cat("etc/profile.d/locale.sh")
    assert ". /etc/profile.d/locale.sh" in cat("etc/init.d/rcS")


def test_default_rebuild_of_boot_codes_keeps_the_system(default, tmp_path):
    work = tmp_path / "out"
    shutil.copytree(default, work, symlinks=True)
    report = json.loads(pebuilder("build", "--out", work, "--json", "--set", 'boot.codes=["pb.debug"]').stdout)
    ran = {s["stage"] for s in report["stages"] if s["ran"]}
    assert ran <= {"boot-menus", "efi-boot", "medium", "package-iso"}, ran
    assert "boot-menus" in ran and "package-iso" in ran
    grub = iso.extract_files(work / "pebuilder-default.iso", ["boot/grub/grub.cfg"], tmp_path / "g")
    assert "pb.debug" in grub["boot/grub/grub.cfg"].read_text()
    again = json.loads(pebuilder("build", "--out", work, "--json", "--set", 'boot.codes=["pb.debug"]').stdout)
    assert [s["stage"] for s in again["stages"] if s["ran"]] == []
    assert again["hashed_files"] == 0


def test_default_build_is_reproducible(default, tmp_path):
    """The same inputs in another folder, from scratch: byte-identical ISO (the fixture used the same epoch)."""
    out = tmp_path / "again"
    pebuilder("build", "--out", out, env=SDE)
    digest = hashlib.sha256((out / "pebuilder-default.iso").read_bytes()).hexdigest()
    assert digest == hashlib.sha256((default / "pebuilder-default.iso").read_bytes()).hexdigest()


@pytest.mark.boot
@pytest.mark.parametrize("codes,says", [
    ("pb.media=LABEL=NOSUCHDISK", "cannot find the boot medium LABEL=NOSUCHDISK (waited 2 s; block devices: "),
    # The label is there, the identity is not: the message names what carries the label, and its id.
    ("pb.media=LABEL=PEBUILDER pb.id=0123456789abcdef",
     "cannot find the boot medium LABEL=PEBUILDER with pb.id=0123456789abcdef (waited 2 s); media labelled "
     "PEBUILDER: /dev/sr0 (id {id}). Boot with pb.id=any"),
], ids=["label", "id"])
def test_wrong_label_or_id_gives_a_message_and_a_shell(default, tmp_path, codes, says):
    work = default / "work" / "image"
    says = says.format(id=(work / "os/pebuilder.id").read_text().strip())
    script = [("expect", says), ("expect", "dropping to a shell"),
              ("send", "\n"), ("send", "echo rescue-''shell-ok\n"), ("expect", "rescue-shell-ok")]
    extra = ["-kernel", str(work / "boot/vmlinuz"), "-initrd", str(work / "boot/initrd.img"),
             "-append", f"console=ttyS0,115200 {codes} pb.wait=2"]
    _, log = run_console(default / "pebuilder-default.iso", script, tmp_path / "serial.log", timeout=120,
                         extra=extra)
    assert "Kernel panic" not in log


# -- a disk: extensions in /ext and persistence in /data ----------------------------------------------

DISK_TOML = """
system = "debian"
[base]
variant = "tiny"
[extensions]
dirs = ["ext"]
onboot = ["pbmark"]
[services]
bootlocal = ['echo "service-env LANG=$LANG" > /dev/console']
[boot]
serial = true
timeout = 1
hostname = "pbdisk"
[[output.disk]]
path = "out/live.raw"
size = "256M"
table = "gpt"
firmware = "both"
label = "PBLIVE"
"""
# PBLIVE: the label of test_pe's PE and of the disks it installs, so that those tests boot media of
# different builds that share one label (each finds its own by its id).


@pytest.fixture(scope="module")
def disk(tmp_path_factory) -> Path:
    def make(folder: Path) -> None:
        ext = folder / "ext"
        ext.mkdir()
        make_extension(ext, "pbdep", {"usr/share/pbdep/lib.txt": "dependency-data\n"})
        make_extension(ext, "pbmark", {
            "usr/share/pbmark/hello.txt": "hello from pbmark\n",
            "usr/bin/pbmark": "#!/bin/sh\necho \"pbmark runs, dep says $(cat /usr/share/pbdep/lib.txt)\"\n"},
            deps=["pbdep"])
        (folder / "live.toml").write_text(DISK_TOML)
        pebuilder("build", folder / "live.toml")

    return built(tmp_path_factory, "debian-disk", make) / "out" / "live.raw"


@pytest.mark.boot
def test_disk_uefi_loads_extensions_with_their_deps_first(disk, tmp_path):
    script = shell_script("cat /usr/share/pbmark/hello.txt", "pbmark", "cat /run/pb/loaded", "ls /ext")
    _, log = run_console(disk, script, tmp_path / "serial.log", firmware="uefi", media="disk", timeout=150)
    assert "hello from pbmark" in log
    assert "pbmark runs, dep says dependency-data" in log
    assert log.index("pebuilder: extension pbdep") < log.index("pebuilder: extension pbmark")
    assert "pbmark.tcz" in log and "onboot.lst" in log
    assert "service-env LANG=C.UTF-8" in log  # what rcS starts has the system's locale


@pytest.mark.boot
def test_disk_persistence(disk, tmp_path):
    image = tmp_path / "live.raw"
    shutil.copyfile(disk, image)
    kw = {"firmware": "bios", "media": "disk", "timeout": 150, "writable": True, "drive_if": "virtio"}
    _, log = run_console(image, shell_script("echo system > /root/kept", "echo data > /data/d1", "sync"),
                         tmp_path / "1.log", **kw)
    assert "changes are kept in /data/changes" in log
    _, log = run_console(image, shell_script("cat /root/kept /data/d1"), tmp_path / "2.log", **kw)
    assert "system\r\ndata" in log.replace("\r\r", "\r") or ("system" in log.split("cat /root/kept")[-1]
                                                              and "data" in log.split("cat /root/kept")[-1])
    # A machine booted with pb.persist=0 keeps its changes in RAM; /data still persists.
    root_part = 3  # gpt + both: BIOS boot, ESP, root
    edit_grub_cfg(image, root_part, add_codes("pb.persist=0"), tmp_path)
    _, log = run_console(image, shell_script("echo ram > /root/lost", "echo data2 > /data/d2", "sync"),
                         tmp_path / "3.log", **kw)
    assert "changes are kept in RAM" in log
    edit_grub_cfg(image, root_part, lambda t: t.replace(" pb.persist=0", ""), tmp_path)
    _, log = run_console(image, shell_script("ls /root/lost || echo lost-is-''gone", "cat /data/d2 /root/kept"),
                         tmp_path / "4.log", **kw)
    tail = log.split("ls /root/lost")[-1]
    assert "lost-is-gone" in tail and "data2" in tail and "system" in tail


# -- minbase: dpkg inside, a user on the serial console, SSH --------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def minbase(tmp_path_factory) -> dict:
    def make(folder: Path) -> None:
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / "id")], check=True)
        pw_hash = subprocess.run(["openssl", "passwd", "-6", "-salt", "pbtestsalt", "secret-pw"],
                                 capture_output=True, text=True, check=True).stdout.strip()
        pub = (folder / "id.pub").read_text().strip()
        (folder / "min.toml").write_text(f"""
system = "debian"
[base]
variant = "minbase"
packages = ["openssh-server"]
compression = "zstd"   # fast to build; the size goal (xz) is measured by bench/debian_live.py
[boot]
serial = true
serial_getty = true
timeout = 1
hostname = "pbmin"
[[users]]
name = "alice"
uid = 1100
password_hash = "{pw_hash}"
authorized_keys = ["{pub}"]
[ssh]
enable = true
[output.iso]
path = "out/min.iso"
""")
        pebuilder("build", folder / "min.toml")

    folder = built(tmp_path_factory, "debian-minbase", make)
    return {"iso": folder / "out" / "min.iso", "key": folder / "id"}


@pytest.mark.boot
def test_minbase_dpkg_login_and_ssh(minbase, tmp_path):
    port = _free_port()
    key = tmp_path / "id"
    shutil.copyfile(minbase["key"], key)
    os.chmod(key, 0o600)
    ssh_out: dict[str, str] = {}

    def try_ssh() -> None:
        deadline = time.monotonic() + 170
        while time.monotonic() < deadline and "out" not in ssh_out:
            p = subprocess.run(["ssh", "-i", str(key), "-p", str(port), "-o", "StrictHostKeyChecking=no",
                                "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5", "-o", "BatchMode=yes",
                                "alice@127.0.0.1", "echo ssh-ok $(id -un) $(hostname)"],
                               capture_output=True, text=True)
            if p.returncode == 0:
                ssh_out["out"] = p.stdout
                return
            time.sleep(3)

    thread = threading.Thread(target=try_ssh, daemon=True)
    script = [("expect", "pbmin login:"), ("send", "alice\n"), ("expect", "Password:"), ("send", "secret-pw\n"),
              ("expect", "$ "), ("send", "dpkg -s busybox-static | grep Status; apt-get --version | head -n 1; "
                                         "echo lang-is-$LANG; locale 2>&1 | head -n 3; id\n"),
              ("expect", "uid=1100(alice)")]
    thread.start()
    res = boot(minbase["iso"], expect=[MARKER], script=script, firmware="bios", media="cdrom", timeout=240,
               log_path=tmp_path / "serial.log", nic=f"hostfwd=tcp:127.0.0.1:{port}-:22", memory=768,
               done_when=lambda: "out" in ssh_out)
    log = console_text((tmp_path / "serial.log").read_bytes())
    assert res.ok, f"{res.exit_reason}; ssh: {ssh_out}\n{log[-3000:]}"
    assert "Status: install ok installed" in log
    assert "apt 2." in log
    assert "lang-is-C.UTF-8" in log and "LC_CTYPE=\"C.UTF-8\"" in log and "Cannot set" not in log
    assert ssh_out["out"].strip() == "ssh-ok alice pbmin"
