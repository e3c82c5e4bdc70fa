"""arm64, built on this amd64 machine without root: the tiny live system as a GPT disk and a UEFI ISO
booting under qemu-system-aarch64 + AAVMF, an arm64 extension loaded live, and a minbase through
qemu-user. Builds are shared per session; software emulation of arm64 is several times slower, so
each capability boots once.
"""

from __future__ import annotations

import gzip
import subprocess
import threading
from pathlib import Path

import pytest
from shared import built, pebuilder, run_console, shell_script
from test_debian_live import MARKER, SDE

from pebuilder.boot.qemu import boot, console_text
from pebuilder.net.serve import make_server

pytestmark = pytest.mark.network
REPO = "bookworm/aarch64/tcz"

TINY = """
system = "debian"
[base]
arch = "arm64"
[boot]
serial = true
timeout = 1
hostname = "pbarm"
[extensions]
mirrors = ["http://10.0.2.100/"]
[output.iso]
path = "out/arm64.iso"
[[output.disk]]
path = "out/arm64.qcow2"
size = "512M"
table = "gpt"
firmware = "uefi"
format = "qcow2"
label = "PBARM"
"""


@pytest.fixture(scope="module")
def arm64(tmp_path_factory) -> Path:
    def make(folder: Path) -> None:
        (folder / "arm64.toml").write_text(TINY)
        pebuilder("build", folder / "arm64.toml", env=SDE)
        pebuilder("ext", "build", "jq", "--base", folder / "arm64.toml", "--out", folder / "repo", env=SDE)

    return built(tmp_path_factory, "arm64-tiny", make)


def test_arm64_outputs_are_arm64_and_uefi_only(arm64, tmp_path):
    iso = arm64 / "out" / "arm64.iso"
    files = set(subprocess.run(["xorriso", "-indev", str(iso), "-find", "/", "-type", "f"], capture_output=True,
                               text=True, check=True).stdout.split())
    assert "'/boot/vmlinuz'" in files and "'/os/core.sqfs'" in files
    assert not any("isolinux" in f for f in files), "arm64 has no BIOS: no isolinux on its ISO"
    esp = subprocess.run(["xorriso", "-indev", str(iso), "-report_el_torito", "plain"], capture_output=True,
                         text=True).stdout
    assert "UEFI" in esp or "0xef" in esp.lower()
    # arm64 kernels cannot unpack themselves: the medium carries Debian's Image gzip'd, GRUB inflates it.
    kernel = tmp_path / "vmlinuz"
    subprocess.run(["xorriso", "-osirrox", "on", "-indev", str(iso), "-extract", "/boot/vmlinuz", str(kernel)],
                   check=True, capture_output=True)
    packed = kernel.read_bytes()
    assert packed[:2] == b"\x1f\x8b", "the arm64 kernel on the medium is gzip'd"
    image = gzip.decompress(packed)
    assert image[0x38:0x3C] == b"ARM\x64" and len(image) > 2 * len(packed)
    assert iso.stat().st_size < 35_000_000, iso.stat().st_size
    jq = arm64 / "repo" / REPO / "jq.tcz"
    subprocess.run(["unsquashfs", "-d", str(tmp_path / "jq"), str(jq)], check=True, capture_output=True)
    kind = subprocess.run(["file", "-L", str(tmp_path / "jq" / "usr/bin/jq")], capture_output=True, text=True,
                          check=True).stdout
    assert "ARM aarch64" in kind, kind
    assert (arm64 / "repo" / REPO / "jq.tcz.dep").read_text().split() == ["libjq1.tcz", "libc6.tcz"]


@pytest.mark.boot
def test_arm64_disk_boots_under_aavmf(arm64, tmp_path):
    res = boot(arm64 / "out" / "arm64.qcow2", expect=[MARKER], firmware="uefi", media="disk", arch="aarch64",
               timeout=240, log_path=tmp_path / "serial.log")
    log = console_text((tmp_path / "serial.log").read_bytes())
    assert res.ok, log[-3000:]
    assert "aarch64" in log.split(MARKER)[-1].splitlines()[0]


@pytest.mark.boot
def test_arm64_iso_boots_and_loads_an_arm64_extension(arm64, tmp_path):
    server = make_server(arm64 / "repo", "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    nic = f"guestfwd=tcp:10.0.2.100:80-cmd:busybox nc 127.0.0.1 {server.server_address[1]}"
    try:
        script = shell_script("cat /etc/pebuilder/tcerepo", "tce-load -wi jq; echo rc=$?",
                              "echo '{\"arch\":\"arm64\"}' | jq -M .arch | sed 's/^/jq-says-/'", "uname -m")
        _, log = run_console(arm64 / "out" / "arm64.iso", script, tmp_path / "serial.log", firmware="uefi",
                             media="cdrom", arch="aarch64", timeout=300, nic=nic)
    finally:
        server.shutdown()
        server.server_close()
    assert REPO in log
    assert "rc=0" in log and 'jq-says-"arm64"' in log and "aarch64" in log.split("uname -m")[-1]


@pytest.fixture(scope="module")
def arm64_minbase(tmp_path_factory) -> Path:
    def make(folder: Path) -> None:
        (folder / "m.toml").write_text('system = "debian"\n[base]\narch = "arm64"\nvariant = "minbase"\n'
                                       'compression = "zstd"\n[boot]\nserial = true\n'
                                       '[output.iso]\npath = "out/m.iso"\n')
        pebuilder("build", folder / "m.toml")

    return built(tmp_path_factory, "arm64-minbase", make)


def test_arm64_minbase_has_a_working_dpkg(arm64_minbase):
    """Built through qemu-user; dpkg inside the tree answers for an arm64 package (run through binfmt)."""
    root = arm64_minbase / "build" / "system"
    status = (root / "var/lib/dpkg/status").read_text()
    assert "Package: dpkg\n" in status and "Architecture: arm64" in status
    out = subprocess.run(["unshare", "--root", str(root), "/usr/bin/dpkg", "-s", "busybox-static"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "Status: install ok installed" in out.stdout and "Architecture: arm64" in out.stdout
