"""Stage keys cover every config key a stage reads (issue 17, part 1).

Three layers of proof:
- the recording config itself (views, coverage rules, values);
- the engine refuses a stage that reads a key it does not declare (so a new read cannot land
  without its declaration: every build in this suite runs under that check), and both systems'
  full builds below run every one of their stages under it;
- generated from the key registry: every key that can change an image is changed, one value per
  key, on a full build of each system, and the built outputs must change (or the key is declared
  inert in the registry, and then they must not).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import TCZ, make_marker_extension, make_template_iso, require_fixtures
from shared import built

from pebuilder import builds
from pebuilder.builds.common import Build, stage
from pebuilder.config import reads, registry
from pebuilder.config.model import Config
from pebuilder.engine.fingerprint import tree_digest
from pebuilder.engine.stages import Engine, Stage, StageGraphError

SDE = "1700000000"


# -- the recording config -----------------------------------------------------------------------------

def _cfg(data: dict[str, Any], tmp_path: Path) -> Config:
    return registry.parse({"system": "debian", "work": {"dir": str(tmp_path / "w")}, **data}, None, tmp_path)


def test_view_records_leaves_presence_and_counts(tmp_path):
    raw = _cfg({"boot": {"hostname": "h"},
                "output": {"iso": {"path": "x.iso"}, "disk": [{"path": "d.raw"}, {"path": "e.raw"}]}}, tmp_path)
    rec = reads.Recorder()
    cfg = reads.view(raw, rec)
    assert isinstance(cfg, Config) and isinstance(cfg.boot, type(raw.boot))
    with rec.scoped("s"):
        assert cfg.boot.hostname == "h"
        assert cfg.provision is None
        assert [d.path.name for d in cfg.output.disk] == ["d.raw", "e.raw"]
        assert bool(cfg.output.iso)
        registry.to_data(cfg.ssh)
    assert rec.reads("s") == {"boot.hostname", "provision?", "output.disk#", "output.disk[0].path",
                              "output.disk[1].path", "output.iso?", "ssh"}
    assert rec.reads(reads.BUILD) == set()


def test_coverage_rules():
    assert reads.covered("boot.hostname", ["boot"])
    assert reads.covered("users[0].shell", ["users"])
    assert reads.covered("output.disk[1].label", ["output.disk[1]"])
    assert not reads.covered("output.disk[1].label", ["output.disk[0]"])
    assert reads.covered("output.iso?", ["output.iso.uefi"])  # the value is None when the table is absent
    assert reads.covered("output.disk#", ["output.disk[0].data_label"])
    assert not reads.covered("boot.hostname", ["boot.host"])
    assert not reads.covered("boot", ["boot.hostname"])  # the whole table is more than one key
    assert reads.undeclared(["extensions.offline", "output.disk[0].path", "boot.codes"], ["output.disk[0]"],
                            registry.inert_keys()) == ["boot.codes"]


def test_declared_values_are_the_config_values(tmp_path):
    raw = _cfg({"boot": {"codes": ["quiet"]}, "output": {"disk": [{"path": "d.raw", "size": "1G"}]}}, tmp_path)
    got = reads.values(raw, ["boot.codes", "output.disk[0].size", "output.disk[3]", "provision?", "output.disk#",
                             "output.iso"])
    assert got == {"boot.codes": ["quiet"], "output.disk[0].size": 1 << 30, "output.disk[3]": None,
                   "provision?": False, "output.disk#": 1, "output.iso": None}


def test_every_key_says_which_system_reads_it_or_that_it_is_inert():
    """What the per-key test below is generated from: a key is read by one system (`only`), by both,
    or by neither (`inert`, with the reason)."""
    for k in registry.all_keys():
        assert k.only in (None, "tinycore", "debian"), k.path
        assert k.inert is None or len(k.inert) > 10, k.path


def test_a_key_only_the_other_system_reads_is_a_warning(tmp_path):
    cfg = _cfg({"services": {"bootsync": ["echo x"]}, "output": {"netboot": {"dir": "nb"}}}, tmp_path)
    assert cfg.warnings == ["services.bootsync: only the Tiny Core remaster reads this key; this Debian live "
                            "system ignores it"]


# -- the engine's check -------------------------------------------------------------------------------

class Toy(Build):
    """A one-stage build writing the host name into a file: the smallest build that reads config."""

    declared: tuple[str, ...] = ("boot.hostname",)

    def stages(self) -> list[Stage]:
        return [self.write()]

    @stage
    def write(self) -> Stage:
        out = self.plain.work.dir / "out.txt"

        def action() -> str:
            out.write_text(f"{self.cfg.boot.hostname} {self.cfg.boot.timeout}\n")
            return "written"

        return Stage("write", action, reads=self.declared, outputs=[out])


def test_a_stage_reading_an_undeclared_key_stops_the_build(tmp_path):
    toy = Toy(_cfg({"boot": {"hostname": "a", "timeout": 3}}, tmp_path))
    with pytest.raises(StageGraphError, match=r"stage 'write' reads config keys it does not declare: boot.timeout"):
        toy.run()


def test_a_declared_key_reruns_its_stage(tmp_path):
    Toy.declared = ("boot.hostname", "boot.timeout")
    try:
        for timeout, expect in ((3, "a 3.0\n"), (4, "a 4.0\n")):
            Toy(_cfg({"boot": {"hostname": "a", "timeout": timeout}}, tmp_path)).run()
            assert (tmp_path / "w/out.txt").read_text() == expect
        ran = Toy(_cfg({"boot": {"hostname": "a", "timeout": 4}}, tmp_path)).run().results
        assert [r.ran for r in ran] == [False]
    finally:
        Toy.declared = ("boot.hostname",)


def test_a_build_reading_a_key_outside_its_stages_stops(tmp_path):
    class Leaky(Toy):
        def stages(self) -> list[Stage]:
            self.hostname = self.cfg.boot.hostname  # read while making the list: no stage's key holds it
            return super().stages()

    with pytest.raises(StageGraphError, match="reads config keys outside its stages: boot.hostname"):
        Leaky(_cfg({"boot": {"hostname": "a"}}, tmp_path)).run()


# -- every key, changed, on full builds of both systems ---------------------------------------------------

@dataclass
class Case:
    """Change `key` to `value` (`with_` other changes the new value needs), on a build that already
    has `context` (applied to both sides), and expect the outputs to change."""

    value: Any
    context: dict[str, Any] = field(default_factory=dict)
    with_: dict[str, Any] = field(default_factory=dict)


@dataclass
class Reruns:
    """A key whose other value gives the same image (the same packages from another mirror
    address): the stages that read it must run again."""

    value: Any
    stages: tuple[str, ...]


@dataclass
class Keyed:
    """A key whose other value is a whole other system (another suite or architecture): building it
    is the business of that system's own tests; here its first stage's key must change."""

    value: Any
    stage: str


@dataclass
class Exempt:
    reason: str


Spec = Case | Reruns | Keyed | Exempt


def assets_dir(tmp_path_factory) -> Path:
    """Inputs both systems' cases use: extension folders, files, keys, a second template."""

    def make(d: Path) -> None:
        for name, marker in (("ext1", "ONE"), ("ext2", "TWO")):
            (d / name).mkdir()
            make_marker_extension(d / name, "pbtest", f"PB-KEYS-{marker}")
            make_marker_extension(d / name, "pbtwo", f"PB-KEYS-TWO-{marker}")
        for name, text in (("pw1", "secret-one\n"), ("pw2", "secret-two\n"), ("salt2", "another salt secret\n"),
                           ("file1", "first\n"), ("file2", "second\n")):
            (d / name).write_text(text)
        (d / "sshd_config").write_text("Port 2222\nPermitRootLogin no\n")
        (d / "hostkeys").mkdir()
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f",
                        str(d / "hostkeys/ssh_host_ed25519_key")], check=True)
        for name in ("ca1", "ca2"):
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                            "-nodes", "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.pem"),
                            "-subj", f"/CN=pebuilder {name}", "-days", "30"], check=True, capture_output=True)
        (d / "mydata/home/tc").mkdir(parents=True)
        (d / "mydata/home/tc/note").write_text("restored\n")
        mods = d / "modules/lib/modules/3.16.6-tinycore64"
        mods.mkdir(parents=True)
        (mods / "modules.dep").write_text("")
        (mods / "modules.builtin").write_text("kernel/fs/ext4/ext4.ko\n")
        iso = make_template_iso(d / "template.iso")
        tree = d / "template2"
        subprocess.run(["xorriso", "-osirrox", "on", "-indev", str(iso), "-extract", "/", str(tree)], check=True,
                       capture_output=True)
        for p in [tree, *tree.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        (tree / "README.pebuilder").write_text("a second template: the first one and a note\n")
        kernel = (tree / "boot/vmlinuz64").read_bytes()
        (d / "vmlinuz").write_bytes(kernel)
        (d / "vmlinuz-other").write_bytes(kernel + b"\0" * 512)
        mods2 = d / "modules2"
        shutil.copytree(d / "modules", mods2)
        (mods2 / "lib/modules/3.16.6-tinycore64/modules.builtin").write_text("kernel/fs/ext4/ext4.ko\n"
                                                                              "kernel/fs/ext2/ext2.ko\n")

    return built(tmp_path_factory, "keys-assets", make)


KEY1 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG8ysc4v3QahaIeGRbC6fkXBJbwNmxDNaC0H8w5hwiP8 one@pebuilder"
KEY2 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDgJyGO2n0t3bZVmKJWqk9hE84tF1K9OQ7aLx3ylGwF0 two@pebuilder"
HASH = "$6$pebuilder$QhG2JX6G4dB0Bv0r4w3xz4pHk1HjXbFHmF6yXn4K2xwKp1mQmHnW5cO8QmF5GxkQ8s1WqkQZxqK2J7pWl5Pw1."

# Keys both systems read, with the value each case sets (paths are filled in from the assets).
COMMON: dict[str, Callable[[Path], Spec]] = {
    "system": lambda a: Exempt("chooses which system is built: every test of either system is about one"),
    "extensions.dirs": lambda a: Case([str(a / "ext2"), str(TCZ)]),
    "extensions.onboot": lambda a: Case(["pbtest", "pbtwo"]),
    "extensions.ondemand": lambda a: Case(["pbtwo"]),
    "extensions.mirrors": lambda a: Case(["http://b.example/"]),
    "boot.codes": lambda a: Case(["quiet"]),
    "boot.timeout": lambda a: Case(7),
    "boot.serial": lambda a: Case(False),
    "boot.serial_getty": lambda a: Case(False),
    "boot.hostname": lambda a: Case("otherhost"),
    "initrd.compression": lambda a: Case("xz"),
    "initrd.level": lambda a: Case("best"),
    "users[].name": lambda a: Case("bob"),
    "users[].uid": lambda a: Case(1234),
    "users[].groups": lambda a: Case(["staff"]),
    "users[].shell": lambda a: Case("/bin/ash"),
    "users[].sudo": lambda a: Case(True),
    "users[].password_hash": lambda a: Case(HASH, with_={"users[0].password_file": None}),
    "users[].password_file": lambda a: Case(str(a / "pw2")),
    "users[].password_env": lambda a: Case("PB_KEYS_PASSWORD", with_={"users[0].password_file": None}),
    "users[].authorized_keys": lambda a: Case([KEY2]),
    "users[].replace": lambda a: Exempt("a permission: with it a clashing account is replaced, without it the "
                                        "build stops (test_customize); for a new account it has nothing to do"),
    "accounts.lock_root": lambda a: Case(False),
    "accounts.salt_file": lambda a: Case(str(a / "salt2")),
    "ssh.enable": lambda a: Case(False, context={"ssh.enable": True}),
    "ssh.host_keys": lambda a: Case(str(a / "hostkeys"), context={"ssh.enable": True}),
    "ssh.config": lambda a: Case(str(a / "sshd_config"), context={"ssh.enable": True}),
    "certificates.bundle": lambda a: Case(str(a / "ca2.pem")),
    "services.bootlocal": lambda a: Case(["echo other"]),
    "files[].source": lambda a: Case(str(a / "file2")),
    "files[].dest": lambda a: Case("/etc/pb-other"),
    "files[].mode": lambda a: Case("0600"),
    "files[].owner": lambda a: Case("1000:1000"),
    "output.iso.volume_id": lambda a: Case("OTHERVOL"),
    "output.iso.uefi": lambda a: Case(False),
    "output.disk[].path": lambda a: Case("out-other.raw"),
    "output.disk[].size": lambda a: Case("300M"),
    "output.disk[].table": lambda a: Case("msdos"),
    "output.disk[].firmware": lambda a: Case("bios"),
    "output.disk[].filesystem": lambda a: Case("ext3"),
    "output.disk[].label": lambda a: Case("OTHERLBL"),
    "output.disk[].format": lambda a: Case("qcow2"),
    "output.disk[].data_size": lambda a: Case("12M"),
    "output.disk[].data_label": lambda a: Case("OTHERDATA"),
    "provision.image": lambda a: Case("http://10.0.2.100/other.img", context={
        "provision.install": None, "provision.image": "http://10.0.2.100/a.img", "provision.sha256": "a" * 64}),
    "provision.sha256": lambda a: Case("b" * 64, context={
        "provision.install": None, "provision.image": "http://10.0.2.100/a.img", "provision.sha256": "a" * 64}),
    "provision.target": lambda a: Case("/dev/vdb"),
    "provision.then": lambda a: Case("reboot"),
    "provision.grow": lambda a: Case(True, context={"provision.grow": False}),
    "provision.script": lambda a: Case(["echo provisioned"]),
}

DEBIAN: dict[str, Callable[[Path], Spec]] = {
    **COMMON,
    "base.suite": lambda a: Keyed("trixie", "packages"),
    "base.variant": lambda a: Keyed("minbase", "packages"),
    "base.arch": lambda a: Keyed("arm64", "packages"),
    "base.mirror": lambda a: Reruns("", ("packages", "base", "extensions")),  # filled in: the host's mirror
    "base.packages": lambda a: Case(["jq"]),
    "base.trim": lambda a: Case(False, context={"base.packages": ["jq"]}),
    "base.compression": lambda a: Case("xz"),
    "boot.autologin": lambda a: Case(False, context={"boot.serial_getty": False}),
    "boot.secure_boot": lambda a: Case(True),  # signed shim + GRUB on every ESP
    "kernel.package": lambda a: Case("linux-image-cloud-amd64"),
    "kernel.modules": lambda a: Case(["fuse", "nbd"]),
    "kernel.firmware": lambda a: Case(True),
    "output.netboot.mode": lambda a: Case("embed"),
    "output.netboot.url": lambda a: Case("http://10.0.2.100/other"),
    # on the netinstall build (NETINSTALL_KEYS): install = "debian"
    "provision.install": lambda a: Case("self"),
    "provision.suite": lambda a: Case("trixie"),
    "provision.mirror": lambda a: Case("http://10.0.2.100/other"),
    "provision.packages": lambda a: Case(["jq"]),
    "provision.kernel": lambda a: Case("linux-image-cloud-amd64"),
    "provision.hostname": lambda a: Case("otherhost"),
    "provision.swap": lambda a: Case("64M"),
    "provision.initramfs": lambda a: Case("targeted"),
}

TINYCORE: dict[str, Callable[[Path], Spec]] = {
    **{k: v for k, v in COMMON.items() if not k.startswith(("provision.", "output.netboot"))},
    "template.iso": lambda a: Case(str(a / "template2")),
    "extensions.initrd": lambda a: Case(["pbtest", "kmaps"]),
    "extensions.builtin": lambda a: Case(["pbtwo"]),
    "extensions.scripts": lambda a: Case("ignore"),
    "extensions.copy2fs": lambda a: Case(True),
    "extensions.repo": lambda a: Reruns("14.x/x86_64/tcz", ("extensions-initrd", "extensions-cde")),
    "boot.autologin": lambda a: Case(False),
    "boot.modules": lambda a: Case(["virtio_net"], context={"kernel.package": "linux-image-cloud-amd64"}),
    "base.suite": lambda a: Keyed("trixie", "kernel"),
    "base.mirror": lambda a: Keyed("http://deb.example/debian", "kernel"),
    "kernel.package": lambda a: Case("linux-image-cloud-amd64"),
    "kernel.vmlinuz": lambda a: Case(str(a / "vmlinuz-other"), context={
        "kernel.vmlinuz": str(a / "vmlinuz"), "kernel.modules_dir": str(a / "modules")}),
    "kernel.modules_dir": lambda a: Case(str(a / "modules2"), context={
        "kernel.vmlinuz": str(a / "vmlinuz"), "kernel.modules_dir": str(a / "modules")}),
    "services.bootsync": lambda a: Case(["echo sync"]),
    "services.filetool": lambda a: Case(["etc/pb-kept"]),
    "kiosk.url": lambda a: Case("http://kiosk.example/"),
    "output.disk[].persist": lambda a: Case(["home"]),
    "output.disk[].mydata": lambda a: Case(str(a / "mydata")),
    "output.netboot.mode": lambda a: Exempt("one value for Tiny Core (embed); fetch is refused with a message"),
    "provision.image": COMMON["provision.image"],
    "provision.sha256": COMMON["provision.sha256"],
    "provision.target": COMMON["provision.target"],
    "provision.then": COMMON["provision.then"],
    "provision.grow": COMMON["provision.grow"],
    "provision.script": COMMON["provision.script"],
}

TABLES = {"debian": DEBIAN, "tinycore": TINYCORE}


def keys_for(system: str) -> list[str]:
    return [k.path for k in registry.all_keys() if k.only in (None, system)]


# Keys changed on a second Debian build whose PE installs Debian (install = "debian").
NETINSTALL_KEYS = {"provision.install", "provision.suite", "provision.mirror", "provision.packages",
                   "provision.kernel", "provision.hostname", "provision.swap", "provision.initramfs"}


def variant_of(system: str, key: str) -> str:
    return "netinstall" if system == "debian" and key in NETINSTALL_KEYS else ""


def base_data(system: str, folder: Path, a: Path, variant: str = "") -> dict[str, Any]:
    """A build that uses every feature, so that each key has something to change."""
    if variant == "netinstall":
        return {**base_data(system, folder, a), "provision": {"install": "debian", "then": "poweroff", "grow": False}}
    work = folder / "work"
    common: dict[str, Any] = {
        "work": {"dir": str(work)},
        "initrd": {"compression": "gzip", "level": "fast"},
        "boot": {"serial": True, "timeout": 1, "hostname": "keys", "serial_getty": True},
        "users": [{"name": "alice", "uid": 1100, "password_file": str(a / "pw1"), "authorized_keys": [KEY1]}],
        "ssh": {"enable": True},
        "certificates": {"bundle": str(a / "ca1.pem")},
        "services": {"bootlocal": ["echo local"]},
        "files": [{"source": str(a / "file1"), "dest": "/etc/pb-file", "mode": "0644"}],
        "output": {"iso": {"path": str(work / "out.iso")},
                   "disk": [{"path": str(work / "out-disk.raw"), "size": "256M", "table": "gpt", "firmware": "both",
                             "data_size": "8M"}]},
    }
    if system == "debian":
        return {**common, "system": "debian",
                # Small and fast: busybox and one module (each case repacks the system).
                "base": {"variant": "tiny", "compression": "lz4"}, "kernel": {"modules": ["fuse"]},
                "extensions": {"dirs": [str(a / "ext1")], "onboot": ["pbtest"], "mirrors": ["http://a.example/"]},
                "output": {**common["output"], "netboot": {"dir": str(work / "out-nb"), "mode": "fetch",
                                                           "url": "http://10.0.2.100/nb"}},
                "ssh": {"enable": False},
                "provision": {"install": "self", "then": "poweroff", "grow": False}}
    return {**common, "template": {"iso": str(a / "template.iso")},
            "extensions": {"dirs": [str(a / "ext1"), str(TCZ)], "initrd": ["pbtest"], "onboot": ["ethtool"],
                           "mirrors": ["http://a.example/"]},
            "services": {**common["services"], "bootsync": ["echo sync0"]},
            "output": {**common["output"], "netboot": {"dir": str(work / "out-nb")}},
            "provision": {"image": "http://10.0.2.100/a.img", "sha256": "a" * 64, "then": "poweroff"}}


def set_key(data: dict[str, Any], path: str, value: Any) -> None:
    """Set `users[0].name`-style paths in TOML-shaped data (None removes the key)."""
    parts = path.replace("[]", "[0]").split(".")
    node: Any = data
    for p in parts[:-1]:
        name, _, idx = p.partition("[")
        node = node.setdefault(name, [{}] if idx else {})
        if idx:
            node = node[int(idx.rstrip("]"))]
    if value is None:
        node.pop(parts[-1], None)
    else:
        node[parts[-1]] = value


def assets(tmp_path_factory) -> Path:
    require_fixtures()
    return assets_dir(tmp_path_factory)


def run_build(data: dict[str, Any], folder: Path) -> Engine:
    cfg = registry.parse(data, None, folder)
    return builds.for_config(cfg).run()


# Keys every output carrying a kernel command line must follow: the install image and the netboot
# folder too, not only the ISO they sit in (they read the boot entry from config, not from the ISO's menus).
EVERYWHERE = {"debian": ({"boot.hostname", "boot.codes", "boot.serial"}, {"iso", "disk", "netboot", "install"}),
              "tinycore": ({"boot.hostname", "boot.codes", "boot.serial"}, {"iso", "disk", "netboot"})}

# Keys that change these outputs exactly. secure_boot: every ESP (ISO, disk, install image), and the
# netboot folder through the install image it serves to the PE.
EXACTLY: dict[str, dict[str, set[str]]] = {"debian": {"boot.secure_boot": {"iso", "disk", "install", "netboot"}},
                                           "tinycore": {}}


def outputs(data: dict[str, Any]) -> dict[str, str]:
    """Each output's content digest, by role (a disk whose path changes is still the disk)."""
    out = data["output"]
    got = {"iso": out["iso"]["path"], "disk": out["disk"][0]["path"]}
    if "netboot" in out:
        got["netboot"] = out["netboot"]["dir"]
    install = Path(data["work"]["dir"]) / ".pebuilder/products/install.img.gz"
    if data.get("provision", {}).get("install") == "self" and install.exists():
        got["install"] = str(install)
    folder = Path(data["work"]["dir"])
    digest = {}
    for role, p in got.items():
        path = Path(p) if Path(p).is_absolute() else folder.parent / p
        if path.is_dir():
            digest[role] = tree_digest(path)
        else:
            h = hashlib.sha256()
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
            digest[role] = h.hexdigest()
    return digest


@pytest.fixture(scope="module")
def env():
    old = {k: os.environ.get(k) for k in ("SOURCE_DATE_EPOCH", "PB_KEYS_PASSWORD")}
    os.environ["SOURCE_DATE_EPOCH"] = SDE
    os.environ["PB_KEYS_PASSWORD"] = "from-the-environment"
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def base_build(tmp_path_factory, system: str, variant: str = "") -> tuple[Path, Path]:
    a = assets(tmp_path_factory)

    def make(d: Path) -> None:
        engine = run_build(base_data(system, d, a, variant), d)
        names = [r.name for r in engine.results]
        # Every stage of the system ran, each under the engine's check of its config reads.
        assert all(r.ran for r in engine.results), names
        (d / "stages.txt").write_text("\n".join(names) + "\n")

    return built(tmp_path_factory, f"keys-{system}" + (f"-{variant}" if variant else ""), make), a


def fresh_copy(base: Path, folder: Path) -> Path:
    subprocess.run(["cp", "-a", "--reflink=auto", str(base), str(folder)], check=True)  # disks stay sparse
    return folder


CASES = [pytest.param(system, key, id=f"{system}:{key}", marks=pytest.mark.network)
         for system in ("debian", "tinycore") for key in keys_for(system)]


@pytest.mark.parametrize("system,key", CASES)
def test_changing_a_key_changes_the_image(system, key, tmp_path_factory, tmp_path, env):
    info = {k.path: k for k in registry.all_keys()}[key]
    variant = variant_of(system, key)
    base, a = base_build(tmp_path_factory, system, variant)
    if info.inert:
        return check_inert(system, key, base, a, tmp_path)
    table = TABLES[system]
    if key not in table and info.choices and len(info.choices) == 1:
        pytest.skip(f"{key} has one accepted value: there is nothing to change it to")
    assert key in table, (f"{key} can change a {system} image: give it a case in test_stage_reads.py "
                          "(or declare it inert in config/model.py)")
    spec = table[key](a)
    if isinstance(spec, Exempt):
        pytest.skip(spec.reason)
    folder = fresh_copy(base, tmp_path / "b")
    data = base_data(system, folder, a, variant)
    if key == "output.disk[].path":
        spec = Case(str(folder / "work" / spec.value))
    if isinstance(spec, Keyed):
        return check_keyed(data, folder, key, spec)
    if isinstance(spec, Reruns):
        value = spec.value or host_mirror()
        set_key(data, key, value)
        ran = {r.name for r in run_build(data, folder).results if r.ran}
        assert set(spec.stages) <= ran, ran
        return
    assert isinstance(spec, Case)
    for k, v in spec.context.items():
        set_key(data, k, v)
    if spec.context:
        run_build(data, folder)
    before = outputs(data)
    set_key(data, key, spec.value)
    for k, v in spec.with_.items():
        set_key(data, k, v)
    engine = run_build(data, folder)
    after = outputs(data)
    changed = [role for role in before if before[role] != after[role]]
    assert changed, (f"{key} changed to {spec.value!r}, and no output changed; stages that ran: "
                     f"{[r.name for r in engine.results if r.ran]}")
    keys, roles = EVERYWHERE[system]
    if key in keys:
        assert set(changed) == roles, f"{key} changed only {changed}"
    if key in EXACTLY[system]:
        assert set(changed) == EXACTLY[system][key], f"{key} changed {changed}"


def check_inert(system: str, key: str, base: Path, a: Path, tmp_path: Path) -> None:
    """An inert key changes nothing in the image: the outputs, wherever they go, keep their bytes."""
    folder = fresh_copy(base, tmp_path / "b")
    data = base_data(system, folder, a)
    before = outputs(data)
    new = {"work.dir": None, "work.extract_limit": "8G", "extensions.offline": True,
           "output.iso.path": str(folder / "work/moved.iso"), "output.netboot.dir": str(folder / "work/nb-moved")}
    assert key in new, f"{key} is declared inert: give it a value here to check that claim"
    if key == "work.dir":  # the whole project moved: nothing reruns (keys hold work paths relative to it)
        moved = tmp_path / "moved"
        folder.rename(moved)
        data = base_data(system, moved, a)
        ran = [r.name for r in run_build(data, moved).results if r.ran]
        assert ran == [], ran
        assert outputs(data) == before
        return
    set_key(data, key, new[key])
    engine = run_build(data, folder)
    assert outputs(data) == before
    ran = [r.name for r in engine.results if r.ran]
    assert set(ran) <= {"package-iso", "netboot"}, ran


def check_keyed(data: dict[str, Any], folder: Path, key: str, spec: Keyed) -> None:
    """The key of the first stage reading it changes (the build itself is another system's test)."""

    def key_of(d: dict[str, Any]) -> str:
        build = builds.for_config(registry.parse(d, None, folder))
        from pebuilder.builds.common import ConfigReads

        engine = Engine(folder / "work/.pebuilder", config=ConfigReads(build))
        stages = {s.name: s for s in build.stages()}
        return engine.key(stages[spec.stage])

    before = key_of(data)
    set_key(data, key, spec.value)
    assert key_of(data) != before


def host_mirror() -> str:
    from pebuilder.debian import lock

    src = lock.sources_for("bookworm", None)[0]
    return src.uri.rstrip("/") + "//"


def test_the_reported_mirror_change_reaches_the_system(tmp_path_factory, tmp_path, env):
    """The reproduction of the issue: [extensions] mirrors changed, and core.sqfs holds the new one."""
    base, a = base_build(tmp_path_factory, "debian")
    folder = fresh_copy(base, tmp_path / "b")
    data = base_data("debian", folder, a)
    set_key(data, "extensions.mirrors", ["http://b.example/"])
    ran = [r.name for r in run_build(data, folder).results if r.ran]
    assert "customise" in ran and "core-sqfs" in ran
    out = tmp_path / "core"
    subprocess.run(["unsquashfs", "-no-xattrs", "-d", str(out), str(folder / "work/.pebuilder/products/core.sqfs"),
                    "etc/sysconfig/tcemirror"], check=True, capture_output=True)
    assert (out / "etc/sysconfig/tcemirror").read_text() == "http://b.example/\n"
