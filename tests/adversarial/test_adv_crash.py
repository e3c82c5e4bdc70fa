"""Crash and concurrency (issue 9): a build killed with SIGKILL anywhere never poisons the next one, two
builds of one work folder never mix, and outputs never overwrite inputs, nest in work trees or share a
path; a work folder pebuilder did not make is left alone."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from adversarial.helpers import (
    BUILD_ENV,
    Canary,
    assert_error,
    assert_ok,
    build,
    cli,
    sha256,
    snapshot,
    tc_config,
    tmp_leftovers,
)
from conftest import ROOT, make_marker_extension, needs_fixtures

from pebuilder.errors import Exit
from pebuilder.formats import iso

STAGES = ["template", "kernel", "unpack-initrd", "extensions-initrd", "customise", "kernel-modules",
          "extensions-cde", "bootcode", "pack-initrd", "efi-boot", "assemble-image", "package-iso", "disk-d.raw"]
HASH = "$6$saltsalt$" + "C" * 86


def crash_config(base: Path, template: Path, exts: Path, hostname: str = "killed") -> Path:
    """Every stage has work to do: extensions in the initrd and beside it, accounts, menus, ISO and disk."""
    return tc_config(base, template, name=f"{hostname}.toml",
                     extensions={"dirs": [str(exts)], "initrd": ["pbtest", "kmaps", "getlocale"],
                                 "onboot": ["dialog", "db"], "builtin": ["ethtool"]},
                     boot={"hostname": hostname, "serial": True, "timeout": 1},
                     users=[{"name": "alice", "uid": 1500, "password_hash": HASH, "sudo": True}],
                     output={"disk": [{"path": str(base / "out" / "d.raw"), "size": "64M"}]})


def outputs_of(base: Path) -> tuple[str, str]:
    return sha256(base / "out" / "x.iso"), sha256(base / "out" / "d.raw")


@pytest.fixture(scope="module")
def crash_inputs(tmp_path_factory, template_iso):
    """The extension folder and clean reference builds (hostnames "killed" and "other")."""
    from conftest import TCZ

    base = tmp_path_factory.mktemp("crash")
    exts = base / "exts"
    exts.mkdir()
    make_marker_extension(exts)
    for f in TCZ.iterdir():
        os.symlink(f, exts / f.name)
    refs = {}
    for host in ("killed", "other"):
        clean = base / f"clean-{host}"
        assert_ok(build(crash_config(clean, template_iso, exts, host)))
        refs[host] = outputs_of(clean)
    assert refs["killed"] != refs["other"]
    return template_iso, exts, refs


@dataclass
class Kill:
    """Kill after the line of stage `after` (None: after `delay` seconds from the start), waiting `delay`."""

    after: str | None
    delay: float = 0.0
    incremental: bool = False  # the work folder first holds a finished build of another config
    then: Kill | None = None  # kill the first rerun too

    def label(self) -> str:
        what = f"after {self.after} +{self.delay:.2f}s" if self.after else f"at {self.delay:.2f}s"
        return what + (" (incremental)" if self.incremental else "") + (f", then {self.then.label()}"
                                                                         if self.then else "")


@dataclass
class Tally:
    kills: int = 0
    identical: int = 0
    missed: int = 0
    during: list[str] = field(default_factory=list)


def kill_build(cfg: Path, point: Kill) -> tuple[bool, str]:
    """Start a build, SIGKILL it at `point`; (killed?, the stage it was in)."""
    env = {**os.environ, **BUILD_ENV, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "pebuilder", "build", str(cfg)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stderr is not None
    done: list[str] = []
    if point.after is None:
        time.sleep(point.delay)
    else:
        for line in proc.stderr:
            words = line.split()
            if words[:1] in (["✓"], ["="]):
                done.append(words[1])
                if words[1] == point.after:
                    break
        time.sleep(point.delay)
    proc.send_signal(signal.SIGKILL)
    rc = proc.wait()
    proc.stderr.close()
    left = [s for s in STAGES if s not in done]
    return rc == -signal.SIGKILL, left[0] if left else "end"


POINTS = {
    "early": [Kill(None, 0.12), Kill(None, 0.3), Kill("template"), Kill("kernel"), Kill("unpack-initrd"),
              Kill("kernel", 0.04), Kill("extensions-initrd"), Kill("customise")],
    "late": [Kill("kernel-modules"), Kill("extensions-cde"), Kill("bootcode"), Kill("bootcode", 0.06),
             Kill("pack-initrd"), Kill("efi-boot"), Kill("assemble-image"), Kill("assemble-image", 0.08),
             Kill("package-iso")],
    "incremental": [Kill("template", incremental=True), Kill("customise", incremental=True),
                    Kill("bootcode", 0.03, incremental=True), Kill("assemble-image", 0.03, incremental=True),
                    Kill("unpack-initrd", then=Kill("pack-initrd")),
                    Kill("bootcode", incremental=True, then=Kill("assemble-image"))],
}


@needs_fixtures
@pytest.mark.parametrize("group", list(POINTS))
def test_kill_9_then_rerun_is_byte_identical(tmp_path, crash_inputs, group):
    template, exts, refs = crash_inputs
    tally = Tally()
    for i, point in enumerate(POINTS[group]):
        base = tmp_path / f"k{i}"
        cfg = crash_config(base, template, exts)
        if point.incremental:
            assert_ok(build(crash_config(base, template, exts, "other")))
            assert outputs_of(base) == refs["other"]
        p: Kill | None = point
        while p is not None:
            killed, during = kill_build(cfg, p)
            if killed:
                tally.kills += 1
                tally.during.append(during)
            else:
                tally.missed += 1
            p = p.then
        assert_ok(build(cfg))
        out = base / "out" / "x.iso"
        assert not [n for n in iso.list_files(out) if n.endswith((".pbtmp", ".tmp", ".part"))]
        assert tmp_leftovers(base / "work", base / "out") == [], point.label()
        got = outputs_of(base)
        if got == refs["killed"]:
            tally.identical += 1
        else:
            differ = [n for n, a, b in zip(("ISO", "disk"), got, refs["killed"], strict=True) if a != b]
            pytest.fail(f"kill {point.label()} (during {tally.during[-1:]}): the rerun's {' and '.join(differ)} "
                        f"differ from a clean build ({base})")
        shutil.rmtree(base)
    print(f"\nkill -9 {group}: {tally.kills} kills, {tally.identical} identical reruns, {tally.missed} builds "
          f"finished before the kill; killed during: {', '.join(tally.during)}")
    assert tally.kills >= len(POINTS[group]) - 1, tally
    assert len(set(tally.during)) >= 3, tally


# -- two builds of one work folder ------------------------------------------------------------------

def _wait_for_lock(lock: Path, pid: int, proc: subprocess.Popen, timeout: float = 60) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        if lock.exists() and f"pid {pid} " in lock.read_text(errors="replace"):
            return True
        time.sleep(0.002)
    return False


@needs_fixtures
def test_second_build_of_a_busy_work_folder_exits_40(tmp_path, crash_inputs):
    template, exts, refs = crash_inputs
    cfg = crash_config(tmp_path, template, exts)
    env = {**os.environ, **BUILD_ENV, "PYTHONPATH": str(ROOT / "src")}
    for _attempt in range(5):
        shutil.rmtree(tmp_path / "work", ignore_errors=True)
        holder = subprocess.Popen([sys.executable, "-m", "pebuilder", "build", str(cfg), "--json"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        if _wait_for_lock(tmp_path / "work" / ".pebuilder" / "lock", holder.pid, holder):
            holder.send_signal(signal.SIGSTOP)
            if holder.poll() is None:
                break
        holder.communicate()
    else:
        pytest.fail("the first build never held the lock while running")
    try:
        second = build(cfg)
    finally:
        holder.send_signal(signal.SIGCONT)
    out, err = holder.communicate(timeout=120)
    assert holder.returncode == 0, err
    assert_error(second, Exit.LOCKED, "in use by", f"pid {holder.pid} ", str(tmp_path / "work"))
    assert outputs_of(tmp_path) == refs["killed"]


@needs_fixtures
def test_racing_builds_of_one_work_folder(tmp_path, crash_inputs):
    template, exts, refs = crash_inputs
    cfg = crash_config(tmp_path, template, exts)
    env = {**os.environ, **BUILD_ENV, "PYTHONPATH": str(ROOT / "src")}
    procs = [subprocess.Popen([sys.executable, "-m", "pebuilder", "build", str(cfg), "--json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(4)]
    results = [(p.pid, *p.communicate(timeout=300), p.returncode) for p in procs]
    codes = [r[3] for r in results]
    assert set(codes) <= {0, Exit.LOCKED} and 0 in codes, results
    for pid, _out, err, rc in results:
        assert "Traceback" not in err
        if rc == Exit.LOCKED:
            assert "in use by pid" in err and str(pid) not in err.split("in use by")[1].split()[1]
    print(f"\nracing builds: exit codes {codes}")
    assert outputs_of(tmp_path) == refs["killed"]
    assert tmp_leftovers(tmp_path / "work", tmp_path / "out") == []


# -- outputs against inputs, work trees and each other --------------------------------------------------

@needs_fixtures
def test_output_equal_to_the_template_is_refused(tmp_path, template_iso):
    tpl = tmp_path / "tpl.iso"
    shutil.copyfile(template_iso, tpl)
    before = sha256(tpl)
    proc = build(tc_config(tmp_path, tpl, output={"iso": {"path": str(tpl)}}))
    assert_error(proc, Exit.CONFIG_INVALID, str(tpl), "input")
    assert sha256(tpl) == before
    disk = build(tc_config(tmp_path, tpl, name="d.toml", output={"disk": [{"path": str(tpl), "size": "64M"}]}))
    assert_error(disk, Exit.CONFIG_INVALID, str(tpl), "input")
    assert sha256(tpl) == before


@needs_fixtures
@pytest.mark.parametrize("inside", ["image/x.iso", "image/boot/x.iso", "extract/x.iso", ".pebuilder/x.iso", "image"])
def test_output_inside_a_work_tree_is_refused(tmp_path, template_iso, inside):
    work = tmp_path / "work"
    out = work / inside
    assert_ok(build(tc_config(tmp_path, template_iso)))  # the trees exist, as on a second run
    proc = build(tc_config(tmp_path, template_iso, output={"iso": {"path": str(out)}}))
    assert_error(proc, Exit.CONFIG_INVALID, str(out))
    assert not out.is_file()


@needs_fixtures
def test_two_outputs_on_one_path_are_refused(tmp_path, template_iso):
    same = tmp_path / "out" / "same.img"
    for name, output in (("a.toml", {"iso": {"path": str(same)}, "disk": [{"path": str(same)}]}),
                         ("b.toml", {"disk": [{"path": str(same)}, {"path": str(tmp_path / "out" / ".." / "out" /
                                                                              "same.img")}]})):
        proc = build(tc_config(tmp_path, template_iso, name=name, output=output))
        assert_error(proc, Exit.CONFIG_INVALID, "two outputs", str(same))
    assert not same.exists()


@needs_fixtures
@pytest.mark.parametrize("reader", ["toml", "ezremaster.cfg"])
def test_unrelated_work_folder_is_left_untouched(tmp_path, template_iso, reader):
    """temp_dir pointing at someone's folder that happens to hold image/ and extract/: exit 7, nothing lost."""
    canary = Canary(tmp_path, "precious")
    for sub in ("image", "extract"):
        (canary.dir / sub).mkdir()
        (canary.dir / sub / "keep.txt").write_text(f"{sub} of someone else\n")
    canary.rebase()
    if reader == "toml":
        cfg = tc_config(tmp_path, template_iso, work={"dir": str(canary.dir)})
        proc = build(cfg)
    else:
        cfg = tmp_path / "ezremaster.cfg"
        cfg.write_text(f"cd_location = {template_iso}\ntemp_dir = {canary.dir}/\n")
        proc = cli("remaster", cfg, "rebuild", "--json")
    assert_error(proc, Exit.TEMP_DIR, str(canary.dir), "did not make")
    canary.check()


