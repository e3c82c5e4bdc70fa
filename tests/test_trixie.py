"""Debian 13 "trixie" (current stable) beside the default bookworm: what changed and how it is met.

Trixie's 6.12 kernel ships every module as `.ko.xz` (copied decompressed into images), its
packages ship only merged-/usr paths (busybox at /usr/bin, modules under /usr/lib/modules), the
64-bit time_t renames (libssl3t64, ...), and sysusers.d dependencies on systemd that a tiny base
meets itself. One boot: the tiny ISO comes up on 6.12 and live-loads extensions built from trixie
(jq, and openssl on libssl3t64). arm64 and minbase are checked at file level; forky (Debian 14)
builds or fails with one line naming base.suite.
"""

from __future__ import annotations

import gzip
import json
import lzma
import re
import subprocess
import threading
from pathlib import Path

import pytest
from shared import built, pebuilder, shell_script
from test_debian_live import MARKER, SDE

from pebuilder.boot.qemu import boot, console_text
from pebuilder.customise import modules
from pebuilder.debian import kernel_pkg, sources
from pebuilder.formats import iso
from pebuilder.fsroot import FsRoot
from pebuilder.net.serve import make_server

REPO = "trixie/x86_64/tcz"
TRIXIE = """
system = "debian"
[base]
suite = "trixie"
[boot]
serial = true
timeout = 1
hostname = "pbtrixie"
[extensions]
mirrors = ["http://10.0.2.100/"]
[output.iso]
path = "out/trixie.iso"
"""
ARM64 = TRIXIE.replace('suite = "trixie"', 'suite = "trixie"\narch = "arm64"').replace("trixie.iso", "arm64.iso")
MINBASE = """
system = "debian"
[base]
suite = "trixie"
variant = "minbase"
packages = ["openssl"]
"""


@pytest.fixture(scope="module")
def trixie(tmp_path_factory) -> Path:
    """The tiny trixie ISO, and a served repository of trixie extensions built against its base."""
    def make(folder: Path) -> None:
        (folder / "trixie.toml").write_text(TRIXIE)
        pebuilder("build", folder / "trixie.toml", env=SDE)
        pebuilder("ext", "build", "jq", "openssl", "--base", folder / "trixie.toml", "--out", folder / "repo", env=SDE)
        pebuilder("mirror", "index", folder / "repo" / REPO)

    return built(tmp_path_factory, "trixie-tiny", make)


@pytest.fixture(scope="module")
def arm64(tmp_path_factory) -> Path:
    def make(folder: Path) -> None:
        (folder / "arm64.toml").write_text(ARM64)
        pebuilder("build", folder / "arm64.toml", env=SDE)

    return built(tmp_path_factory, "trixie-arm64-tiny", make)


def _squashfs_listing(image: Path, tmp: Path) -> list[str]:
    core = iso.extract_files(image, ["os/core.sqfs"], tmp)["os/core.sqfs"]
    out = subprocess.run(["unsquashfs", "-lln", str(core)], capture_output=True, text=True, check=True).stdout
    return [ln for ln in out.splitlines() if ln.strip()]


def _initrd_files(image: Path, tmp: Path) -> dict[str, bytes]:
    """The initramfs's regular files (xz cpio, newc) by path."""
    raw = iso.extract_files(image, ["boot/initrd.img"], tmp)["boot/initrd.img"].read_bytes()
    data = lzma.decompress(raw)
    files: dict[str, bytes] = {}
    pos = 0
    while data[pos:pos + 6] == b"070701":
        head = data[pos:pos + 110]
        mode, size, namesize = int(head[14:22], 16), int(head[54:62], 16), int(head[94:102], 16)
        name = data[pos + 110:pos + 110 + namesize - 1].decode()
        body = (pos + 110 + namesize + 3) & ~3
        if name == "TRAILER!!!":
            break
        if mode & 0o170000 == 0o100000:
            files[name] = data[body:body + size]
        pos = (body + size + 3) & ~3
    return files


@pytest.mark.network
def test_trixie_tiny_medium_has_plain_modules_and_a_merged_usr(trixie, tmp_path):
    image = trixie / "out" / "trixie.iso"
    kernel = json.loads((trixie / "build" / ".pebuilder" / "kernel.json").read_text())
    assert kernel["kver"].startswith("6.12."), kernel
    lines = _squashfs_listing(image, tmp_path)
    kos = [ln for ln in lines if ".ko" in ln]
    assert kos and all(ln.endswith(".ko") for ln in kos), [ln for ln in kos if not ln.endswith(".ko")][:3]
    assert any(ln.endswith("squashfs-root/bin -> usr/bin") for ln in lines)
    assert any(ln.endswith("squashfs-root/usr/bin/busybox") for ln in lines)
    files = _initrd_files(image, tmp_path / "i")
    listed = files["etc/pebuilder/modules"].decode().split()
    assert listed and all(m.endswith(".ko") for m in listed), listed[:3]
    ko = files[f"lib/modules/{kernel['kver']}/{listed[0]}"]
    assert ko[:4] == b"\x7fELF" and b"~Module signature appended~\n" in ko[-64:]
    assert (trixie / "repo" / REPO / "jq.tcz.dep").read_text().split() == ["libc6.tcz", "libjq1.tcz"]
    assert "libssl3t64.tcz" in (trixie / "repo" / REPO / "openssl.tcz.dep").read_text().split()


