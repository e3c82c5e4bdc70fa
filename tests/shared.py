"""Helpers for tests that build images once and boot them from several tests (and xdist workers).

`built(name, make)` runs `make(folder)` once per test session, whichever worker asks first, under a
file lock in the session's shared temporary folder; the others wait and reuse the result. Images
are then booted read-only (QEMU snapshot) or copied first when a test writes to them.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from pebuilder.boot.qemu import BootResult, boot, console_text

ROOT = Path(__file__).resolve().parent.parent


def session_dir(tmp_path_factory) -> Path:
    """A folder every xdist worker of this session shares."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    d = base / "shared-builds"
    d.mkdir(exist_ok=True)
    return d


def built(tmp_path_factory, name: str, make: Callable[[Path], object]) -> Path:
    """The folder where `make` built `name`, built once per session."""
    root = session_dir(tmp_path_factory)
    folder = root / name
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = folder / ".done"
        failed = folder / ".failed"
        if failed.exists():
            raise AssertionError(f"building {name} failed earlier in this session:\n{failed.read_text()}")
        if not done.exists():
            if folder.exists():
                shutil.rmtree(folder)
            folder.mkdir()
            try:
                make(folder)
            except BaseException as exc:
                failed.write_text(str(exc))
                raise
            done.write_text("ok")
    return folder


def pebuilder(*args: str | os.PathLike, check: bool = True, cwd: Path | None = None,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import sys

    full = dict(os.environ)
    full.update(env or {})
    full["PYTHONPATH"] = str(ROOT / "src")
    proc = subprocess.run([sys.executable, "-m", "pebuilder", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=full)
    if check and proc.returncode != 0:
        raise AssertionError(f"pebuilder {' '.join(map(str, args))} exited {proc.returncode}\n"
                             f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def shell_script(*commands: str, prompt: str = "Please press Enter to activate this console.",
                 done: str = "PB-DONE") -> list[tuple[str, str]]:
    """A console conversation: activate busybox init's shell, run commands, then a marker line."""
    steps: list[tuple[str, str]] = [("expect", prompt), ("send", "\n"), ("expect", "# ")]
    for c in commands:
        steps.append(("send", c + "\n"))
    steps += [("send", f"echo {done[:3]}''{done[3:]}\n"), ("expect", done)]
    return steps


def run_console(image: Path, script: list[tuple[str, str]], log: Path, **kw) -> tuple[BootResult, str]:
    res = boot(image, expect=[], script=script, log_path=log, **kw)
    text = console_text(log.read_bytes()) if log.exists() else ""
    assert res.ok, f"boot of {image} failed ({res.exit_reason}); missing {res.missing}\n{text[-3000:]}"
    return res, text


def partition_offset(disk: Path, number: int) -> int:
    out = subprocess.run(["sfdisk", "-J", str(disk)], capture_output=True, text=True, check=True).stdout
    parts = json.loads(out)["partitiontable"]["partitions"]
    return parts[number - 1]["start"] * 512


def edit_grub_cfg(disk: Path, partition: int, edit: Callable[[str], str], work: Path) -> str:
    """Rewrite /boot/grub/grub.cfg inside an ext filesystem of a raw disk, without mounting it."""
    target = f"{disk}?offset={partition_offset(disk, partition)}"
    text = subprocess.run(["debugfs", "-R", "cat /boot/grub/grub.cfg", target], capture_output=True, text=True,
                          check=True).stdout
    new = edit(text)
    local = work / "grub.cfg.new"
    local.write_text(new)
    subprocess.run(["debugfs", "-w", "-R", "rm /boot/grub/grub.cfg", target], capture_output=True, check=True)
    subprocess.run(["debugfs", "-w", "-R", f"write {local} /boot/grub/grub.cfg", target], capture_output=True,
                   check=True)
    return new


def add_codes(codes: str) -> Callable[[str], str]:
    def edit(text: str) -> str:
        return re.sub(r"^(\s*linux \S+.*)$", lambda m: f"{m.group(1)} {codes}", text, flags=re.M)

    return edit


def make_extension(folder: Path, name: str, files: dict[str, str], deps: list[str] = (), mode: int = 0o644) -> Path:
    """A .tcz (squashfs, root-owned) holding `files` (path -> text), with a .dep and .md5.txt."""
    import hashlib

    src = folder / f"{name}-src"
    for rel, text in files.items():
        p = src / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        p.chmod(0o755 if text.startswith("#!") else mode)
    out = folder / f"{name}.tcz"
    subprocess.run(["mksquashfs", str(src), str(out), "-b", "4k", "-no-xattrs", "-all-root", "-noappend",
                    "-quiet", "-no-progress"], check=True, capture_output=True)
    shutil.rmtree(src)
    if deps:
        (folder / f"{name}.tcz.dep").write_text("".join(f"{d}.tcz\n" for d in deps))
    (folder / f"{name}.tcz.md5.txt").write_text(f"{hashlib.md5(out.read_bytes()).hexdigest()}  {name}.tcz\n")
    return out
