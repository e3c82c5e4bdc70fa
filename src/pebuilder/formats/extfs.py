"""ext2/3/4 filesystems made straight into a partition of a disk image file, from a folder.

No loop device, no mount: `mke2fs -d` populates the filesystem at an offset. Its owners come from
the source files, so anything not owned by root is set to root afterwards with debugfs, which is
how an unprivileged build still gives a root-owned /boot.
"""

from __future__ import annotations

import os
from pathlib import Path

from pebuilder.fsutil import source_date_epoch, write_text_atomic
from pebuilder.runner import run

# Features old GRUBs and old kernels (Tiny Core 6's 3.16) cannot read are left off.
PINNED = {"ext4": "^metadata_csum_seed,^orphan_file,^metadata_csum,^64bit",
          "ext3": "^metadata_csum_seed,^orphan_file", "ext2": "^metadata_csum_seed,^orphan_file"}


def make(image: Path, offset: int, size: int, fstype: str, label: str, fs_uuid: str, source: Path | None,
         workdir: Path) -> None:
    args: list[str | Path] = ["mke2fs", "-q", "-F", "-t", fstype, "-L", label[:16], "-U", fs_uuid, "-O", PINNED[fstype],
            "-E", f"offset={offset},root_owner=0:0,hash_seed={fs_uuid}", "-m", "0"]
    if fstype != "ext2" and size >= 128 << 20:
        args += ["-J", "size=16"]  # below that mke2fs's own journal size (a fraction of the filesystem) fits
    if source is not None:
        args += ["-d", source]
    args += [image, f"{size // 1024}k"]
    env = {}
    sde = source_date_epoch()
    if sde is not None:
        env = {"E2FSPROGS_FAKE_TIME": str(sde), "SOURCE_DATE_EPOCH": str(sde)}
    run(args, env=env, what=f"making {fstype} in {image}")
    if source is not None:
        _normalise(image, offset, source, workdir, env, sde)


def _normalise(image: Path, offset: int, source: Path, workdir: Path, env: dict[str, str], sde: int | None) -> None:
    """Root ownership for everything, and with SOURCE_DATE_EPOCH fixed access/change/creation times.

    mke2fs -d copies owners and all three times from the source files; ctime cannot be set on the
    host, so it is rewritten in the filesystem afterwards (e2fsprogs 1.47.0 has no clamping of its own).
    """
    paths = [str(source)] + [os.path.join(d, n) for d, dirs, files in os.walk(source) for n in dirs + files]
    cmds = []
    for p in paths:
        st = os.lstat(p)
        rel = "/" + os.path.relpath(p, source).removeprefix(".")
        if st.st_uid or st.st_gid:
            cmds += [f'sif "{rel}" uid 0', f'sif "{rel}" gid 0']
        if sde is not None:
            cmds += [f'sif "{rel}" {field} @{sde}' for field in ("atime", "ctime", "crtime")]
            if st.st_mtime > sde:
                cmds.append(f'sif "{rel}" mtime @{sde}')
    if not cmds:
        return
    script = workdir / "debugfs-normalise.cmds"
    write_text_atomic(script, "\n".join(cmds) + "\n")
    run(["debugfs", "-w", "-f", script, f"{image}?offset={offset}"], env=env,
        what=f"setting owners and times in {image}")