@pytest.mark.network
@pytest.mark.boot
def test_trixie_iso_boots_on_6_12_and_live_loads_trixie_extensions(trixie, tmp_path):
    server = make_server(trixie / "repo", "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    nic = f"guestfwd=tcp:10.0.2.100:80-cmd:busybox nc 127.0.0.1 {server.server_address[1]}"
    script = shell_script(
        "cat /etc/pebuilder/tcerepo",
        "grep -c . /proc/modules | sed 's/^/modules-loaded-/'",
        "find /lib/modules -name '*.ko.*' | wc -l | sed 's/^/compressed-/'",
        "tce-load -wi jq; echo rc=$?",
        "echo '{\"suite\":\"trixie\"}' | jq -M .suite | sed 's/^/jq-says-/'",
        "tce-load -wi openssl; echo ssl-rc=$?",
        "openssl version | sed 's/^/ssl-says-/'")
    log_path = tmp_path / "serial.log"
    try:
        res = boot(trixie / "out" / "trixie.iso", expect=[MARKER], script=script, firmware="bios", media="cdrom",
                   timeout=240, nic=nic, log_path=log_path)
    finally:
        server.shutdown()
        server.server_close()
    log = console_text(log_path.read_bytes())
    assert res.ok, f"{res.exit_reason}, missing {res.missing}\n{log[-3000:]}"
    up = log.split(MARKER, 1)[1].splitlines()[0]
    assert re.search(r"kernel 6\.12\.\d+\S*-amd64", up) and "Debian trixie" in up, up
    assert res.seen[MARKER] < 90, res.seen
    assert REPO in log
    loaded = re.search(r"modules-loaded-(\d+)", log)
    assert loaded and int(loaded.group(1)) >= 10, "the initramfs loaded its (decompressed) modules"
    assert "compressed-0" in log
    assert "rc=0" in log and 'jq-says-"trixie"' in log
    assert "ssl-rc=0" in log and re.search(r"ssl-says-OpenSSL 3\.\d", log)


@pytest.mark.network
def test_trixie_arm64_tiny_is_arm64_with_loadable_modules(arm64, tmp_path):
    image = arm64 / "out" / "arm64.iso"
    kernel = json.loads((arm64 / "build" / ".pebuilder" / "kernel.json").read_text())
    assert kernel["kver"].startswith("6.12.") and kernel["kver"].endswith("-arm64"), kernel
    vmlinuz = iso.extract_files(image, ["boot/vmlinuz"], tmp_path)["boot/vmlinuz"].read_bytes()
    assert gzip.decompress(vmlinuz)[0x38:0x3C] == b"ARM\x64"
    files = _initrd_files(image, tmp_path / "i")
    listed = files["etc/pebuilder/modules"].decode().split()
    assert listed and all(m.endswith(".ko") for m in listed)
    ko = files[f"lib/modules/{kernel['kver']}/{listed[0]}"]
    assert ko[:4] == b"\x7fELF" and int.from_bytes(ko[18:20], "little") == 183, "an aarch64 ELF module"
    kos = [ln for ln in _squashfs_listing(image, tmp_path / "s") if ".ko" in ln]
    assert kos and all(ln.endswith(".ko") for ln in kos)
    assert image.stat().st_size < 35_000_000


@pytest.mark.network
def test_trixie_minbase_from_a_bookworm_host(tmp_path_factory):
    """mmdebstrap (the host's) builds a trixie minbase; dpkg inside answers; an extension is built
    against its dpkg status (libc6 is in the base, so jq's extensions stop at its own libraries)."""
    def make(folder: Path) -> None:
        (folder / "m.toml").write_text(MINBASE)
        pebuilder("ext", "build", "jq", "--base", folder / "m.toml", "--out", folder / "repo")

    folder = built(tmp_path_factory, "trixie-minbase", make)
    root = folder / "build" / ".pebuilder" / "base"
    assert (root / "etc/debian_version").read_text().startswith("13.")
    assert (root / "bin").is_symlink() and (root / "bin").readlink() == Path("usr/bin")
    out = subprocess.run(["unshare", "--root", str(root), "/usr/bin/dpkg", "-s", "libssl3t64", "base-files"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("Status: install ok installed") == 2
    assert (folder / "repo" / REPO / "jq.tcz.dep").read_text().split() == ["libjq1.tcz"]
    assert not (folder / "repo" / REPO / "libc6.tcz").exists()


@pytest.mark.network
def test_trixie_tiny_meets_t64_and_sysusers_without_systemd():
    from pebuilder.arch import parse
    from pebuilder.debian import base, lock
    from pebuilder.net.cache import DownloadCache

    archive = lock.open_archive("trixie", parse("amd64"), None, DownloadCache())
    wanted = ["openssh-server"]
    names = {p.name for p in lock.resolve_closure(archive, wanted, base.tiny_have(archive, {}, wanted))}
    assert {"openssh-server", "libssl3t64", "libc6"} <= names
    assert "systemd" not in names and "libssl3" not in names, sorted(names)


@pytest.mark.network
def test_forky_builds_or_fails_naming_base_suite(tmp_path):
    """Debian 14 is testing: a mirror that follows it builds it (split kernel packages included); one
    that stopped renewing its index (Valid-Until) is named in one line, with what to do."""
    proc = pebuilder("ext", "build", "jq", "--suite", "forky", "--out", tmp_path / "repo", cwd=tmp_path, check=False)
    if proc.returncode == 0:
        assert (tmp_path / "repo" / "forky" / "x86_64" / "tcz" / "jq.tcz").is_file()
        assert 'base.suite = "forky"' in proc.stderr and "not a release pebuilder is tested with" in proc.stderr
        return
    assert proc.returncode == 42, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("pebuilder: error:")]
    assert len(errors) == 1 and proc.stderr.strip() == errors[0], proc.stderr
    assert 'base.suite = "forky" (Debian 14 "forky", not released yet)' in errors[0]
    assert "base.suite = \"trixie\"" in errors[0] and "Traceback" not in proc.stderr


@pytest.mark.network
def test_unknown_suite_is_named(tmp_path):
    proc = pebuilder("ext", "build", "jq", "--suite", "trixy", "--out", tmp_path / "r", cwd=tmp_path, check=False,
                     env={"PEBUILDER_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 42, proc.stderr
    assert proc.stderr.startswith('pebuilder: error: base.suite = "trixy" (not a Debian release name pebuilder knows)')
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


# -- no network: the pieces -------------------------------------------------------------------------

def test_compressed_modules_are_copied_plain(tmp_path):
    body = b"\x7fELF" + bytes(range(256)) * 64 + b"~Module signature appended~\n"
    src = tmp_path / "a.ko.xz"
    src.write_bytes(lzma.compress(body, check=lzma.CHECK_CRC32))
    gz = tmp_path / "b.ko.gz"
    gz.write_bytes(gzip.compress(body))
    fs = FsRoot(tmp_path / "root")
    fs.mkdir(".", 0o755)
    assert modules.copy_module(fs, src, "lib/modules/k/kernel/a.ko.xz") == "lib/modules/k/kernel/a.ko"
    assert modules.copy_module(fs, gz, "lib/modules/k/kernel/b.ko.gz") == "lib/modules/k/kernel/b.ko"
    assert fs.read_bytes("lib/modules/k/kernel/a.ko") == body == fs.read_bytes("lib/modules/k/kernel/b.ko")
    assert not fs.exists("lib/modules/k/kernel/a.ko.xz")
    assert fs.meta.owner("lib/modules/k/kernel/a.ko", (0, 1, 1)) == (0o644, 0, 0)
    src.write_bytes(b"\xfd7zXZ\x00broken")
    with pytest.raises(Exception, match="damaged compressed kernel module") as err:
        modules.copy_module(fs, src, "lib/modules/k/kernel/a.ko.xz")
    assert getattr(err.value, "code", None) == 39


def test_split_kernel_packages_are_found_side_by_side(tmp_path):
    """forky's linux-binary-* (vmlinuz in /usr/lib/modules/<version>) + linux-modules-* (the modules)."""
    kver = "7.2.12+deb14-amd64"
    binary, mods = tmp_path / "binary", tmp_path / "modules"
    (binary / "usr/lib/modules" / kver).mkdir(parents=True)
    (binary / "usr/lib/modules" / kver / "vmlinuz").write_bytes(b"kernel")
    moddir = mods / "usr/lib/modules" / kver
    (moddir / "kernel/fs").mkdir(parents=True)
    (moddir / "kernel/fs/x.ko.xz").write_bytes(b"")
    (moddir / "modules.dep").write_text("kernel/fs/x.ko.xz:\n")
    kf = kernel_pkg.files([binary, mods], "linux-image-" + kver)
    assert kf.kver == kver and kf.vmlinuz == binary / "usr/lib/modules" / kver / "vmlinuz"
    assert kf.moddir == moddir
    assert kernel_pkg.is_part("linux-modules-" + kver) and kernel_pkg.is_part("linux-image-6.12.1-amd64")
    assert not kernel_pkg.is_part("linux-image-amd64")


def test_suite_descriptions():
    assert sources.describe("forky") == 'Debian 14 "forky", not released yet'
    assert sources.describe("trixie-security") == 'Debian 13 "trixie"'
    assert sources.untested_note("trixie") is None and sources.untested_note("bookworm") is None
    assert "forky" in (sources.untested_note("forky") or "")
