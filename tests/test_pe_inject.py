"""`pebuilder pe inject-script`: the generated sh script, run for real against a fake root.

The script downloads from a loopback `pebuilder serve` (make_server in a thread), with stub update-grub and
grub-reboot first in PATH that record their calls (the update-grub stub also writes grub.cfg from the fake
/etc/grub.d, as the real one does). PATH holds only those stubs and links to the host tools the script is
allowed to need, so a dependency on anything else fails here.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import pebuilder

from pebuilder.errors import Exit
from pebuilder.net.serve import make_server
from pebuilder.outputs.inject import InjectError, inject_script

CMDLINE = "console=ttyS0,115200 pb.fetch=http://10.0.2.2:8080/os/core.sqfs"
TOOLS = ("id", "mkdir", "rm", "rmdir", "mv", "chmod", "cat", "grep", "sed", "awk", "df", "sha256sum", "sleep",
         "sync", "od", "tr")
ENTRY = "etc/grub.d/42_pebuilder"


def _sums(folder: Path) -> None:
    """SHA256SUMS as the netboot output writes it: every file, `<sha256>  <relative path>`."""
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                   if p.is_file() and p.name != "SHA256SUMS")
    (folder / "SHA256SUMS").write_text("".join(
        f"{hashlib.sha256((folder / n).read_bytes()).hexdigest()}  {n}\n" for n in names))


@pytest.fixture
def netboot(tmp_path: Path) -> Path:
    folder = tmp_path / "netboot"
    (folder / "os").mkdir(parents=True)
    (folder / "vmlinuz").write_bytes(b"MZ fake kernel\n" + os.urandom(40_000))
    (folder / "initrd.img").write_bytes(b"070701 fake initramfs\n" + os.urandom(300_000))
    (folder / "os/core.sqfs").write_bytes(os.urandom(1000))
    (folder / "boot.ipxe").write_text("#!ipxe\n")
    (folder / "cmdline.txt").write_text(CMDLINE + "\n")
    _sums(folder)
    return folder


@pytest.fixture
def base_url(netboot: Path) -> Iterator[str]:
    server = make_server(netboot, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@dataclass
class Host:
    """A fake Debian host: DESTDIR root, a PATH of stubs and allowed tools, and the stubs' call log."""

    root: Path
    path: str
    calls: Path

    def run(self, script: Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["/bin/sh", str(script)], capture_output=True, text=True, cwd=cwd, timeout=120,
                              env={"PATH": self.path, "DESTDIR": str(self.root), "LC_ALL": "C"})

    def calls_made(self) -> list[str]:
        return self.calls.read_text().splitlines() if self.calls.exists() else []

    def entry_output(self) -> str:
        """What update-grub would take from 42_pebuilder (run outside grub-mkconfig, so no insmod lines)."""
        proc = subprocess.run([str(self.root / ENTRY)], capture_output=True, text=True, check=True,
                              env={"PATH": self.path, "DESTDIR": str(self.root)})
        return proc.stdout

    def boot_files(self) -> dict[str, bytes]:
        folder = self.root / "boot/pebuilder"
        return {p.name: p.read_bytes() for p in folder.iterdir()} if folder.exists() else {}


