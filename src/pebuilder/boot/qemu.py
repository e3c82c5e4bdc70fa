"""Boot an image under QEMU and watch its serial console for expected text.

This is how a user (and every test) proves an image boots: software emulation, no network unless
asked, the console captured to a log, and the moment each expected text appeared.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from pebuilder import arch as archs
from pebuilder.errors import Exit, PebuilderError
from pebuilder.runner import require

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][0-9A-Za-z]|\r")


def console_text(raw: bytes) -> str:
    """The serial log as a person reads it: colour codes and carriage returns removed."""
    return ANSI.sub("", raw.decode(errors="replace"))


@dataclass
class BootResult:
    ok: bool
    seen: dict[str, float] = field(default_factory=dict)  # text -> seconds after start
    missing: list[str] = field(default_factory=list)
    log_path: Path | None = None
    seconds: float = 0.0
    exit_reason: str = ""

    def tail(self, lines: int = 25) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        text = console_text(self.log_path.read_bytes())
        return "\n".join(text.splitlines()[-lines:])


FIRMWARES = ("bios", "uefi", "uefi-secure")


def firmware_of(a: archs.Arch, firmware: str) -> archs.Firmware | None:
    """bios: none; uefi: the arch's firmware; uefi-secure: one with Microsoft's keys enrolled, which
    starts only signed loaders (what a Secure Boot machine does)."""
    if firmware not in FIRMWARES:
        raise PebuilderError(f"unknown firmware {firmware!r}; use one of {', '.join(FIRMWARES)}", Exit.USAGE)
    if firmware == "uefi-secure":
        if a.secure_boot_firmware is None:
            raise PebuilderError(f"no Secure Boot firmware with enrolled keys is known for {a}", Exit.USAGE)
        return a.secure_boot_firmware
    return a.uefi_firmware if firmware == "uefi" else None


def qemu_command(image: Path, *, firmware: str, media: str, arch: str, memory: int, net: bool,
                 sock: Path, vars_copy: Path | None, drive_if: str = "ide", writable: bool = False,
                 nic: str = "", disks: list[Path] | None = None, extra: list[str] | None = None) -> list[str]:
    a = archs.parse(arch)
    if firmware == "bios" and not a.bios:
        raise PebuilderError(f"{a} has no BIOS; boot it with --firmware uefi", Exit.USAGE)
    machine = (a.qemu_machine_bios if firmware == "bios" else a.qemu_machine_uefi) or a.qemu_machine_uefi
    fw = firmware_of(a, firmware)
    if fw is not None and fw.secure:
        machine += ",smm=on"  # a Secure Boot build needs SMM: say so rather than rely on QEMU's "auto"
    argv = [require(a.qemu), "-machine", machine, "-accel", "tcg"]
    if a.qemu_cpu:
        argv += ["-cpu", a.qemu_cpu]
    # The serial port is a socket pebuilder reads (into the log) and writes (for --send steps).
    argv += ["-m", str(memory), "-smp", "1", "-display", "none", "-monitor", "none",
             "-chardev", f"socket,id=ser0,path={sock},server=on,wait=on",
             "-serial", "chardev:ser0", "-no-reboot"]
    if firmware != "bios":
        if fw is None or not os.path.exists(fw.code):
            pkg = fw.package if fw else "a UEFI firmware package"
            raise PebuilderError(f"UEFI firmware for {a} is missing ({fw.code if fw else 'none known'}); install it "
                                 f"with: apt-get install {pkg}", Exit.TOOL_MISSING)
        assert vars_copy is not None
        if fw.secure:
            argv += ["-global", "driver=cfi.pflash01,property=secure,value=on"]
        argv += ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={fw.code}",
                 "-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}"]
    if media == "network":
        # iPXE from QEMU's option ROM gets DHCP and TFTP from QEMU itself: `image` is the folder served.
        argv += ["-boot", "n"]
        net_opts = f"user,restrict=on,model=virtio-net-pci,tftp={image},bootfile=boot.ipxe"
        argv += ["-nic", net_opts + (f",{nic}" if nic else "")]
        for d in disks or []:
            argv += ["-drive", f"file={d},format={_format(d)},if=virtio" + ("" if writable else ",snapshot=on")]
        return argv + (extra or [])
    if media == "cdrom":
        if not a.bios:
            argv += ["-drive", f"file={image},format=raw,if=none,id=cd0,media=cdrom,readonly=on",
                     "-device", "virtio-scsi-pci", "-device", "scsi-cd,drive=cd0"]
        else:
            argv += ["-drive", f"file={image},format=raw,media=cdrom,readonly=on"]
    else:
        iface = "virtio" if not a.bios else drive_if
        argv += ["-drive", f"file={image},format={_format(image)},if={iface}" + ("" if writable else ",snapshot=on")]
    for d in disks or []:
        argv += ["-drive", f"file={d},format={_format(d)},if=virtio" + ("" if writable else ",snapshot=on")]
    if net or nic:
        argv += ["-nic", "user,restrict=on" + (f",{nic}" if nic else "")]
    else:
        argv += ["-nic", "none"]
    return argv + (extra or [])


def _format(image: Path) -> str:
    return {".qcow2": "qcow2", ".vmdk": "vmdk"}.get(image.suffix, "raw")


def boot(image: Path, *, expect: list[str], firmware: str = "bios", media: str = "cdrom",
         arch: str = "x86_64", timeout: float = 180, memory: int = 512, net: bool = False,
         log_path: Path | None = None, drive_if: str = "ide", extra: list[str] | None = None,
         on_seen=None, script: list[tuple[str, str]] | None = None, writable: bool = False, nic: str = "",
         disks: list[Path] | None = None, done_when=None) -> BootResult:
    """Boot and wait until every `expect` text appeared (any order) and the `script` ran through:
    ("expect", text) steps wait for text after the previous step, ("send", text) steps type it."""
    if not image.exists():
        raise PebuilderError(f"image {image} does not exist", Exit.USAGE)
    with tempfile.TemporaryDirectory(prefix="pebuilder-boot-") as tmp:
        log = log_path or Path(tmp) / "serial.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_bytes(b"")
        log = log.resolve()
        vars_copy = None
        if firmware != "bios":
            vars_copy = Path(tmp) / "vars.fd"
            fw = firmware_of(archs.parse(arch), firmware)
            if fw and os.path.exists(fw.vars):
                shutil.copyfile(fw.vars, vars_copy)
        sock_path = Path(tmp) / "console.sock"  # short: unix socket paths are limited to 108 bytes
        argv = qemu_command(image, firmware=firmware, media=media, arch=arch, memory=memory, net=net,
                            sock=sock_path, vars_copy=vars_copy, drive_if=drive_if, writable=writable, nic=nic,
                            disks=disks, extra=extra)
        result = BootResult(ok=False, log_path=log)
        start = time.monotonic()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        pending = list(dict.fromkeys(expect))
        steps = list(script or [])
        raw = b""
        step_from = 0  # script expectations match only output that came after the previous step
        conn = None
        settle_until: float | None = None
        try:
            with open(log, "ab") as logf:
                while True:
                    if conn is None and sock_path.exists():
                        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                        try:
                            conn.connect(str(sock_path))
                        except OSError:
                            conn.close()
                            conn = None
                    if conn is not None and select.select([conn], [], [], 0.2)[0]:
                        chunk = conn.recv(65536)
                        if chunk:
                            raw += chunk
                            logf.write(chunk)
                            logf.flush()
                    elif conn is None:
                        time.sleep(0.05)
                    text = console_text(raw)
                    for want in list(pending):
                        if want in text:
                            result.seen[want] = time.monotonic() - start
                            pending.remove(want)
                            if on_seen:
                                on_seen(want, result.seen[want])
                    while steps and conn is not None:
                        kind, value = steps[0]
                        if kind == "send":
                            conn.sendall(value.encode())
                            steps.pop(0)
                            step_from = len(text)
                            continue
                        pos = text.find(value, step_from)
                        if pos < 0:
                            break
                        step_from = pos + len(value)
                        result.seen[value] = time.monotonic() - start
                        if on_seen:
                            on_seen(value, result.seen[value])
                        steps.pop(0)
                    if not pending and not steps and (done_when is None or done_when()):
                        # The line holding the last marker may still be arriving; callers read the whole
                        # line from the log, so wait (briefly) for its end.
                        if text.endswith("\n") or settle_until is not None and time.monotonic() > settle_until:
                            result.ok = True
                            result.exit_reason = "all expected text seen"
                            break
                        if settle_until is None:
                            settle_until = time.monotonic() + 2.0
                    if proc.poll() is not None:
                        err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
                        result.exit_reason = f"qemu exited with {proc.returncode}" + (f": {err}" if err else "")
                        break
                    if time.monotonic() - start > timeout:
                        result.exit_reason = f"timed out after {timeout:.0f} s"
                        break
        finally:
            if conn is not None:
                conn.close()
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        pending += [v for k, v in steps if k == "expect"]
        result.seconds = time.monotonic() - start
        result.missing = pending
        if log_path is None:
            # Keep the log readable after the temporary folder goes.
            kept = Path(tempfile.gettempdir()) / f"pebuilder-serial-{os.getpid()}-{int(start)}.log"
            shutil.copyfile(log, kept)
            result.log_path = kept
        return result
