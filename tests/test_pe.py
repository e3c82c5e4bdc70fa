"""PE and netinstall: network boot through iPXE, provisioning a disk from an image URL (with a dropped
connection resumed) or from the live system itself, and refusing an image whose sha256 is wrong.
The PE, the disks it installs and test_debian_live's disk all carry the label PBLIVE: each boot
must find its own medium among the others (by its id), and the PE must provision, not boot, them.

Guests reach loopback servers only through QEMU's guestfwd; every result is read from the serial
console or from the disk image's bytes.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from shared import built, pebuilder
from test_debian_live import MARKER, SDE
from test_debian_live import default as default  # noqa: F401 - the README default ISO, shared
from test_debian_live import disk as disk  # noqa: F401 - the tiny disk image, shared

from pebuilder.boot.qemu import boot, console_text

pytestmark = pytest.mark.network

PE_TOML = """
system = "debian"
[extensions]
dirs = ["ext"]
onboot = ["pbmark"]
[boot]
serial = true
timeout = 1
hostname = "pbpe"
[provision]
install = "self"
then = "poweroff"
[output.iso]
path = "out/pe.iso"
volume_id = "PBLIVE"
[output.netboot]
dir = "out/netboot-fetch"
mode = "fetch"
url = "http://10.0.2.100/"
"""


class Files(BaseHTTPRequestHandler):
    """Serves a folder with Range support; can drop the connection once, in the middle of a file."""

    root: Path
    drop_after: dict[str, int] = {}
    requests: list[str] = []
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_HEAD(self) -> None:  # noqa: N802
        self.serve(False)

    def do_GET(self) -> None:  # noqa: N802
        self.serve(True)

    def serve(self, body: bool) -> None:
        name = self.path.lstrip("/")
        path = self.root / name
        self.requests.append(f"{self.command} {self.path} {self.headers.get('Range', '')}")
        if not path.is_file():
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        data = path.read_bytes()
        start, end = 0, len(data) - 1
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if m:
            start = int(m.group(1))
            end = min(int(m.group(2)), end) if m.group(2) else end
        part = data[start:end + 1]
        self.send_response(HTTPStatus.PARTIAL_CONTENT if m else HTTPStatus.OK)
        self.send_header("Content-Length", str(len(part)))
        if m:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.end_headers()
        if not body:
            return
        cut = None
        if m and start <= self.drop_after.get(name, -1) <= end:  # only downloads that can resume
            cut = self.drop_after.pop(name)
        try:
            if cut is not None:
                self.wfile.write(part[: cut - start])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
                return
            self.wfile.write(part)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


@pytest.fixture
def files_server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = type("H", (Files,), {"root": root, "drop_after": {}, "requests": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    nic = f"guestfwd=tcp:10.0.2.100:80-cmd:busybox nc 127.0.0.1 {server.server_address[1]}"
    yield root, handler, nic
    server.shutdown()
    server.server_close()


def _log(path: Path) -> str:
    return console_text(path.read_bytes()) if path.exists() else ""


def _direct(iso_tree: Path, codes: str) -> list[str]:
    """Boot the live system's kernel directly with extra boot codes (the medium is still the ISO)."""
    ident = (iso_tree / "os/pebuilder.id").read_text().strip()
    return ["-kernel", str(iso_tree / "boot/vmlinuz"), "-initrd", str(iso_tree / "boot/initrd.img"),
            "-append", f"console=ttyS0,115200 pb.id={ident} {codes}"]


def _ids(log: str) -> list[str]:
    """The ids of the media the initramfs booted from, as it said them."""
    return re.findall(r"pebuilder: medium \S+ \(LABEL=\w+\), (?:writable|read-only), id ([0-9a-f]+)", log)


