"""[provision] install = "debian": the PE installs Debian on a blank disk from the mirror, like
debian-installer's netinstall; cut off in the middle, the next boot of the PE still ends in a
bootable system; the disk then boots alone under BIOS and UEFI, and a configured user logs in over SSH.

The guest reaches the Debian mirror only through a caching proxy on loopback (tests/apt_proxy.py)
and QEMU's guestfwd. Everything is read from the serial console or over SSH.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
from apt_proxy import AptProxy
from shared import built, pebuilder
from test_debian_live import SDE, _free_port

from pebuilder.boot.qemu import boot, console_text

# One chain of boots (~13 min under TCG): started first and kept on one worker.
pytestmark = [pytest.mark.network, pytest.mark.first, pytest.mark.xdist_group("netinstall")]
UP = "pebuilder: installed system is up"


def _log(p: Path) -> str:
    return console_text(p.read_bytes())


@pytest.fixture(scope="module")
def proxy(tmp_path_factory) -> AptProxy:
    return AptProxy(tmp_path_factory.mktemp("apt-cache"))


@pytest.fixture(scope="module")
def pe(tmp_path_factory) -> dict[str, Path]:
    def make(folder: Path) -> None:
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(folder / "id")],
                       check=True)
        key = (folder / "id.pub").read_text().strip()
        (folder / "pe.toml").write_text(f"""
