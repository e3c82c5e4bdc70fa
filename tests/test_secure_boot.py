"""[boot] secure_boot: the ISO and the disk start through Debian's signed shim, GRUB and kernel under
OVMF with Microsoft's keys enrolled (OVMF_CODE_4M.ms.fd + OVMF_VARS_4M.ms.fd: Secure Boot on), the
kernel runs locked down and loads Debian's signed modules; the same firmware refuses pebuilder's own,
unsigned GRUB. One build, three boots.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from shared import built, pebuilder, shell_script
from test_debian_live import MARKER, SDE

from pebuilder.boot.qemu import boot, console_text

pytestmark = pytest.mark.network
SB = """
system = "debian"
[base]
variant = "tiny"
[boot]
serial = true
timeout = 1
hostname = "pbsecure"
secure_boot = true
[output.iso]
path = "out/sb.iso"
[[output.disk]]
path = "out/sb.img"
size = "1G"
table = "gpt"
firmware = "both"
"""
SECURE_BOOT_VAR = "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    def make(folder: Path) -> None:
        (folder / "sb.toml").write_text(SB)
        pebuilder("build", folder / "sb.toml", env=SDE)
        plain = SB.replace("secure_boot = true\n", "").replace("out/sb", "out/plain").split("[[output.disk]]")[0]
        (folder / "plain.toml").write_text(plain + '[work]\ndir = "plain-build"\n')
        pebuilder("build", folder / "plain.toml", env=SDE)

    return built(tmp_path_factory, "secure-boot", make)


def esp_file(esp: Path, path: str, tmp_path: Path) -> bytes:
    out = tmp_path / path.replace("/", "_")
    subprocess.run(["mcopy", "-n", "-i", str(esp), f"::/{path}", str(out)], check=True, capture_output=True)
    return out.read_bytes()


def test_the_esp_carries_debians_signed_chain_and_a_stub_where_grub_looks(images, tmp_path):
    esp = images / "build" / ".pebuilder" / "products" / "esp.img"
    shim = esp_file(esp, "EFI/BOOT/BOOTX64.EFI", tmp_path)
    grub = esp_file(esp, "EFI/BOOT/grubx64.efi", tmp_path)
    assert shim[:2] == b"MZ" and b"Microsoft Corporation UEFI CA" in shim  # what firmware trusts
    assert grub[:2] == b"MZ" and b"Debian Secure Boot CA" in grub and b"/EFI/debian" in grub  # its prefix
    assert b"Debian Secure Boot CA" in esp_file(esp, "EFI/BOOT/mmx64.efi", tmp_path)
    stub = esp_file(esp, "EFI/debian/grub.cfg", tmp_path).decode()
    assert stub.startswith("search --no-floppy --set=root --file /boot/grub/pebuilder-") and "configfile" in stub


@pytest.mark.boot
def test_iso_boots_with_secure_boot_enforced_and_loads_signed_modules(images, tmp_path):
    script = shell_script(
        f"mount -t efivarfs efivarfs /sys/firmware/efi/efivars 2>/dev/null; od -An -tu1 {SECURE_BOOT_VAR} "
        "| tr -s ' ' | sed 's/^/sb-var:/'",
        "mount -t securityfs securityfs /sys/kernel/security 2>/dev/null; sed 's/^/lockdown:/' "
        "/sys/kernel/security/lockdown",
        "grep -c '^nls_utf8 ' /proc/modules | sed 's/^/before-/'",
        "modprobe nls_utf8; echo modprobe-rc=$?",
        "grep -c '^nls_utf8 ' /proc/modules | sed 's/^/after-/'",
        "dmesg | grep -ci 'verification failed\\|unsigned module\\|Key was rejected' | sed 's/^/rejected-/'")
    log_path = tmp_path / "iso.log"
    res = boot(images / "out" / "sb.iso", expect=[MARKER], script=script, firmware="uefi-secure", media="cdrom",
               timeout=240, log_path=log_path)
    log = console_text(log_path.read_bytes())
    assert res.ok, f"{res.exit_reason}, missing {res.missing}\n{log[-3000:]}"
    assert "EFI stub: UEFI Secure Boot is enabled." in log and "secureboot: Secure boot enabled" in log
    assert "sb-var: 6 0 0 0 1" in log  # attributes (4 bytes), then the value: 1 = enabled
    assert "lockdown:none [integrity] confidentiality" in log
    assert "before-0" in log and "modprobe-rc=0" in log and "after-1" in log
    assert "rejected-0" in log


@pytest.mark.boot
def test_disk_boots_with_secure_boot_enforced(images, tmp_path):
    log_path = tmp_path / "disk.log"
    res = boot(images / "out" / "sb.img", expect=[MARKER, "secureboot: Secure boot enabled"],
               firmware="uefi-secure", media="disk", drive_if="virtio", timeout=240, log_path=log_path)
    log = console_text(log_path.read_bytes())
    assert res.ok, f"{res.exit_reason}, missing {res.missing}\n{log[-3000:]}"
    assert "host pbsecure" in log.split(MARKER, 1)[1].splitlines()[0]
    assert "error:" not in log  # the signed GRUB found its config at the first place it looks


@pytest.mark.boot
def test_the_same_firmware_refuses_an_unsigned_loader(images, tmp_path):
    log_path = tmp_path / "plain.log"
    res = boot(images / "out" / "plain.iso", expect=["No bootable option or device was found"],
               firmware="uefi-secure", media="cdrom", timeout=120, log_path=log_path)
    log = console_text(log_path.read_bytes())
    assert res.ok, f"{res.exit_reason}\n{log[-3000:]}"
    assert "DVD-ROM" in log and "Access Denied" in log
    assert MARKER not in log and "Welcome to GRUB" not in log


@pytest.mark.parametrize("extra,message", [
    ('[base]\narch = "arm64"\n', "boot.secure_boot: is supported for amd64 only"),
    ('system = "tinycore"\n[template]\niso = "tc.iso"\n', "boot.secure_boot: is for the Debian live system"),
])
def test_secure_boot_where_it_cannot_be_is_one_line_and_exit_30(tmp_path, extra, message):
    text = "[boot]\nsecure_boot = true\n"
    if extra.startswith("system"):
        text = extra.replace("[template]", text + "[template]")
    else:
        text = 'system = "debian"\n' + extra + text
    (tmp_path / "c.toml").write_text(text)
    out = pebuilder("build", tmp_path / "c.toml", check=False)
    assert out.returncode == 30, out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