@pytest.fixture(scope="module")
def pe(tmp_path_factory) -> Path:
    def make(folder: Path) -> None:
        from shared import make_extension

        ext = folder / "ext"
        ext.mkdir()
        make_extension(ext, "pbmark", {"usr/share/pbmark/hello.txt": "hello from pbmark\n"})
        (folder / "pe.toml").write_text(PE_TOML)
        pebuilder("build", folder / "pe.toml", env=SDE)
        pebuilder("build", folder / "pe.toml", "--set", 'output.netboot.mode="embed"', "--set",
                  'output.netboot.dir="out/netboot-embed"', env=SDE)

    return built(tmp_path_factory, "pe", make)


def test_the_pe_gets_its_grow_tools_without_the_package_manager(pe):
    """grow = true pulls in sfdisk and resize2fs; their packaging-only dependencies (readline-common's
    "dpkg | install-info") are counted as met in a tiny base, so dpkg and tar stay out."""
    text = (pe / "build/.pebuilder/packages.lock.json").read_text()
    names = set(re.findall(r'"name": "([^"]+)"', text))
    assert {"fdisk", "e2fsprogs", "libext2fs2"} <= names, sorted(names)
    assert not names & {"dpkg", "tar", "install-info", "debconf"}, sorted(names)
    gconv = pe / "build/system/usr/lib/x86_64-linux-gnu/gconv"
    assert (gconv / "UTF-16.so").is_file() and not (gconv / "IBM1390.so").exists()


def test_netboot_folder_is_complete_and_checked(pe):
    for mode in ("fetch", "embed"):
        nb = pe / "out" / f"netboot-{mode}"
        sums = dict(reversed(line.split("  ", 1)) for line in (nb / "SHA256SUMS").read_text().splitlines())
        assert {"vmlinuz", "initrd.img", "boot.ipxe", "grub.cfg", "cmdline.txt"} <= set(sums)
        for name, digest in sums.items():
            assert hashlib.sha256((nb / name).read_bytes()).hexdigest() == digest, name
        assert (nb / "boot.ipxe").read_text().startswith("#!ipxe\n")
        assert "menuentry 'pebuilder PE' --id pebuilder-pe" in (nb / "grub.cfg").read_text()
    assert "os/core.sqfs" in (pe / "out/netboot-fetch/SHA256SUMS").read_text()
    assert "os/core.sqfs" not in (pe / "out/netboot-embed/SHA256SUMS").read_text()
    fetch_size = (pe / "out/netboot-fetch/initrd.img").stat().st_size
    assert (pe / "out/netboot-embed/initrd.img").stat().st_size > fetch_size + (4 << 20)