@needs_fixtures
def test_work_folder_that_is_a_file(tmp_path, template_iso):
    work = tmp_path / "work"
    work.write_text("not a folder\n")
    assert_error(build(tc_config(tmp_path, template_iso)), Exit.TEMP_DIR, str(work))
    assert work.read_text() == "not a folder\n"


@needs_fixtures
def test_stale_temporaries_of_dead_writers_are_removed(tmp_path, template_iso):
    cfg = tc_config(tmp_path, template_iso)
    assert_ok(build(cfg))
    out = tmp_path / "out"
    state = tmp_path / "work" / ".pebuilder"
    before = snapshot(out)
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = [out / f".x.iso.{dead.pid}.abcd1234.pbtmp", state / f".stages.json.{dead.pid}.abcd.pbtmp",
             state / "initrd" / f".corepure64.gz.{dead.pid}.abcd.pbtmp",
             state / "boot" / "boot" / "grub" / f".grub.cfg.{dead.pid}.abcd.pbtmp",
             state / "tmp" / "unsquash-1" / "leftover", state / "tmp" / f"tcz-{dead.pid}"]
    live = out / f".x.iso.{os.getpid()}.live.pbtmp"
    for p in [*stale, live]:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"half-written")
    assert_ok(build(cfg))
    for p in stale:
        assert not p.exists(), p
    assert live.exists()
    live.unlink()
    after = snapshot(out)
    assert {k: v for k, v in after.items() if k != "."} == {k: v for k, v in before.items() if k != "."}
