"""Shared test helpers: the real Tiny Core fixtures, a template ISO built from them, the CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(os.environ.get("PEBUILDER_FIXTURES", ROOT.parent / "shared" / "fixtures" / "tinycore"))
TCZ = FIXTURES / "tcz-14.x-x86_64"
ROOTFS = FIXTURES / "tc6.4.1-x86_64" / "rootfs64.gz"
VMLINUZ = FIXTURES / "tc6.4.1-x86_64" / "vmlinuz64"
ISOLINUX = FIXTURES / "tc6.x-corepure64-isolinux"
EXT_MARKER = "PEBUILDER-EXT-MARKER-OK"

needs_fixtures = pytest.mark.skipif(not FIXTURES.is_dir(),
                                    reason=f"Tiny Core fixtures not found at {FIXTURES} (../shared absent)")


def pebuilder(*args: str | os.PathLike, check: bool = True, env: dict | None = None,
              cwd: Path | None = None, user: str | None = None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "pebuilder", *map(str, args)]
    if user:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env["PYTHONPATH"] = str(ROOT / "src")
    proc = subprocess.run(argv, capture_output=True, text=True, env=full_env, cwd=cwd)
    if check and proc.returncode != 0:
        raise AssertionError(f"pebuilder {' '.join(map(str, args))} exited {proc.returncode}\n"
                             f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def make_template_iso(out: Path) -> Path:
    """A real CorePure64-6.4.1-style ISO, as the fixtures' README describes."""
    tree = out.parent / (out.stem + "-tree")
    if tree.exists():
        shutil.rmtree(tree)
    (tree / "boot/isolinux").mkdir(parents=True)
    shutil.copyfile(VMLINUZ, tree / "boot/vmlinuz64")
    shutil.copyfile(ROOTFS, tree / "boot/corepure64.gz")
    for f in ISOLINUX.iterdir():
        shutil.copyfile(f, tree / "boot/isolinux" / f.name)
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-l", "-J", "-R", "-V", "CorePure64",
                    "-no-emul-boot", "-boot-load-size", "4", "-boot-info-table",
                    "-b", "boot/isolinux/isolinux.bin", "-c", "boot/isolinux/boot.cat", "-o", str(out),
                    str(tree)], check=True, capture_output=True)
    shutil.rmtree(tree)
    return out


def make_marker_extension(folder: Path, name: str = "pbtest", marker: str = EXT_MARKER) -> Path:
    """A .tcz whose startup script prints a marker on the console, as tce-load would run it."""
    src = folder / f"{name}-src"
    script = src / "usr/local/tce.installed" / name
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(f"#!/bin/sh\necho {marker} > /dev/console\n")
    script.chmod(0o755)
    (src / "usr/local/share/pbtest").mkdir(parents=True, exist_ok=True)
    (src / "usr/local/share/pbtest/hello.txt").write_text("hello from pbtest\n")
    out = folder / f"{name}.tcz"
    subprocess.run(["mksquashfs", str(src), str(out), "-b", "4k", "-no-xattrs", "-all-root", "-noappend",
                    "-quiet", "-no-progress"], check=True, capture_output=True)
    shutil.rmtree(src)
    return out


@pytest.fixture(scope="session")
def template_iso(tmp_path_factory) -> Path:
    if not FIXTURES.is_dir():
        pytest.skip(f"Tiny Core fixtures not found at {FIXTURES}")
    return make_template_iso(tmp_path_factory.mktemp("template") / "CorePure64-6.4.1.iso")


def seed_style_setup(base: Path, iso: Path, work: Path, host: str) -> tuple[Path, Path]:
    """An extension folder with the marker extension, and a seed-style ezremaster.cfg using it."""
    exts = base / "exts"
    exts.mkdir(parents=True)
    make_marker_extension(exts)
    return write_seed_style_cfg(base / "ezremaster.cfg", iso, work, host), exts


def write_seed_style_cfg(path: Path, iso: Path, work: Path, host: str, timeout_cc: bool = True) -> Path:
    path.write_text(
        f"cd_location = {iso}\n"
        f"temp_dir = {work}/\n"
        f"cc = console=ttyS0 host={host}\n"
        "app_outside_initrd_onboot = dialog.tcz\n"
        "app_outside_initrd_onboot = db.tcz\n"
        "app_extract_initrd = pbtest.tcz\n"
        "app_extract_initrd = kmaps.tcz\n")
    return path


@pytest.fixture
def open_workspace(template_iso):
    """A folder outside pytest's private tmp (which only root can enter) holding a copy of the
    template ISO, so a build can run as an unprivileged user; removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to an unprivileged user")
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="pebuilder-open-"))
    os.chmod(base, 0o755)
    iso = base / "template.iso"
    shutil.copyfile(template_iso, iso)
    os.chmod(iso, 0o644)
    yield base, iso
    shutil.rmtree(base, ignore_errors=True)
