"""The real Tiny Core 6.4.1 kernel unpacks initrds from the parallel gzip compressor: the real
rootfs64.gz, extracted and repacked at each level, boots from a BIOS CD to tc-config's hostname."""

from __future__ import annotations

import shutil
import subprocess
import zlib
from pathlib import Path

import pytest
from conftest import ISOLINUX, ROOTFS, VMLINUZ, needs_fixtures

from pebuilder.boot.qemu import boot
from pebuilder.formats import cpio

pytestmark = [needs_fixtures, pytest.mark.boot]

HOST = "pbgz"
ISOLINUX_CFG = f"""SERIAL 0 115200
default {HOST}
prompt 1
timeout 10

label {HOST}
\tkernel /boot/vmlinuz64
\tinitrd /boot/corepure64.gz
\tappend loglevel=3 console=ttyS0 host={HOST}
"""


@pytest.fixture(scope="module")
def rootfs_tree(tmp_path_factory) -> tuple[Path, cpio.TreeMeta]:
    base = tmp_path_factory.mktemp("rootfs")
    meta = cpio.extract(ROOTFS, base / "tree", base / "meta.json")
    return base / "tree", meta


def make_iso(initrd: Path, out: Path) -> Path:
    """An El Torito CD like make_template_iso's, with `initrd` and a serial-console isolinux.cfg."""
    tree = out.parent / "iso-tree"
    (tree / "boot/isolinux").mkdir(parents=True)
    shutil.copyfile(VMLINUZ, tree / "boot/vmlinuz64")
    shutil.copyfile(initrd, tree / "boot/corepure64.gz")
    for f in ISOLINUX.iterdir():
        shutil.copyfile(f, tree / "boot/isolinux" / f.name)
    (tree / "boot/isolinux/isolinux.cfg").write_text(ISOLINUX_CFG)
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-l", "-J", "-R", "-V", "CorePure64",
                    "-no-emul-boot", "-boot-load-size", "4", "-boot-info-table",
                    "-b", "boot/isolinux/isolinux.bin", "-c", "boot/isolinux/boot.cat", "-o", str(out),
                    str(tree)], check=True, capture_output=True)
    shutil.rmtree(tree)
    return out


def one_member(data: bytes) -> bool:
    d = zlib.decompressobj(31)
    d.decompress(data)
    return d.eof and d.unused_data == b""


@pytest.mark.parametrize("level", ["fast", "default", "best", "seed"])
def test_tiny_core_boots_initrd_from_parallel_gzip(level, rootfs_tree, tmp_path):
    if level == "seed" and shutil.which("advdef") is None:
        pytest.skip("advdef (advancecomp) not installed")
    tree, meta = rootfs_tree
    initrd = tmp_path / "corepure64.gz"
    cpio.pack(tree, meta, initrd, compression="gzip", level=level)
    assert one_member(initrd.read_bytes())
    iso = make_iso(initrd, tmp_path / f"pbgz-{level}.iso")
    result = boot(iso, expect=[f"Setting hostname to {HOST}"], firmware="bios", media="cdrom", timeout=180,
                  log_path=tmp_path / "serial.log")
    assert result.ok, f"{level}: {result.exit_reason}; {result.missing} not seen; serial tail:\n{result.tail()}"