def make_host(tmp: Path, downloader: str = "curl", mkconfig: str = "update-grub") -> Host:
    root = tmp / "root"
    (root / "boot").mkdir(parents=True, exist_ok=True)
    (root / "etc/grub.d").mkdir(parents=True, exist_ok=True)
    calls = tmp / "calls.log"
    stubs = tmp / "stubs"
    stubs.mkdir(exist_ok=True)
    bins = tmp / "bin"
    bins.mkdir(exist_ok=True)
    for tool in (*TOOLS, downloader):
        found = shutil.which(tool)
        if not found:
            pytest.skip(f"{tool} is not installed")
        if not (bins / tool).exists():
            (bins / tool).symlink_to(found)
    # update-grub and grub-mkconfig: record, then write grub.cfg from the executable grub.d scripts.
    make_cfg = (f'printf "%s\\n" "{mkconfig} $*" >> "{calls}"\n'
                'mkdir -p "$DESTDIR/boot/grub"\n'
                'for f in "$DESTDIR"/etc/grub.d/*; do if [ -x "$f" ]; then "$f"; fi; done\\\n'
                '  > "$DESTDIR/boot/grub/grub.cfg"\n')
    stub_texts = {mkconfig: make_cfg, "grub-reboot": f'printf "%s\\n" "grub-reboot $*" >> "{calls}"\n'}
    for name, body in stub_texts.items():
        (stubs / name).write_text("#!/bin/sh\nset -eu\n" + body)
        (stubs / name).chmod(0o755)
    return Host(root, f"{stubs}:{bins}", calls)


def write_script(tmp: Path, netboot: Path, url: str, name: str = "inject.sh", **kw) -> Path:
    path = tmp / name
    path.write_text(inject_script(netboot, url, **kw))
    return path


