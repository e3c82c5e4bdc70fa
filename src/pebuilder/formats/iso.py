"""ISO 9660 images through xorriso: read without mounting, write hybrid BIOS+UEFI images.

The hybrid layout is the one proven in docs/recipes.md: isolinux with an isohybrid MBR for BIOS
(as CD and as disk) and an appended FAT ESP holding GRUB for UEFI.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from pebuilder.errors import Exit, PebuilderError
from pebuilder.fsutil import atomic_output, rmtree, source_date_epoch
from pebuilder.runner import require, run

ISOHYBRID_MBR = "/usr/lib/ISOLINUX/isohdpfx.bin"


def check_readable(iso: Path) -> None:
    if not iso.exists():
        raise PebuilderError(f"template ISO {iso} does not exist; set cd_location (or [template] iso) "
                             "to an existing .iso file", Exit.NO_TEMPLATE)
    if not iso.is_file():
        raise PebuilderError(f"{iso} is not a file; give an .iso file (or a folder holding an extracted CD "
                             "as cd_location)", Exit.NO_TEMPLATE)
    with open(iso, "rb") as f:
        f.seek(0x8001)
        if f.read(5) != b"CD001":
            raise PebuilderError(f"{iso} is not an ISO 9660 image (no CD001 descriptor at 32 KiB)",
                                 Exit.NO_TEMPLATE)


def _make_writable(root: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            if not stat.S_ISLNK(st.st_mode):
                os.chmod(p, stat.S_IMODE(st.st_mode) | stat.S_IWUSR | stat.S_IRUSR
                         | (stat.S_IXUSR if stat.S_ISDIR(st.st_mode) else 0))


def extract_tree(iso: Path, dest: Path) -> None:
    """Copy the whole ISO tree out (Rock Ridge names where present), owner-writable."""
    check_readable(iso)
    if dest.exists():
        rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    run(["xorriso", "-abort_on", "FAILURE", "-osirrox", "on:auto_chmod_on", "-indev", iso,
         "-extract", "/", dest], what=f"extracting {iso}", code=Exit.NO_TEMPLATE)
    _make_writable(dest)


def extract_files(iso: Path, names: list[str], dest: Path) -> dict[str, Path]:
    """Copy single files out of the ISO; names that are absent are left out of the result."""
    check_readable(iso)
    dest.mkdir(parents=True, exist_ok=True)
    present = set(list_files(iso))
    out: dict[str, Path] = {}
    args: list[str] = []
    for n in names:
        n = "/" + n.strip("/")
        if n not in present:
            continue
        target = dest / n.strip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        args += ["-extract", n, str(target)]
        out[n.strip("/")] = target
    if args:
        run(["xorriso", "-abort_on", "FAILURE", "-osirrox", "on:auto_chmod_on", "-indev", iso, *args],
            what=f"reading {iso}", code=Exit.NO_TEMPLATE)
        _make_writable(dest)
    return out


def list_files(iso: Path) -> list[str]:
    proc = run(["xorriso", "-indev", iso, "-find", "/", "-type", "f"], what=f"listing {iso}",
               code=Exit.NO_TEMPLATE)
    files = []
    for line in proc.stdout.decode(errors="replace").splitlines():
        line = line.strip()
        if line.startswith("'") and line.endswith("'"):
            files.append(line[1:-1].replace("'\"'\"'", "'"))
    return files


@dataclass
class HybridLayout:
    """Where the boot pieces sit inside the tree, relative to its root."""

    isolinux_bin: str | None  # BIOS El Torito image, e.g. boot/isolinux/isolinux.bin
    boot_catalog: str | None
    esp_image: Path | None  # FAT image appended as partition 2 for UEFI
    volume_id: str


def clamp_tree_times(root: Path) -> None:
    """With SOURCE_DATE_EPOCH set, no file in the tree may look newer than it (xorriso records mtimes)."""
    sde = source_date_epoch()
    if sde is None:
        return
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames + ["."]:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            if st.st_mtime > sde:
                os.utime(p, (sde, sde), follow_symlinks=False)


def write_hybrid(tree: Path, out: Path, layout: HybridLayout) -> None:
    """Write the ISO atomically: the output path either holds a whole image or is untouched."""
    if layout.isolinux_bin is None and layout.esp_image is None:
        raise PebuilderError("nothing to boot: the image has neither isolinux nor an EFI loader")
    clamp_tree_times(tree)
    args: list[str | os.PathLike[str]] = [
        "xorriso", "-as", "mkisofs", "-quiet", "-l", "-r", "-J", "-joliet-long", "-V", layout.volume_id,
    ]
    if layout.isolinux_bin:
        if not os.path.exists(ISOHYBRID_MBR):
            require("isohdpfx")
        args += ["-isohybrid-mbr", ISOHYBRID_MBR, "-c", layout.boot_catalog or "boot.cat",
                 "-b", layout.isolinux_bin, "-no-emul-boot", "-boot-load-size", "4", "-boot-info-table"]
    if layout.esp_image:
        if layout.isolinux_bin:
            args += ["-eltorito-alt-boot"]
        args += ["-e", "--interval:appended_partition_2:all::", "-no-emul-boot",
                 "-append_partition", "2", "0xef", layout.esp_image]
        if layout.isolinux_bin:
            args += ["-isohybrid-gpt-basdat"]
    with atomic_output(out) as tmp:
        tmp.unlink()
        run([*args, "-o", tmp, tree], what=f"writing {out}", code=Exit.MKISOFS)
