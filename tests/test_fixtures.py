"""The fixture locator and downloader (fixtures.py), against a Tiny Core mirror on 127.0.0.1.

The loopback mirror serves a copy of the real fixture files in the official layout (the isolinux
folder inside a CorePure64 ISO, as upstream ships it); faults are injected per path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import fixtures
import pytest
from conftest import FIXTURES, ROOT, make_iso, make_template_tree, needs_fixtures
from mirror_server import MirrorServer

pytestmark = needs_fixtures


@pytest.fixture
def mirror_root(tmp_path) -> Path:
    """The fixture files laid out as on tinycorelinux.net."""
    root = tmp_path / "mirror"
    for rel in fixtures.PINS:
        remote, member = fixtures.mirror_location(rel)
        if member is None:
            target = root / remote
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(FIXTURES / rel, target)
    iso = root / fixtures.ISO
    iso.parent.mkdir(parents=True, exist_ok=True)
    make_iso(make_template_tree(tmp_path / "iso-tree"), iso)  # xorriso writes this ISO's own boot info table
    return root


def env_for(tmp_path: Path, *mirrors: str) -> dict[str, str]:
    return {"PEBUILDER_CACHE": str(tmp_path / "cache"), "PEBUILDER_TC_MIRROR": " ".join(mirrors)}


def locate(tmp_path: Path, env: dict[str, str]) -> fixtures.Located:
    return fixtures.locate(env, shared=tmp_path / "no-shared", timeout=5)


def leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.rglob("*") if p.name.startswith((".tinycore-", ".dl-")))


def test_pins_are_the_fixture_folder():
    for rel, (md5, size) in fixtures.PINS.items():
        assert (FIXTURES / rel).stat().st_size == size, rel
        assert fixtures.pinned_md5(FIXTURES / rel, rel) == md5, rel
    # nothing in the folder is left unpinned
    assert {p.relative_to(FIXTURES).as_posix() for p in FIXTURES.rglob("*")
            if p.is_file() and p.name not in ("README.md", ".pins")} == set(fixtures.PINS)


def test_download_lays_out_the_pinned_files_once(tmp_path, mirror_root):
    with MirrorServer(mirror_root) as server:
        env = env_for(tmp_path, server.url)
        got = locate(tmp_path, env)
        assert got.source == "download" and got.folder == tmp_path / "cache/fixtures/tinycore"
        assert "no-shared" in got.reason  # what was looked at first
        for rel in fixtures.PINS:
            have, want = (got.folder / rel).read_bytes(), (FIXTURES / rel).read_bytes()
            if rel in fixtures.BOOT_INFO:  # the mirror's ISO has its own boot info table, the rest is equal
                start, end = fixtures.BOOT_INFO[rel]
                assert have[:start] + have[end:] == want[:start] + want[end:]
            else:
                assert have == want, rel
        assert len([p for p, _ in server.requests if p.endswith(".iso")]) == 1  # one ISO for six members
        asked = len(server.requests)
        again = locate(tmp_path, env)
        assert again.source == "test cache" and again.folder == got.folder and len(server.requests) == asked
    assert leftovers(tmp_path / "cache") == []


def test_a_corrupt_file_is_refused_and_the_rest_is_kept(tmp_path, mirror_root):
    path = "/14.x/x86_64/tcz/kmaps.tcz"
    with MirrorServer(mirror_root) as server:
        server.faults[path] = ["corrupt"]
        env = env_for(tmp_path, server.url)
        got = locate(tmp_path, env)
        assert got.folder is None and got.source == ""
        assert "kmaps.tcz" in got.reason and "is not the pinned 0027d2832648ab00d769e41aa3f541af" in got.reason
        assert "refused" in got.reason
        cache = tmp_path / "cache/fixtures"
        assert not (cache / "tinycore").exists()
        assert not [p for p in (cache / "files").iterdir() if p.name.endswith("-kmaps.tcz")]
        server.requests.clear()
        retry = locate(tmp_path, env)  # the fault is used up: the file comes whole now
        assert retry.source == "download" and (retry.folder / "tcz-14.x-x86_64/kmaps.tcz").read_bytes() == (
            FIXTURES / "tcz-14.x-x86_64/kmaps.tcz").read_bytes()
        assert [p for p, _ in server.requests] == [path]  # the verified files were kept, not fetched again
    assert leftovers(tmp_path / "cache") == []


def test_an_absent_file_makes_the_fixtures_unavailable(tmp_path, mirror_root):
    (mirror_root / "14.x/x86_64/tcz/getlocale.tcz.info").unlink()
    with MirrorServer(mirror_root) as server:
        got = locate(tmp_path, env_for(tmp_path, server.url))
    assert got.folder is None
    assert "getlocale.tcz.info" in got.reason and "HTTP 404 (absent on this mirror)" in got.reason
    assert not (tmp_path / "cache/fixtures/tinycore").exists()


def test_a_silent_mirror_is_passed_over_and_not_asked_again(tmp_path, mirror_root):
    dead = "http://127.0.0.1:9/"  # discard port: connection refused
    with MirrorServer(mirror_root) as server:
        got = locate(tmp_path, env_for(tmp_path, dead, server.url))
        assert got.source == "download"
    only_dead = env_for(tmp_path / "b", dead)
    first = locate(tmp_path, only_dead)
    assert first.folder is None and "unreachable" in first.reason
    second = locate(tmp_path, only_dead)  # other workers of the session do not wait for it again
    assert second.folder is None and "not asked again" in second.reason


def test_where_fixtures_are_looked_for(tmp_path):
    incomplete = tmp_path / "incomplete"
    (incomplete / "tc6.4.1-x86_64").mkdir(parents=True)
    env = {"PEBUILDER_CACHE": str(tmp_path / "cache"), "PEBUILDER_TC_MIRROR": "off"}
    assert fixtures.locate({**env, "PEBUILDER_FIXTURES": str(FIXTURES)}, shared=incomplete).source == (
        "PEBUILDER_FIXTURES")
    got = fixtures.locate({**env, "PEBUILDER_FIXTURES": str(incomplete)}, shared=FIXTURES)
    assert got.source == "../shared" and "lacks" in got.reason
    off = fixtures.locate(env, shared=incomplete)
    assert off.folder is None and "PEBUILDER_TC_MIRROR=off" in off.reason
    assert off.expected == tmp_path / "cache/fixtures/tinycore"


def _inner_suite(tmp_path: Path) -> Path:
    """A clone without ../shared: conftest.py and fixtures.py with two tests that need the fixtures."""
    tests = tmp_path / "clone/tests"
    tests.mkdir(parents=True)
    for name in ("conftest.py", "fixtures.py"):
        shutil.copyfile(ROOT / "tests" / name, tests / name)
    (tests / "test_inner.py").write_text(textwrap.dedent("""
        from conftest import needs_fixtures

        @needs_fixtures
        def test_one():
            pass

        @needs_fixtures
        def test_two():
            pass

        def test_plain():
            pass
        """))
    return tests


@pytest.mark.parametrize("workers", [[], ["-n", "2"]])
def test_missing_fixtures_are_explained_once_with_the_fix(tmp_path, workers):
    tests = _inner_suite(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEBUILDER_")}
    env["PEBUILDER_TC_MIRROR"] = "http://127.0.0.1:9/"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *workers, str(tests)],
                          capture_output=True, text=True, env=env, cwd=tmp_path)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "2 skipped" in out and "1 passed" in out
    assert out.count("tests did not run: Tiny Core fixtures missing") == 1, out
    assert "PEBUILDER_FIXTURES=/path/to/fixtures/tinycore pytest" in out
    assert "127.0.0.1:9/ unreachable" in out
    env["PEBUILDER_REQUIRE_FIXTURES"] = "1"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *workers, str(tests)],
                          capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 1 and "2 errors" in proc.stdout and "1 passed" in proc.stdout
    assert proc.stdout.count("tests did not run: Tiny Core fixtures missing") == 1