def shellcheck(path: Path) -> None:
    if not shutil.which("shellcheck"):
        pytest.skip("shellcheck is not installed")
    proc = subprocess.run(["shellcheck", "-s", "sh", "-S", "warning", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def check_entry(host: Host, title: str, cmdline: str) -> None:
    out = host.entry_output()
    lines = [ln.strip() for ln in out.splitlines()]
    assert out.count("menuentry ") == 1, out
    assert lines[0] == f"menuentry '{title}' --id pebuilder-pe {{", out
    assert "if search --no-floppy --file --set=root /boot/pebuilder/vmlinuz; then" in lines
    assert "elif search --no-floppy --file --set=root /pebuilder/vmlinuz; then" in lines
    assert "set pe=/boot/pebuilder" in lines and "set pe=/pebuilder" in lines
    assert f"linux $pe/vmlinuz {cmdline}" in lines
    assert "initrd $pe/initrd.img" in lines
    assert lines[-1] == "}"
    if shutil.which("grub-script-check"):  # GRUB's own parser accepts the entry
        subprocess.run(["grub-script-check"], input=out, text=True, check=True)
    cfg = (host.root / "boot/grub/grub.cfg").read_text()
    assert cfg.count("--id pebuilder-pe {") == 1, cfg


@pytest.mark.parametrize("downloader", ["curl", "wget"])
def test_inject_installs_verified_files_and_chooses_the_entry_once(tmp_path, netboot, base_url, downloader):
    host = make_host(tmp_path, downloader)
    script = write_script(tmp_path, netboot, base_url, title="Rescue PE", append=["pb.provision=http://h/p.toml"])
    shellcheck(script)
    served = {n: (netboot / n).read_bytes() for n in ("vmlinuz", "initrd.img")}
    cmdline = f"{CMDLINE} pb.provision=http://h/p.toml"
    for run in (1, 2):  # the second run replaces everything and duplicates nothing
        proc = host.run(script)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert host.boot_files() == served
        assert sorted(p.name for p in (host.root / "etc/grub.d").iterdir()) == ["42_pebuilder"]
        assert os.access(host.root / ENTRY, os.X_OK)
        check_entry(host, "Rescue PE", cmdline)
        assert host.calls_made() == ["update-grub ", "grub-reboot pebuilder-pe"] * run
        assert "rm -r /boot/pebuilder /etc/grub.d/42_pebuilder && update-grub" in proc.stdout
    shellcheck(host.root / ENTRY)
    # Once the files are gone the entry prints nothing (a half undo never leaves a broken menu entry).
    shutil.rmtree(host.root / "boot/pebuilder")
    assert host.entry_output() == ""


def test_under_grub_mkconfig_the_entry_loads_what_reads_boot(tmp_path, netboot, base_url):
    """Run by grub-mkconfig (pkgdatadir, GRUB_DEVICE_BOOT set), the entry takes the insmod/cryptomount lines of
    the host's own prepare_grub_to_access_device, and not its `set root`/search lines (the entry searches)."""
    host = make_host(tmp_path)
    assert host.run(write_script(tmp_path, netboot, base_url)).returncode == 0
    lib = tmp_path / "grub"
    lib.mkdir()
    (lib / "grub-mkconfig_lib").write_text(
        'prepare_grub_to_access_device () {\n  [ "$1" = /dev/vda2 ] || return 1\n'
        '  printf "%s\\n" "insmod part_gpt" "insmod lvm" "insmod ext2" "cryptomount -u 1234" "set root=\'hd0,gpt2\'" '
        '"search --no-floppy --fs-uuid --set=root 1234"\n}\n')
    proc = subprocess.run([str(host.root / ENTRY)], capture_output=True, text=True, check=True,
                          env={"PATH": host.path, "DESTDIR": str(host.root), "pkgdatadir": str(lib),
                               "GRUB_DEVICE_BOOT": "/dev/vda2"})
    lines = proc.stdout.splitlines()
    assert lines[1:5] == ["\tinsmod part_gpt", "\tinsmod lvm", "\tinsmod ext2", "\tcryptomount -u 1234"], proc.stdout
    assert "set root=" not in proc.stdout and "--fs-uuid" not in proc.stdout


def test_a_served_file_that_differs_is_refused_and_boot_is_untouched(tmp_path, netboot, base_url):
    host = make_host(tmp_path)
    script = write_script(tmp_path, netboot, base_url)
    assert host.run(script).returncode == 0
    good, entry = host.boot_files(), (host.root / ENTRY).read_bytes()
    calls = host.calls_made()
    (netboot / "initrd.img").write_bytes(b"something else entirely\n")  # the server now offers other bytes
    proc = host.run(script)
    assert proc.returncode != 0
    assert f"{base_url}initrd.img does not hold the file this script was written for" in proc.stderr
    assert host.boot_files() == good  # no temporary file left, the earlier files as they were
    assert (host.root / ENTRY).read_bytes() == entry
    assert host.calls_made() == calls  # neither update-grub nor grub-reboot ran


def test_a_mismatch_on_the_first_run_leaves_no_trace(tmp_path, netboot, base_url):
    host = make_host(tmp_path)
    script = write_script(tmp_path, netboot, base_url)
    (netboot / "vmlinuz").write_bytes(b"not the kernel\n")
    proc = host.run(script)
    assert proc.returncode != 0 and f"{base_url}vmlinuz" in proc.stderr
    assert sorted(p.name for p in (host.root / "boot").iterdir()) == []
    assert list((host.root / "etc/grub.d").iterdir()) == []
    assert host.calls_made() == []


def test_odd_but_allowed_title_stays_literal(tmp_path, netboot, base_url):
    """A title may hold sh and GRUB syntax (except '): it reaches the menu unchanged and runs nothing."""
    host = make_host(tmp_path)
    title = 'PE $(touch pwned1) `touch pwned2` "q" \\ ${x} ; & $pe'
    script = write_script(tmp_path, netboot, base_url, title=title)
    shellcheck(script)
    proc = host.run(script, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    check_entry(host, title, CMDLINE)
    assert not list(tmp_path.glob("pwned*"))


def test_no_cmdline_txt_means_the_default_consoles(tmp_path, netboot, base_url):
    (netboot / "cmdline.txt").unlink()
    _sums(netboot)
    host = make_host(tmp_path)
    assert host.run(write_script(tmp_path, netboot, base_url, append=["quiet"])).returncode == 0
    check_entry(host, "pebuilder PE", "console=tty0 console=ttyS0,115200 quiet")


def test_grub_mkconfig_when_update_grub_is_absent(tmp_path, netboot, base_url):
    host = make_host(tmp_path, mkconfig="grub-mkconfig")
    proc = host.run(write_script(tmp_path, netboot, base_url))
    assert proc.returncode == 0, proc.stderr
    assert host.calls_made() == [f"grub-mkconfig -o {host.root}/boot/grub/grub.cfg", "grub-reboot pebuilder-pe"]


def test_rhel_like_host_is_unsupported_before_anything_is_written(tmp_path, netboot, base_url):
    host = make_host(tmp_path, mkconfig="grub2-mkconfig")
    proc = host.run(write_script(tmp_path, netboot, base_url))
    assert proc.returncode != 0 and "unsupported host" in proc.stderr
    assert host.boot_files() == {} and host.calls_made() == []


@pytest.mark.parametrize("kw", [
    {"title": "it's"},
    {"title": "two\nlines"},
    {"base_url": "http://127.0.0.1/a b/"},
    {"base_url": "http://127.0.0.1/$(reboot)/"},
    {"base_url": "http://127.0.0.1/`id`/"},
    {"base_url": "http://127.0.0.1/'x'/"},
    {"base_url": "ftp://127.0.0.1/"},
    {"base_url": "http://127.0.0.1/?q=1"},
    {"append": ["a;reboot"]},
    {"append": ["$(id)"]},
    {"append": ["x'y"]},
    {"append": ["{"]},
], ids=lambda kw: repr(kw))
def test_values_that_would_inject_are_refused(netboot, kw):
    args = {"base_url": "http://127.0.0.1:8080/", "title": "PE", "append": [], **kw}
    with pytest.raises(InjectError) as err:
        inject_script(netboot, **args)
    assert err.value.code == Exit.USAGE


def test_cmdline_txt_is_checked_too(netboot):
    (netboot / "cmdline.txt").write_text("console=ttyS0 $(reboot)\n")
    _sums(netboot)
    with pytest.raises(InjectError, match="cmdline.txt"):
        inject_script(netboot, "http://127.0.0.1/", "PE", [])


def test_broken_netboot_folders_are_refused(tmp_path, netboot):
    with pytest.raises(InjectError, match="not a folder"):
        inject_script(tmp_path / "absent", "http://127.0.0.1/", "PE", [])
    (netboot / "vmlinuz").write_bytes(b"changed after SHA256SUMS was written")
    with pytest.raises(InjectError, match="changed after it was written"):
        inject_script(netboot, "http://127.0.0.1/", "PE", [])
    (netboot / "vmlinuz").unlink()
    with pytest.raises(InjectError, match="vmlinuz not found"):
        inject_script(netboot, "http://127.0.0.1/", "PE", [])
    (netboot / "SHA256SUMS").unlink()
    with pytest.raises(InjectError, match="SHA256SUMS not found"):
        inject_script(netboot, "http://127.0.0.1/", "PE", [])


def test_cli(tmp_path, netboot):
    out = tmp_path / "inject.sh"
    pebuilder("pe", "inject-script", netboot, "--url", "http://10.0.0.5:8080", "--out", out,
              "--title", "Rescue", "--append", "quiet loglevel=3")
    text = out.read_text()
    assert os.access(out, os.X_OK)
    assert "VMLINUZ_URL='http://10.0.0.5:8080/vmlinuz'" in text
    assert f"CMDLINE='{CMDLINE} quiet loglevel=3'" in text
    assert pebuilder("pe", "inject-script", netboot, "--url", "http://10.0.0.5/").stdout.startswith("#!/bin/sh\n")
    bad = pebuilder("pe", "inject-script", netboot, "--url", "http://h/", "--append", "a;b", check=False)
    assert bad.returncode == 1 and "--append" in bad.stderr and "Traceback" not in bad.stderr
    missing = pebuilder("pe", "inject-script", tmp_path / "nope", "--url", "http://h/", check=False)
    assert missing.returncode == 1 and "nope" in missing.stderr