system = "debian"
[base]
variant = "tiny"
[boot]
serial = true
timeout = 1
hostname = "pbni"
[[users]]
name = "alice"
uid = 1100
sudo = true
authorized_keys = ["{key}"]
[provision]
install = "debian"
mirror = "http://10.0.2.100/debian"
hostname = "pbdeb"
packages = ["jq"]
swap = "64M"
initramfs = "targeted"
then = "poweroff"
script = ["echo pebuilder-script-ran > /etc/pb-script-marker"]
[output.iso]
path = "pe.iso"
""")
        pebuilder("build", folder / "pe.toml", env=SDE)

    folder = built(tmp_path_factory, "netinstall-pe", make)
    return {"iso": folder / "pe.iso", "key": folder / "id", "plan": folder / "build/.pebuilder/products/netinstall"}


def test_the_plan_is_a_closed_verified_package_set(pe):
    plan = pe["plan"]
    debs = [line.split() for line in (plan / "debs").read_text().splitlines()]
    names = {line.split(": ", 1)[1] for line in (plan / "Packages").read_text().splitlines()
             if line.startswith("Package: ")}
    assert len(debs) == len(names) > 80
    assert all(len(sha) == 64 and int(size) > 0 and rel.startswith("pool/") for sha, size, _, rel in debs)
    for want in ("jq", "openssh-server", "sudo", "grub-pc", "grub-efi-amd64-bin", "systemd-sysv", "usr-is-merged",
                 "mawk"):
        assert want in names, want
    assert "gawk" not in names and "usrmerge" not in names  # debootstrap's choices, not the first alternative
    conf = (plan / "plan.conf").read_text()
    assert "mirror=http://10.0.2.100/debian\n" in conf and "hostname=pbdeb\n" in conf
    assert "alice 1100 /bin/sh - yes -" in (plan / "users").read_text()


@pytest.fixture(scope="module")
def installed(pe, proxy, tmp_path_factory) -> dict[str, object]:
    """The PE cut off while fetching, then booted again to the end: the disk and both consoles."""
    def make(folder: Path) -> None:
        disk = folder / "disk.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "4G"], check=True)
        nic = f"guestfwd=tcp:10.0.2.100:80-cmd:busybox nc 127.0.0.1 {proxy.port}"
        cut = boot(pe["iso"], expect=["netinstall: fetched 40 packages"], media="cdrom", timeout=400, memory=1024,
                   log_path=folder / "cut.log", disks=[disk], writable=True, nic=nic, extra=["-boot", "d"])
        assert cut.ok, _log(folder / "cut.log")[-3000:]
        before = proxy.count("/debian")
        t0 = time.monotonic()
        res = boot(pe["iso"], expect=["netinstall: done", "powering off"], media="cdrom", timeout=1500,
                   memory=1024, log_path=folder / "pe.log", disks=[disk], writable=True, nic=nic,
                   extra=["-boot", "d"])  # the disk has a partition table by now: firmware would try it first
        (folder / "seconds").write_text(f"{time.monotonic() - t0:.0f}\n")
        assert res.ok, _log(folder / "pe.log")[-4000:]
        (folder / "requests").write_text(f"{before} {proxy.count('/debian') - before}\n")

    folder = built(tmp_path_factory, "netinstall-disk", make)
    first, second = map(int, (folder / "requests").read_text().split())
    return {"disk": folder / "disk.qcow2", "cut": _log(folder / "cut.log"), "log": _log(folder / "pe.log"),
            "requests": (first, second)}


@pytest.mark.boot
def test_pe_netinstalls_and_resumes_after_a_cut(installed):
    log = installed["log"]
    assert "netinstall: installing Debian bookworm (amd64)" in log
    assert "already holds this layout: starting over on it, keeping the packages fetched before" in log
    kept = int(log.split(" kept from before")[0].rsplit(", ", 1)[1])
    assert kept >= 40, log[-3000:]
    first, second = installed["requests"]
    assert first >= 40 and second < first + second  # the second run did not fetch everything again
    assert "netinstall: base system installed" in log and "netinstall: done: Debian bookworm" in log
    assert "netinstall: initramfs (targeted)" in log and "could not be made" not in log
    assert "running the provisioning script in the installed system" in log


def _ssh(key: Path, port: int, out: dict[str, str], command: str) -> None:
    deadline = time.monotonic() + 200
    while time.monotonic() < deadline and "out" not in out:
        p = subprocess.run(["ssh", "-i", str(key), "-p", str(port), "-o", "StrictHostKeyChecking=no",
                            "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5", "-o", "BatchMode=yes",
                            "alice@127.0.0.1", command], capture_output=True, text=True)
        if p.returncode == 0:
            out["out"] = p.stdout
            return
        out["last"] = f"exit {p.returncode}: {p.stdout[-500:]} {p.stderr[-500:]}"
        time.sleep(3)


@pytest.mark.boot
def test_the_installed_disk_boots_alone_bios_and_logs_in_over_ssh(pe, installed, tmp_path):
    key = tmp_path / "id"
    key.write_bytes(pe["key"].read_bytes())
    os.chmod(key, 0o600)
    port = _free_port()
    out: dict[str, str] = {}
    cmd = ("dpkg-query -W -f '${Package}=${Status}\\n' jq openssh-server sudo; cat /etc/pb-script-marker; "
           "hostname; sudo -n id -u; findmnt -no FSTYPE,SOURCE /; tail -n +2 /proc/swaps; hostnamectl hostname; "
           "sudo -n ls /boot/efi/EFI/BOOT")  # the ESP is root's only (umask=0077), as d-i mounts it
    thread = threading.Thread(target=_ssh, args=(key, port, out, cmd), daemon=True)
    thread.start()
    res = boot(installed["disk"], expect=[UP], media="disk", drive_if="virtio", firmware="bios", timeout=300,
               memory=1024, log_path=tmp_path / "bios.log", nic=f"hostfwd=tcp:127.0.0.1:{port}-:22",
               done_when=lambda: "out" in out)
    log = _log(tmp_path / "bios.log")
    assert res.ok and "out" in out, f"{res.exit_reason}; ssh: {out}\n{log[-3000:]}"
    assert "host pbdeb" in log and "Debian GNU/Linux 12" in log
    got = out["out"].split("\n")
    for pkg in ("jq", "openssh-server", "sudo"):
        assert f"{pkg}=install ok installed" in got
    assert "pebuilder-script-ran" in got and "0" in got
    assert any(line.split()[:2] == ["ext4", "/dev/vda4"] for line in got if line.strip())  # columns are padded
    assert any(line.startswith("/dev/vda3 ") for line in got)  # the swap partition, in use
    assert got.count("pbdeb") == 2  # hostname(1) and hostnamectl (over D-Bus, as on a d-i system)
    assert "BOOTX64.EFI" in got


@pytest.mark.boot
def test_the_installed_disk_boots_alone_uefi(installed, tmp_path):
    res = boot(installed["disk"], expect=[UP], media="disk", drive_if="virtio", firmware="uefi", timeout=300,
               memory=1024, log_path=tmp_path / "uefi.log")
    log = _log(tmp_path / "uefi.log")
    assert res.ok, log[-3000:]
    assert "host pbdeb" in log


@pytest.mark.boot
def test_failures_stop_with_one_line_and_leave_the_disk_alone(pe, tmp_path):
    """No mirror reachable, a disk too small, no single target: each stops with a line that names what
    is wrong, exits non-zero, and writes nothing."""
    from shared import shell_script

    small, large = tmp_path / "small.qcow2", tmp_path / "large.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(small), "512M"], check=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(large), "4G"], check=True)
    script = shell_script("pb-netinstall /dev/vda; echo rc-small=$?", "pb-netinstall /dev/vdb; echo rc-large=$?",
                          "sfdisk -d /dev/vdb >/dev/null 2>&1; echo table-large=$?")
    res = boot(pe["iso"], expect=["found 2 candidate disks"], script=script, media="cdrom", timeout=300,
               memory=1024, log_path=tmp_path / "pe.log", disks=[small, large], writable=True, net=True,
               extra=["-boot", "d"])
    log = _log(tmp_path / "pe.log")
    assert res.ok, f"{res.exit_reason}\n{log[-3000:]}"
    assert "target=auto found 2 candidate disks (vda(512 MiB) vdb(4096 MiB)" in log
    assert "stopped: /dev/vda is 512 MiB; this install needs at least" in log and "rc-small=1" in log
    assert "stopped: the mirror http://10.0.2.100/debian is unreachable" in log and "rc-large=1" in log
    assert "table-large=1" in log  # sfdisk found no partition table: nothing was written
    assert "partitioning" not in log
