"""Extensions from Debian packages: built by `pebuilder ext build`, served, loaded live by tce-load.

The live systems booted here are the ones tests/test_debian_live.py builds (shared per session);
the guest reaches a loopback `pebuilder serve` of the repository through QEMU's guestfwd only.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from shared import built, pebuilder, run_console, shell_script
from test_debian_live import DISK_TOML, SDE
from test_debian_live import default as default  # noqa: F401 - the shared default ISO fixture
from test_debian_live import disk as disk  # noqa: F401 - the shared disk image fixture

from pebuilder.net.serve import make_server

pytestmark = pytest.mark.network
REPO = "bookworm/x86_64/tcz"


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    def make(folder: Path) -> None:
        out = pebuilder("ext", "build", "jq", "tmux", "--out", folder / "repo", cwd=folder, env=SDE).stdout
        (folder / "ext-build.txt").write_text(out)
        tcz = folder / "repo" / REPO
        pebuilder("mirror", "index", tcz)
        # A damaged extension: bytes that do not match its .md5.txt (as a mirror in trouble serves it).
        data = bytearray((tcz / "jq.tcz").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (tcz / "broken.tcz").write_bytes(bytes(data))
        (tcz / "broken.tcz.md5.txt").write_text((tcz / "jq.tcz.md5.txt").read_text().replace("jq.tcz", "broken.tcz"))

    return built(tmp_path_factory, "debian-ext-repo", make) / "repo"


@pytest.fixture
def served(repo):
    server = make_server(repo, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    # One connection per guest request: QEMU runs the command for each one.
    yield f"guestfwd=tcp:10.0.2.100:80-cmd:busybox nc 127.0.0.1 {port}"
    server.shutdown()
    server.server_close()


def test_ext_build_gives_a_closed_set_with_deps(repo):
    tcz = repo / REPO
    assert (tcz / "jq.tcz.dep").read_text().split() == ["libjq1.tcz", "libc6.tcz"]
    assert "libonig5.tcz" in (tcz / "libjq1.tcz.dep").read_text().split()
    for name in ("jq", "libjq1", "libonig5", "libc6"):
        t = tcz / f"{name}.tcz"
        assert (tcz / f"{name}.tcz.md5.txt").read_text() == f"{hashlib.md5(t.read_bytes()).hexdigest()}  {name}.tcz\n"
        info = (tcz / f"{name}.tcz.info").read_text()
        assert f"Title:          {name}.tcz" in info and "Version:" in info
    assert "/usr/bin/jq" in (tcz / "jq.tcz.list").read_text().split()
    listing = subprocess.run(["unsquashfs", "-lls", str(tcz / "jq.tcz")], capture_output=True, text=True,
                             check=True).stdout
    rows = [ln for ln in listing.splitlines() if "squashfs-root" in ln]
    assert rows and all(" root/root " in ln for ln in rows), rows[:3]
    assert "squashfs-root/usr/bin/jq" in listing and "usr/share/man/man1" not in listing
    # a library package gets ldconfig as its load-time script
    libc = subprocess.run(["unsquashfs", "-cat", str(tcz / "libc6.tcz"), "usr/local/tce.installed/libc6"],
                          capture_output=True, text=True, check=True).stdout
    assert "ldconfig" in libc
    # locales stay in the base (C.UTF-8): no extension carries them, not even glibc's
    assert {"libc6.tcz", "libtinfo6.tcz", "libevent-core-2.1-7.tcz"} <= set((tcz / "tmux.tcz.dep").read_text().split())
    for name in ("libc6", "tmux"):
        assert "/usr/lib/locale/" not in (tcz / f"{name}.tcz.list").read_text(), name
    # repository files for tce-load's GUI tools
    assert "jq.tcz" in (tcz / "info.lst").read_text().split()


def test_ext_build_is_reproducible(repo, tmp_path):
    """From scratch in another cache: byte-identical extensions."""
    env = {**SDE, "PEBUILDER_CACHE": str(tmp_path / "cache")}
    shutil.copytree(Path(__file__).resolve().parent.parent / ".test-cache" / "debian", tmp_path / "cache" / "debian",
                    dirs_exist_ok=True)  # the parsed index, so only the .debs are fetched again
    pebuilder("ext", "build", "jq", "--out", tmp_path / "repo", cwd=tmp_path, env=env)
    for name in ("jq", "libjq1", "libonig5", "libc6"):
        a = (repo / REPO / f"{name}.tcz").read_bytes()
        b = (tmp_path / "repo" / REPO / f"{name}.tcz").read_bytes()
        assert a == b, name


def test_kernel_packages_are_refused(tmp_path):
    proc = pebuilder("ext", "build", "linux-image-amd64", "--out", tmp_path / "r", cwd=tmp_path, check=False)
    assert proc.returncode == 31
    assert "cannot be an extension" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.boot
def test_tce_load_from_a_served_repository(default, served, tmp_path):  # noqa: F811
    script = shell_script(
        "echo http://10.0.2.100/ > /etc/sysconfig/tcemirror",
        "tce-load -wi jq; echo rc=$?",
        "echo '{\"a\":1}' | jq .a | tr -d '\\033' | sed 's/\\[[0-9;]*m//g' | sed 's/^/jq-says-/'",
        "tce-load -r libjq1; echo unload-rc=$?",
        "tce-load -wi broken; echo broken-rc=$?",
        "grep -c /run/ext/broken /proc/mounts; ls /ext/broken.tcz /tmp/tce/optional/broken.tcz 2>&1 | head -2",
        "tce-load -l | tr '\\n' ' '; echo",
        # tmux refuses to start without a UTF-8 locale: glibc from libc6.tcz finds the base's C.UTF-8
        "tce-load -wi tmux; echo tmux-load-status=$?",
        "tmux -V 2>&1 | sed 's/^/tmux-says-/'",
        "env | grep '^LANG=' | sed 's/^/login-/'")
    _, log = run_console(default / "pebuilder-default.iso", script, tmp_path / "serial.log", timeout=180,
                         nic=served)
    assert "rc=0" in log and "jq-says-1" in log
    assert "libjq1 is needed by jq; unload jq first" in log and "unload-rc=1" in log
    assert "broken.tcz: md5 mismatch" in log and "broken-rc=1" in log
    tail = log.split("broken-rc=1")[-1].split("tce-load -wi tmux")[0]
    assert "\n0\r" in tail.replace("\r\r", "\r") or "\n0\n" in tail or "0\r\n" in tail
    assert "No such file" in tail
    assert "tmux-load-status=0" in log and "tmux-says-tmux 3.3a" in log and "need UTF-8 locale" not in log
    assert "login-LANG=C.UTF-8" in log  # exported in the console's login shell


@pytest.mark.boot
def test_onboot_extension_survives_a_reboot_without_network(disk, served, tmp_path):  # noqa: F811
    image = tmp_path / "live.raw"
    shutil.copyfile(disk, image)
    kw = {"firmware": "bios", "media": "disk", "timeout": 180, "writable": True, "drive_if": "virtio"}
    _, log = run_console(image, shell_script("echo http://10.0.2.100/ > /etc/sysconfig/tcemirror",
                                             "tce-load -wib jq; echo rc=$?", "cat /ext/onboot.lst", "sync"),
                         tmp_path / "1.log", nic=served, **kw)
    assert "rc=0" in log and "jq.tcz" in log.split("cat /ext/onboot.lst")[-1]
    _, log = run_console(image, shell_script("echo '{\"a\":2}' | jq -M .a | sed 's/^/jq-says-/'"),
                         tmp_path / "2.log", **kw)
    assert "pebuilder: extension jq" in log and "jq-says-2" in log


def test_disk_config_is_shared_with_the_live_tests():
    assert "onboot" in DISK_TOML