@pytest.mark.boot
def test_network_boot_through_ipxe_fetches_the_system(pe, tmp_path):
    from pebuilder.net.serve import make_server

    server = make_server(pe / "out" / "netboot-fetch", "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        res = boot(pe / "out" / "netboot-fetch", expect=[MARKER], media="network", timeout=200,
                   log_path=tmp_path / "serial.log",
                   nic=f"guestfwd=tcp:10.0.2.100:80-cmd:busybox nc 127.0.0.1 {server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
    log = _log(tmp_path / "serial.log")
    assert res.ok, log[-3000:]
    assert "netboot: the system came from http://10.0.2.100" in log
    assert "pebuilder: extension pbmark" in log


@pytest.mark.boot
def test_embedded_netboot_initramfs_carries_the_system(pe, tmp_path):
    nb = pe / "out" / "netboot-embed"
    extra = ["-kernel", str(nb / "vmlinuz"), "-initrd", str(nb / "initrd.img"), "-append",
             (nb / "cmdline.txt").read_text().strip()]
    res = boot(pe / "out" / "pe.iso", expect=[MARKER, "pebuilder: extension pbmark"], media="cdrom", timeout=200,
               log_path=tmp_path / "serial.log", extra=extra, memory=768)
    log = _log(tmp_path / "serial.log")
    assert res.ok, log[-3000:]
    assert "netboot: the system came with the initramfs" in log


@pytest.fixture(scope="module")
def installed(pe, disk, tmp_path_factory) -> tuple[Path, str]:  # noqa: F811
    """The PE's install = "self" onto a 1 GiB disk that held another build's system with the PE's own
    label (test_debian_live's disk): the raw disk, and the PE's console."""
    def make(folder: Path) -> None:
        target = folder / "installed.raw"
        subprocess.run(["cp", "--sparse=always", str(disk), str(target)], check=True)
        os.truncate(target, 1 << 30)
        # -boot d: the disk is bootable, and the firmware would start it before the CD
        res = boot(pe / "out" / "pe.iso", expect=["provisioning done", "powering off"], media="cdrom", timeout=300,
                   log_path=folder / "pe.log", disks=[target], writable=True, extra=["-boot", "d"])
        assert res.ok, _log(folder / "pe.log")[-3000:]

    folder = built(tmp_path_factory, "pe-installed", make)
    return folder / "installed.raw", _log(folder / "pe.log")


@pytest.mark.boot
def test_install_self_over_a_pebuilder_disk_then_again_then_the_disk_boots_alone(pe, installed, tmp_path):
    installed_raw, pe_log = installed
    iso_id = (pe / "build/image/os/pebuilder.id").read_text().strip()
    # The disk already held a system labelled PBLIVE (and came first): the PE booted from its own CD.
    assert _ids(pe_log) == [iso_id] and "pebuilder: medium /dev/sr0 (LABEL=PBLIVE), read-only" in pe_log
    assert "provisioning /dev/vda from /os/install.img.gz" in pe_log, pe_log[-3000:]
    # The install image is as small as its content; grow=yes (the default) gave its root the whole disk.
    assert re.search(r"grew /dev/vda3 to (\d+) MiB", pe_log), pe_log[-3000:]
    table = json.loads(subprocess.run(["sfdisk", "--json", str(installed_raw)], capture_output=True, text=True,
                                      check=True).stdout)["partitiontable"]
    root = max(table["partitions"], key=lambda p: p["start"])
    assert table["label"] == "gpt" and root["start"] + root["size"] == table["lastlba"] + 1, table
    with open(installed_raw, "rb") as f:
        f.seek(root["start"] * 512 + 1024)
        sb = f.read(64)
    blocks, log_block = struct.unpack_from("<I", sb, 4)[0], struct.unpack_from("<I", sb, 24)[0]
    assert sb[56:58] == b"\x53\xef" and blocks * (1024 << log_block) > (root["size"] * 512) - (4 << 20)
    fsck = subprocess.run(["e2fsck", "-fn", f"{installed_raw}?offset={root['start'] * 512}"], capture_output=True,
                          text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    # The case: the PE booted again on the machine it installed provisions it again, rather than
    # running the installed system (same label, same core) under its own kernel.
    again = tmp_path / "again.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(installed_raw), "-F", "raw", str(again)],
                   check=True)
    res = boot(pe / "out" / "pe.iso", expect=["provisioning done", "powering off"], media="cdrom", timeout=300,
               log_path=tmp_path / "again.log", disks=[again], writable=True, extra=["-boot", "d"])
    log = _log(tmp_path / "again.log")
    assert res.ok, log[-3000:]
    assert _ids(log) == [iso_id] and "provisioning /dev/vda from /os/install.img.gz" in log
    res = boot(again, expect=[MARKER, "pebuilder: extension pbmark"], media="disk", drive_if="virtio", timeout=200,
               log_path=tmp_path / "installed.log")
    log = _log(tmp_path / "installed.log")
    assert res.ok, log[-3000:]
    assert "LABEL=PBLIVE), writable" in log and "host pbpe" in log
    # The installed disk holds the same system as the PE's CD, under another identity.
    assert len(_ids(log)) == 1 and _ids(log)[0] != iso_id


def _boot_second(first: Path, second: Path, log: Path):
    """Two disks: `first` is the first virtio disk Linux sees (vda), the firmware boots `second` (vdb: a
    later PCI slot, and the first in the boot order)."""
    return boot(first, expect=[MARKER], media="disk", drive_if="virtio", firmware="bios", timeout=200, log_path=log,
                extra=["-drive", f"file={second},format=raw,if=none,id=pbsecond,snapshot=on",
                       "-device", "virtio-blk-pci,drive=pbsecond,bootindex=0,addr=0x1f"])


@pytest.mark.boot
def test_two_pebuilder_disks_with_one_label_each_boots_its_own(installed, disk, tmp_path):  # noqa: F811
    """test_debian_live's disk and a disk the PE installed, both labelled PBLIVE: whichever the firmware
    boots finds its own system, though the other is the first disk Linux sees."""
    installed_raw, _ = installed
    ids = set()
    for name, booted, other, host in (("installed", installed_raw, disk, "pbpe"),
                                      ("disk", disk, installed_raw, "pbdisk")):
        res = _boot_second(other, booted, tmp_path / f"{name}.log")
        log = _log(tmp_path / f"{name}.log")
        assert res.ok, log[-3000:]
        assert "pebuilder: medium /dev/vdb3 (LABEL=PBLIVE), writable" in log, log[-3000:]
        assert re.search(rf"pebuilder: system is up \(.*host {host}\)", log), log[-3000:]
        ids.update(_ids(log))
    assert len(ids) == 2


@pytest.mark.boot
def test_provision_by_image_resumes_a_dropped_connection(pe, disk, files_server, tmp_path):  # noqa: F811
    root, handler, nic = files_server
    with open(disk, "rb") as src, gzip.open(root / "live.raw.gz", "wb", compresslevel=1) as dst:
        shutil.copyfileobj(src, dst)
    digest = hashlib.sha256((root / "live.raw.gz").read_bytes()).hexdigest()
    handler.drop_after["live.raw.gz"] = (root / "live.raw.gz").stat().st_size // 2
    (root / "prov.conf").write_text(f"image=http://10.0.2.100/live.raw.gz\nsha256={digest}\ntarget=auto\n"
                                    "then=poweroff\nscript=echo provisioned-by-pebuilder > /target/data/note\n")
    target = tmp_path / "target.raw"
    with open(target, "wb") as f:
        f.truncate(1 << 30)
    # The PE (with grow's tools) is told what to do by pb.provision=URL, which overrides its baked settings.
    res = boot(pe / "out" / "pe.iso", expect=["provisioning done", "powering off"], media="cdrom",
               timeout=300, log_path=tmp_path / "pe.log", disks=[target], writable=True, nic=nic,
               extra=_direct(pe / "build" / "image", "pb.media=LABEL=PBLIVE pb.provision=http://10.0.2.100/prov.conf"))
    log = _log(tmp_path / "pe.log")
    assert res.ok, log[-3000:]
    assert "connection to http://10.0.2.100/live.raw.gz lost at byte" in log and "resuming" in log
    assert "sha256 verified" in log
    grew = re.search(r"grew /dev/vda\d to (\d+) MiB", log)
    assert grew and int(grew.group(1)) > 900, log[-3000:]  # a 256 MiB image on a 1 GiB disk
    assert sum(" bytes=" in r for r in handler.requests) >= 2  # the chunk was asked for again
    res = boot(target, expect=[MARKER], media="disk", drive_if="virtio", timeout=200, firmware="bios",
               log_path=tmp_path / "written.log", script=[("expect", "Please press Enter"), ("send", "\n"),
                                                          ("send", "cat /data/note\n"),
                                                          ("expect", "provisioned-by-pebuilder")])
    assert res.ok, _log(tmp_path / "written.log")[-3000:]
    assert "host pbdisk" in _log(tmp_path / "written.log")


@pytest.mark.boot
def test_provision_with_a_wrong_sha256_wipes_and_says_so(default, files_server, tmp_path):  # noqa: F811
    root, _, nic = files_server
    (root / "img.raw").write_bytes(os.urandom(3 << 20))
    (root / "prov.conf").write_text("image=http://10.0.2.100/img.raw\nsha256=" + "0" * 64 + "\ntarget=/dev/vda\n"
                                    "then=shell\n")
    target = tmp_path / "target.raw"
    with open(target, "wb") as f:
        f.write(os.urandom(2 << 20))
        f.truncate(256 << 20)
    iso_tree = default / "work" / "image"
    res = boot(default / "pebuilder-default.iso", expect=["nothing half-written can boot"], media="cdrom", timeout=240,
               log_path=tmp_path / "pe.log", disks=[target], writable=True, nic=nic,
               extra=_direct(iso_tree, "pb.media=LABEL=PEBUILDER pb.provision=http://10.0.2.100/prov.conf"))
    log = _log(tmp_path / "pe.log")
    assert res.ok, log[-3000:]
    assert "http://10.0.2.100/img.raw: sha256" in log and "does not match the expected" in log
    assert "first MiB of /dev/vda was wiped" in log
    assert target.read_bytes()[: 1 << 20] == bytes(1 << 20)


@pytest.mark.boot
@pytest.mark.needs_fixtures
def test_tinycore_remaster_netboots_with_its_extensions(template_iso, tmp_path):
    """A Tiny Core remaster as a RAM boot: iPXE over QEMU's TFTP, extensions built into the initrd and
    mounted by Tiny Core's own tce-setup (Debian's kernel: the fixture kernel has no squashfs module)."""
    from conftest import EXT_MARKER, make_marker_extension

    exts = tmp_path / "exts"
    exts.mkdir()
    make_marker_extension(exts)
    (tmp_path / "tc.toml").write_text(f"""
[template]
iso = "{template_iso}"
[extensions]
dirs = ["exts"]
onboot = ["pbtest"]
[kernel]
package = "linux-image-amd64"
[boot]
serial = true
timeout = 1
hostname = "pbnet"
[output.netboot]
dir = "netboot"
""")
    pebuilder("build", tmp_path / "tc.toml", env=SDE)
    nb = tmp_path / "netboot"
    assert "cde" not in (nb / "cmdline.txt").read_text().split()
    res = boot(nb, expect=["Setting hostname to pbnet", EXT_MARKER], media="network", timeout=200,
               log_path=tmp_path / "serial.log")
    assert res.ok, _log(tmp_path / "serial.log")[-3000:]


@pytest.mark.needs_fixtures
def test_tinycore_pe_provisions_from_bootlocal(template_iso, tmp_path):
    """The seed's mechanism: the PE step runs from bootlocal.sh (the script is shared with Debian's)."""
    from pebuilder.formats import cpio, iso

    sha = "ab" * 32
    (tmp_path / "tc.toml").write_text(f"""
[template]
iso = "{template_iso}"
[provision]
image = "http://10.0.2.100/vm.raw.gz"
sha256 = "{sha}"
target = "/dev/sda"
then = "poweroff"
[output.iso]
path = "pe.iso"
""")
    pebuilder("build", tmp_path / "tc.toml")
    initrd = iso.extract_files(tmp_path / "pe.iso", ["boot/corepure64.gz"], tmp_path / "x")["boot/corepure64.gz"]
    entries = {e.name: e for e in cpio.list_entries(initrd)}
    assert entries["usr/local/sbin/pb-provision"].mode & 0o777 == 0o755
    assert entries["etc/pebuilder/provision.conf"].mode & 0o777 == 0o600
    conf = cpio.read_member(initrd, "etc/pebuilder/provision.conf").decode()
    assert f"image=http://10.0.2.100/vm.raw.gz\nsha256={sha}\ntarget=/dev/sda\nthen=poweroff\n" in conf
    assert b"/usr/local/sbin/pb-provision &" in cpio.read_member(initrd, "opt/bootlocal.sh")
    bad = (tmp_path / "tc.toml").read_text().replace('image = "http://10.0.2.100/vm.raw.gz"', 'install = "self"')
    (tmp_path / "bad.toml").write_text(bad.replace(f'sha256 = "{sha}"\n', ""))
    proc = pebuilder("build", tmp_path / "bad.toml", check=False)
    assert proc.returncode == 30 and "provision.install" in proc.stderr
