"""The Debian-based live system as a flat sequence of stages: the table of contents is `stages()`.

The medium holds /boot (kernel, initramfs, boot loaders), /os/core.sqfs (the system), /ext
(extensions + onboot.lst) and, on disks, /data (persistence). Work trees: `.pebuilder/base` (the
base as packages give it), `system/` (the base customised: what core.sqfs is made of), `image/`
(the medium, assembled from products). A change of boot codes or extensions never rebuilds
core.sqfs: those stages do not read it.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pebuilder import arch as archs
from pebuilder.builds.common import (
    CUSTOMISATION_READS,
    Build,
    customisation_files,
    customisation_trees,
    password_digests,
    salt_secret,
    stage,
)
from pebuilder.config import registry
from pebuilder.config.model import Config, DiskOutput
from pebuilder.customise import accounts, certificates, files, modules, provision, ssh
from pebuilder.customise.modules import KernelFiles
from pebuilder.customise.profile import DEBIAN
from pebuilder.debian import base, initramfs, kernel_pkg, live_ext, lock, secureboot, system_modules
from pebuilder.debian import extensions as debext
from pebuilder.engine.stages import Stage
from pebuilder.errors import Exit, PebuilderError
from pebuilder.formats import squashfs
from pebuilder.fsroot import Budget, FsRoot, TreeMeta
from pebuilder.fsutil import link_tree, rmtree, write_text_atomic
from pebuilder.net.cache import DownloadCache
from pebuilder.outputs.esp import SignedChain

log = logging.getLogger("pebuilder.debian")

MARKER = "pebuilder: system is up"
INSTALL_LABEL = "PBLIVE"
# What the kernel command line and the boot menus are made of (cmdline(), entry()).
BOOT_ENTRY_READS = ("boot.hostname", "boot.serial", "boot.codes", "boot.timeout")
# What base_packages() reads.
BASE_PACKAGES_READS = ("base.packages", "kernel.firmware", "ssh.enable", "provision.image", "provision.grow",
                       "provision.install")
# What the PE runs to install Debian on a disk (debootstrap under dash: busybox sh would run its own
# applets in place of GNU tar and dpkg-deb), and to partition and format it.
NETINSTALL_TOOLS = ("debootstrap", "dash", "tar", "dpkg", "perl-base", "fdisk", "e2fsprogs", "dosfstools")
SYSLINUX = {"isolinux.bin": "/usr/lib/ISOLINUX/isolinux.bin",
            "ldlinux.c32": "/usr/lib/syslinux/modules/bios/ldlinux.c32"}


@dataclass
class Paths:
    work: Path

    state = property(lambda self: self.work / ".pebuilder")
    lock = property(lambda self: self.state / "packages.lock.json")
    base = property(lambda self: self.state / "base")
    base_meta = property(lambda self: self.state / "base.meta.json")
    kernel_json = property(lambda self: self.state / "kernel.json")
    system = property(lambda self: self.work / "system")
    system_meta = property(lambda self: self.state / "system.meta.json")
    products = property(lambda self: self.state / "products")
    core = property(lambda self: self.products / "core.sqfs")
    initrd = property(lambda self: self.products / "initrd.img")
    content_id = property(lambda self: self.products / "content.id")
    ext = property(lambda self: self.products / "ext")
    boot = property(lambda self: self.products / "boot")
    esp = property(lambda self: self.products / "esp.img")
    install = property(lambda self: self.products / "install.img.gz")
    install_sum = property(lambda self: self.products / "install.img.gz.sha256")
    netboot_initrd = property(lambda self: self.products / "netboot-initrd.img")
    netinstall = property(lambda self: self.products / "netinstall")
    netinstall_meta = property(lambda self: self.state / "netinstall.meta.json")
    image = property(lambda self: self.work / "image")
    scratch = property(lambda self: self.state / "tmp")


class DebianLive(Build):
    system = "debian"
    functions = ("rebuild", "packages", "base")
    global_reads = ("base.arch", "provision.install")  # the architecture; whether there is an install image

    def __init__(self, cfg: Config):
        super().__init__(cfg)
        self.p = Paths(cfg.work.dir)
        self._arch = archs.parse(cfg.base.arch) if cfg.base.arch else archs.host()
        self.cache = DownloadCache(offline=cfg.extensions.offline)

    # -- the sequence -----------------------------------------------------------------------------

    def stages(self) -> list[Stage]:
        return [
            self.packages(),
            self.base_tree(),
            self.kernel(),
            *([self.netinstall_plan()] if self.wants_netinstall() else []),
            self.system_tree(),
            self.system_kernel_modules(),
            self.customise(),
            self.core_sqfs(),
            self.initramfs(),
            self.extensions(),
            self.content_id(),
            self.boot_menus(),
            self.efi_boot(),
            *([self.install_image()] if self.wants_install_image() else []),
            self.medium(),
            *([self.package_iso()] if self.cfg.output.iso else []),
            *([self.netboot()] if self.cfg.output.netboot else []),
            *(self.disk_image(i, d) for i, d in enumerate(self.cfg.output.disk)),
        ]

    def arch(self) -> archs.Arch:
        return self._arch

    def select(self, function: str) -> set[str] | None:
        """`packages`: only resolve and pin; `base`: also the base tree (what extensions build against)."""
        return {"packages": {"packages"}, "base": {"packages", "base"}}.get(function)

    def trees(self) -> list[Path]:
        return [*super().trees(), self.p.system]

    def check_target(self) -> tuple[Path, str, str, str]:
        a = self.arch()
        if self.cfg.output.iso:
            return self.cfg.output.iso.path, "bios" if a.bios else "uefi", "cdrom", MARKER
        d = self.cfg.output.disk[0]
        return d.path, "uefi" if d.firmware == "uefi" or not a.bios else "bios", "disk", MARKER

    # -- helpers ----------------------------------------------------------------------------------

    def lockfile(self) -> lock.Lock:
        return lock.Lock.load(self.p.lock)

    def kernel_files(self) -> KernelFiles:
        k = json.loads(self.p.kernel_json.read_text())
        return KernelFiles(Path(k["vmlinuz"]), k["kver"], Path(k["root"]), k["source"])

    def grub_kernel(self) -> Path:
        """The kernel the medium carries for GRUB (on arm64 gzip'd; netboot keeps the plain one)."""
        return Path(json.loads(self.p.kernel_json.read_text())["boot"])

    def busybox(self) -> Path:
        return base.busybox_binary(lock.unpacked(self.lockfile().one("boot", "busybox-static"), self.cache))

    def host_grub(self) -> bool:
        """The host has GRUB's UEFI modules for the target (else the target's package is unpacked)."""
        a = self.arch()
        return bool(a.grub_efi) and (Path("/usr/lib/grub") / str(a.grub_efi)).is_dir()

    def grub_lib(self) -> Path | None:
        """GRUB's modules for the target: the host's when it has them, else the target's package."""
        if self.host_grub():
            return None
        pinned = [p for p in self.lockfile().group("boot") if p.name == self.arch().grub_efi_package]
        return lock.unpacked(pinned[0], self.cache) / "usr/lib/grub" if pinned else None

    def signed_chain(self) -> SignedChain | None:
        """boot.secure_boot: Debian's signed shim and GRUB for the ESPs (debian/secureboot.py says why)."""
        if not self.cfg.boot.secure_boot:
            return None
        c = secureboot.chain(self.arch())
        lk = self.lockfile()
        found = secureboot.files(c, [lock.unpacked(lk.one("boot", n), self.cache) for n in c.packages])
        return SignedChain(found["shim"], found["grub"], c.grub_name, c.prefix, found["mok_manager"])

    def budget(self, what: str) -> Budget:
        return Budget(max_bytes=self.cfg.work.extract_limit, what=what)

    def base_packages(self) -> list[str]:
        pkgs = list(self.cfg.base.packages)
        if self.cfg.kernel.firmware:
            pkgs.append("firmware-linux-free")
        if self.cfg.ssh.enable and "openssh-server" not in pkgs:
            pkgs.append("openssh-server")
        pv = self.cfg.provision
        if pv and pv.image and pv.image.endswith(".zst") and "zstd" not in pkgs:
            pkgs.append("zstd")  # busybox has no zstd
        if pv and pv.grow:
            # busybox has neither a GPT-aware partitioner nor an ext4 resizer
            pkgs += [p for p in ("fdisk", "e2fsprogs") if p not in pkgs]
        if pv and pv.install == "debian":
            pkgs += [p for p in NETINSTALL_TOOLS if p not in pkgs]
        return pkgs

    def wants_netinstall(self) -> bool:
        return self.cfg.provision is not None and self.cfg.provision.install == "debian"

    def media_label(self, disk: DiskOutput | None = None) -> str:
        if disk is not None:
            return f"LABEL={disk.label}"
        return f"LABEL={self.cfg.output.iso.volume_id}" if self.cfg.output.iso else "LABEL=PEBUILDER"

    def medium_id(self, role: str) -> str:
        """This build's identity on one medium (pb.id=, /os/pebuilder.id; see debian/live/medium.sh)."""
        return initramfs.medium_id(self.p.content_id.read_text().strip(), role)

    def iso_id(self) -> str:
        return self.medium_id(f"medium|{self.media_label()}")

    def cmdline(self, media: str, ident: str = "") -> list[str]:
        b = self.cfg.boot
        codes = [f"pb.media={media}", *([f"pb.id={ident}"] if ident else [])]
        if b.hostname:
            codes.append(f"host={b.hostname}")
        if b.serial and not any(c.startswith("console=") for c in b.codes):
            codes += ["console=tty0", f"console={self.arch().console},115200"]
        return codes + list(b.codes)

    # -- stages -----------------------------------------------------------------------------------

    @stage
    def packages(self) -> Stage:
        """Resolve and pin the package set (kept until the config's package set changes or --refresh)."""
        b = self.cfg.base
        a = self.arch()

        def action() -> str:
            kernel_meta = kernel_pkg.meta_name(a, self.cfg.kernel.package)
            archive = lock.open_archive(b.suite, a, b.mirror, self.cache, self.cfg.extensions.offline)
            boot = ["busybox-static"] + ([base.LOCALE_PACKAGE] if b.variant == "tiny" else [])
            if a.grub_efi_package and not self.host_grub():
                boot.append(a.grub_efi_package)
            if self.cfg.boot.secure_boot:
                boot += secureboot.chain(a).packages
            wanted = self.base_packages()
            pinned = (lock.resolve_closure(archive, wanted, base.tiny_have(archive, {}, wanted))
                      if b.variant == "tiny" else [])
            groups = {"base": pinned,
                      "boot": [lock.Pinned.of(archive.package(n)) for n in boot]
                      + [lock.Pinned.of(p) for p in kernel_pkg.image_packages(archive, kernel_meta)]}
            lk = lock.Lock(b.suite, a.debian, [f"{s.uri} {s.suite}" for s in archive.sources], groups)
            lk.save(self.p.lock)
            kernel = groups["boot"][-1]
            return f"{len(groups['base'])} base packages, kernel {kernel.name} {kernel.version}"

        return Stage("packages", action, reads=("base", "kernel.package", "boot.secure_boot", *BASE_PACKAGES_READS),
                     values={"refresh": time.time() if self.refresh else None}, outputs=[self.p.lock])

    @stage
    def base_tree(self) -> Stage:
        b = self.cfg.base

        def action() -> str:
            rmtree(self.p.base)
            fs = FsRoot(self.p.base)
            budget = self.budget(f"the {b.variant} base")
            lk = self.lockfile()
            if b.variant == "tiny":
                base.skeleton(fs, self.arch())
                debs = lock.fetch_all(lk.group("base"), self.cache)
                n = base.unpack_debs(fs, debs, b.trim, budget)
                links = base.install_busybox(fs, self.busybox(), only_missing=False)
                base.install_locale(fs, lock.fetch(lk.one("boot", base.LOCALE_PACKAGE), self.cache), budget)
                users = base.package_users(fs, [p.name for p in lk.group("base")])
                note = f"busybox ({links} applets) + {len(debs)} packages ({n} files)" + (
                    f", users {' '.join(users)}" if users else "")
            else:
                self.p.scratch.mkdir(parents=True, exist_ok=True)
                tarball = self.p.scratch / "minbase.tar"
                sources = lock.sources_for(b.suite, b.mirror)
                base.mmdebstrap_tar(tarball, b.suite, self.arch(), sources, ["busybox-static", *self.base_packages()],
                                    b.trim)
                base.unpack_tar(fs, tarball, budget)
                tarball.unlink()
                for d in ("os", "ext", "data"):
                    fs.mkdir(d, 0o755, keep=True)
                links = base.install_busybox(fs, self.busybox(), only_missing=True)
                note = f"mmdebstrap minbase + {len(self.base_packages()) + 1} packages, {links} busybox links"
            fs.meta.save(self.p.base_meta)
            return note + (f", {base.LOCALE} locale" if base.locale_size(fs) else f", no {base.LOCALE} locale")

        return Stage("base", action, after=["packages"],
                     reads=("base.variant", "base.trim", "base.suite", "base.mirror", *BASE_PACKAGES_READS),
                     outputs=[self.p.base, self.p.base_meta])

    @stage
    def kernel(self) -> Stage:
        def action() -> str:
            parts = [p for p in self.lockfile().group("boot") if kernel_pkg.is_part(p.name)]
            pinned = parts[-1]
            kf = kernel_pkg.files([lock.unpacked(p, self.cache) for p in parts], pinned.deb_name)
            boot = kernel_pkg.for_grub(kf.vmlinuz, self.p.products / "vmlinuz.gz")
            write_text_atomic(self.p.kernel_json, json.dumps(
                {"kver": kf.kver, "vmlinuz": str(kf.vmlinuz), "root": str(kf.root), "source": kf.source,
                 "boot": str(boot)}))
            how = ", gzip'd for GRUB" if boot != kf.vmlinuz else ""
            return f"{pinned.name} {pinned.version}{how}"

        gz = [self.p.products / "vmlinuz.gz"] if self.arch().name == "aarch64" else []
        return Stage("kernel", action, after=["packages"], outputs=[self.p.kernel_json, *gz])

    @stage
    def netinstall_plan(self) -> Stage:
        """install = "debian": what the PE installs on a disk, resolved now against the verified index
        (debian/netinstall.py says why here and not in the PE)."""
        from pebuilder.customise.accounts import password_hash
        from pebuilder.debian import netinstall

        folder = self.p.netinstall

        def action() -> str:
            c = self.cfg
            pv = c.provision
            assert pv is not None
            suite = pv.suite or c.base.suite
            archive = lock.open_archive(suite, self.arch(), c.base.mirror, self.cache, c.extensions.offline)
            ssh = bool(c.ssh.enable or any(u.authorized_keys for u in c.users))
            include = netinstall.wanted(self.arch(), pv.kernel, list(pv.packages), ssh, any(u.sudo for u in c.users),
                                        bool(c.certificates.bundle))
            plan = netinstall.make(archive, self.arch(), suite, include)
            rmtree(folder)
            fs = FsRoot(folder)
            settings = {"mirror": (pv.mirror or plan.sources[0]).rstrip("/"), "hostname": pv.hostname,
                        "swap": pv.swap, "initramfs": pv.initramfs}
            n = netinstall.write(fs, plan, settings)
            secret = salt_secret(c)
            fs.write("users", netinstall.users_file(list(c.users), [password_hash(u, secret) for u in c.users]),
                     0o600)
            fs.mkdir("keys", 0o755, keep=True)
            for u in c.users:
                if u.authorized_keys:
                    fs.write(f"keys/{u.name}", "".join(k + "\n" for k in u.authorized_keys), 0o644)
            if c.certificates.bundle:
                from pebuilder.customise import certificates

                fs.copy_from(certificates.bundle_path(c.certificates.bundle), "ca.crt", 0o644)
            fs.meta.save(self.p.netinstall_meta)
            return f"Debian {suite}: {n['packages']} packages, {n['bytes'] >> 20} MiB to fetch at install time"

        return Stage("netinstall-plan", action, after=["packages"],
                     reads=("provision", "base.suite", "base.mirror", "users", "ssh.enable", "certificates.bundle",
                            "accounts.salt_file"),
                     values=lambda: {"secrets": password_digests(self.cfg),
                                     "refresh": time.time() if self.refresh else None},
                     files=self.ca_bundle_file, outputs=[folder, self.p.netinstall_meta])

    def ca_bundle_file(self) -> list[Path]:
        if not self.cfg.certificates.bundle:
            return []
        from pebuilder.customise import certificates

        path = certificates.bundle_path(self.cfg.certificates.bundle)
        return [path] if path.is_file() else []

    @stage
    def system_tree(self) -> Stage:
        def action() -> str:
            rmtree(self.p.system)
            link_tree(self.p.base, self.p.system)
            TreeMeta.load(self.p.base_meta).save(self.p.system_meta)
            return "from the base"

        return Stage("system-tree", action, after=["base"], chain="system")

    def system_fs(self) -> FsRoot:
        return FsRoot(self.p.system, TreeMeta.load(self.p.system_meta))

    @stage
    def system_kernel_modules(self) -> Stage:
        def action() -> str:
            kf = self.kernel_files()
            fs = self.system_fs()
            chosen = system_modules.select(kf, self.cfg.kernel.modules)
            modules.install(fs, kf, chosen)
            fs.meta.save(self.p.system_meta)
            return f"{len(chosen)} modules of {kf.kver}"

        return Stage("system-modules", action, after=["kernel"], chain="system", reads=("kernel.modules",))

    @stage
    def customise(self) -> Stage:
        c = self.cfg

        def action() -> str:
            fs = self.system_fs()
            done = []
            if c.users or c.accounts.lock_root:
                done.append(accounts.apply(fs, c.users, c.accounts.lock_root, DEBIAN, salt_secret(c)))
            if c.ssh.enable:
                done.append(ssh.apply(fs, DEBIAN, c.ssh.config, c.ssh.host_keys))
                base.enable_sshd(fs)
            if c.certificates.bundle:
                done.append(certificates.apply(fs, DEBIAN, c.certificates.bundle))
            if c.files:
                done.append(files.apply(fs, c.files))
            if provision.write_conf(fs, c.provision):
                done.append("provisioning")
            if self.wants_netinstall():
                from pebuilder.debian import netinstall

                netinstall.install(fs, self.p.netinstall)
                provision.install_script(fs, "usr/sbin/pb-netinstall", "pb-netinstall")
                link = fs.path("usr/sbin/chroot", follow_last=False)
                if link.is_symlink() or link.exists():
                    fs.remove("usr/sbin/chroot")  # busybox's applet
                provision.install_script(fs, "usr/sbin/chroot", "pb-chroot")
                done.append("netinstall plan")
            release = f"pebuilder live ({c.base.variant}, Debian {c.base.suite}, {self.arch().debian})"
            base.system_files(fs, base.inittab(self.arch().console, c.boot.serial_getty, c.boot.autologin),
                              c.services.bootlocal, c.boot.hostname or "pebuilder", release,
                              debext.repo_path(c.base.suite, self.arch()),
                              c.extensions.mirrors[0] if c.extensions.mirrors else None)
            fs.meta.save(self.p.system_meta)
            return ", ".join(done) or "system files"

        return Stage("customise", action, chain="system", after=["netinstall-plan"] if self.wants_netinstall() else [],
                     reads=(*CUSTOMISATION_READS, "services.bootlocal", "boot.serial_getty", "boot.autologin",
                            "boot.hostname", "base.variant", "base.suite", "extensions.mirrors"),
                     values=lambda: password_digests(c), files=lambda: customisation_files(c),
                     trees=lambda: customisation_trees(c), outputs=[self.p.system, self.p.system_meta])

    @stage
    def core_sqfs(self) -> Stage:
        def action() -> str:
            comp = self.cfg.base.compression
            size = squashfs.make(self.p.system, TreeMeta.load(self.p.system_meta), self.p.core, compression=comp,
                                 bcj=self.arch().squashfs_bcj, scratch=self.p.scratch)
            return f"{size} bytes ({comp})"

        return Stage("core-sqfs", action, after=["customise"], reads=("base.compression",), outputs=[self.p.core])

    @stage
    def initramfs(self) -> Stage:
        i = self.cfg.initrd

        def action() -> str:
            data_label = self.cfg.output.disk[0].data_label if self.cfg.output.disk else "PBDATA"
            conf = {"MEDIA": self.media_label(), "DATA_LABEL": data_label, "INIT": "/sbin/init"}
            r = initramfs.build(self.p.initrd, self.busybox(), self.kernel_files(), self.p.scratch / "initramfs",
                                conf, compression=i.compression or "xz", level=i.level)
            return f"{r['modules']} modules, {r['bytes']} bytes"

        return Stage("initramfs", action, after=["packages", "kernel"],
                     reads=("initrd", "output.iso.volume_id", "output.disk[0].data_label"), outputs=[self.p.initrd])

    @stage
    def content_id(self) -> Stage:
        """What the medium holds as one digest, from which each medium gets its identity (medium_id)."""
        def action() -> str:
            files = {"boot/vmlinuz": self.grub_kernel(), "boot/initrd.img": self.p.initrd, "os/core.sqfs": self.p.core}
            files.update({"ext/" + p.relative_to(self.p.ext).as_posix(): p
                          for p in sorted(self.p.ext.rglob("*")) if p.is_file()})
            write_text_atomic(self.p.content_id, initramfs.content_id(files) + "\n")
            return f"medium id {self.iso_id()}"

        return Stage("content-id", action, after=["kernel", "core-sqfs", "initramfs", "extensions"],
                     reads=("output.iso.volume_id",), outputs=[self.p.content_id])

    def from_debian(self) -> list[str]:
        """Extensions the config names that no local folder holds: built from Debian packages."""
        ext = self.cfg.extensions
        return [n for n in [*ext.onboot, *ext.ondemand] if not live_ext.find(n, ext.dirs)]

    @stage
    def extensions(self) -> Stage:
        ext = self.cfg.extensions
        built_dir = self.p.products / "ext-debian"

        def action() -> str:
            rmtree(built_dir)
            wanted = self.from_debian()
            note = ""
            if wanted:
                built = self.extension_builder().build([n.removesuffix(".tcz") for n in wanted], built_dir)
                note = f"; from Debian: {', '.join(b.name for b in built)}"
            dirs = [*ext.dirs, built_dir] if wanted else list(ext.dirs)
            return live_ext.write_folder(self.p.ext, dirs, ext.onboot, ext.ondemand) + note

        def local() -> list[Path]:
            names = [n for n in [*ext.onboot, *ext.ondemand] if n not in self.from_debian()]
            return live_ext.local_files(ext.dirs, names, [])

        # Extensions built from Debian packages depend on what the base holds (their .dep lists).
        return Stage("extensions", action, after=["packages", "base"], files=local,
                     reads=("extensions.dirs", "extensions.onboot", "extensions.ondemand", "base.suite", "base.mirror",
                            "base.trim", "base.variant", *BASE_PACKAGES_READS),
                     values=lambda: {"debian": self.from_debian()}, outputs=[self.p.ext])

    def extension_builder(self) -> debext.Builder:
        """Extensions from Debian packages, against what this build's base holds."""
        b = self.cfg.base
        archive = lock.open_archive(b.suite, self.arch(), b.mirror, self.cache, self.cfg.extensions.offline)
        return debext.Builder(archive, self.arch(), self.cache, self.have(archive), trim=b.trim)

    def have(self, archive: Any) -> Any:
        """What the base holds: dpkg's status for minbase, the pinned packages for tiny."""
        from pebuilder.debian.resolve import Have

        status = self.p.base / "var/lib/dpkg/status"
        if self.cfg.base.variant == "minbase":
            if not status.is_file():
                raise PebuilderError(f"the minbase base is not built yet ({status} is missing); run pebuilder build "
                                     "on this config first", Exit.USAGE)
            return Have.from_status(status.read_text())
        lk = self.lockfile()
        busybox = lk.one("boot", "busybox-static")
        versions = {p.name: p.version for p in [*lk.group("base"), busybox]}
        return base.tiny_have(archive, versions, self.base_packages())

    def entry(self, media: str, ident: str = "") -> Any:
        from pebuilder.outputs.bootmenu import BootEntry

        timeout = self.cfg.boot.timeout if self.cfg.boot.timeout is not None else 3
        return BootEntry(title="pebuilder live", kernel="/boot/vmlinuz", initrds=["/boot/initrd.img"],
                         cmdline=self.cmdline(media, ident), timeout=timeout, serial=self.cfg.boot.serial)

    @stage
    def boot_menus(self) -> Stage:
        from pebuilder.outputs import iso as iso_out
        from pebuilder.outputs.bootmenu import isolinux_cfg

        def action() -> str:
            rmtree(self.p.boot)
            out = FsRoot(self.p.boot)
            entry = self.entry(self.media_label(), self.iso_id())
            marker = entry.marker_name(f"{self.media_label()}|{self.iso_id()}")
            iso_out.write_grub_files(self.p.boot, entry, marker)
            if self.arch().bios:
                out.write("boot/isolinux/isolinux.cfg", isolinux_cfg(entry), 0o644)
                for name, src in SYSLINUX.items():
                    out.copy_from(Path(src), f"boot/isolinux/{name}", 0o644)
            write_text_atomic(self.p.products / "entry.json", json.dumps({"marker": marker, **entry.__dict__}))
            return " ".join(entry.cmdline)

        return Stage("boot-menus", action, after=["content-id"], reads=(*BOOT_ENTRY_READS, "output.iso.volume_id"),
                     outputs=[self.p.boot, self.p.products / "entry.json"])

    @stage
    def efi_boot(self) -> Stage:
        from pebuilder.outputs import iso as iso_out

        def action() -> str:
            if not (self.cfg.output.iso and self.cfg.output.iso.uefi):
                self.p.esp.unlink(missing_ok=True)
                return "UEFI not asked for"
            marker = json.loads((self.p.products / "entry.json").read_text())["marker"]
            self.p.scratch.mkdir(parents=True, exist_ok=True)
            signed = self.signed_chain()
            iso_out.build_esp(self.p.esp, self.arch(), marker, self.p.scratch, self.grub_lib(), signed)
            return "shim + GRUB signed by Debian (Secure Boot)" if signed else f"GRUB {self.arch().grub_efi}"

        return Stage("efi-boot", action, after=["packages", "boot-menus"],
                     reads=("output.iso.uefi", "boot.secure_boot"))

    def assemble(self, root: Path, menus: bool) -> FsRoot:
        """The medium's tree: /boot (kernel, initramfs, menus), /os, /ext."""
        rmtree(root)
        m = FsRoot(root)
        m.copy_from(self.grub_kernel(), "boot/vmlinuz", 0o644)
        m.copy_from(self.p.initrd, "boot/initrd.img", 0o644)
        m.copy_from(self.p.core, "os/core.sqfs", 0o644)
        if menus:
            for src in sorted(p for p in self.p.boot.rglob("*") if p.is_file()):
                m.copy_from(src, src.relative_to(self.p.boot).as_posix(), 0o644)
        m.mkdir("ext", 0o755)
        for src in sorted(p for p in self.p.ext.rglob("*") if p.is_file()):
            m.copy_from(src, "ext/" + src.relative_to(self.p.ext).as_posix(), 0o644)
        return m

    @stage
    def install_image(self) -> Stage:
        """For provisioning with install = "self": this system as a small GPT disk image, gzip'd, that the
        PE streams onto the target disk (boot loaders prebuilt here, so the PE needs no grub-install)."""
        from pebuilder.formats import compress
        from pebuilder.fsutil import file_sha256
        from pebuilder.outputs import disk

        a = self.arch()

        def action() -> str:
            work = self.p.scratch / "install"
            rmtree(work)
            staging = work / "root"
            self.assemble(staging, menus=False)
            (staging / "data").mkdir()
            ident = self.medium_id(f"install|{INSTALL_LABEL}")  # not the PE's: the same system, another medium
            write_text_atomic(staging / initramfs.ID_FILE, ident + "\n")
            spec = disk.DiskSpec(work / "install.img", 0, "gpt", "both" if a.bios else "uefi", "ext4",
                                 INSTALL_LABEL, "raw")
            spec.size = disk.smallest_size(staging, spec)
            entry = self.entry(f"LABEL={INSTALL_LABEL}", ident)
            entry.cmdline.append("pb.provision=off")  # the installed system carries the PE's settings
            disk.write(spec, staging, entry, work, seed=f"install|{INSTALL_LABEL}|{ident}", arch=a,
                       grub_lib=self.grub_lib(), signed=self.signed_chain())
            compress.compress_file(spec.path, self.p.install, "gzip", "default")
            digest = file_sha256(self.p.install)
            write_text_atomic(self.p.install_sum, f"{digest}  install.img.gz\n")
            rmtree(work)
            return f"{spec.size >> 20} MiB disk, {self.p.install.stat().st_size} bytes gzip'd"

        return Stage("install-image", action, after=["kernel", "initramfs", "core-sqfs", "extensions", "packages",
                                                     "content-id"],
                     reads=(*BOOT_ENTRY_READS, "boot.secure_boot"), outputs=[self.p.install, self.p.install_sum])

    def wants_install_image(self) -> bool:
        return self.cfg.provision is not None and self.cfg.provision.install == "self"

    @stage
    def medium(self) -> Stage:
        def action() -> str:
            m = self.assemble(self.p.image, menus=True)
            m.write(initramfs.ID_FILE, self.iso_id() + "\n", 0o644)
            if self.wants_install_image():
                m.copy_from(self.p.install, "os/install.img.gz", 0o644)
                m.copy_from(self.p.install_sum, "os/install.img.gz.sha256", 0o644)
            return "boot, os, ext" + (", install image" if self.wants_install_image() else "")

        return Stage("medium", action, after=["kernel", "initramfs", "core-sqfs", "extensions", "content-id",
                                              "boot-menus", *(["install-image"] if self.wants_install_image() else [])],
                     reads=("output.iso.volume_id",), outputs=[self.p.image])

    @stage
    def package_iso(self) -> Stage:
        from pebuilder.outputs import iso as iso_out

        spec = self.cfg.output.iso
        assert spec is not None

        def action() -> str:
            esp = self.p.esp if self.p.esp.exists() else None
            bios = "boot/isolinux/isolinux.bin" if self.arch().bios else None
            if bios is None and esp is None:
                raise PebuilderError(f"{self.arch()} boots only through UEFI: keep [output.iso] uefi = true",
                                     Exit.CONFIG_INVALID)
            iso_out.package(self.p.image, spec.path, isolinux_bin=bios, esp=esp, volume_id=spec.volume_id)
            return str(spec.path)

        return Stage("package-iso", action, after=["medium", "efi-boot"], reads=("output.iso",), outputs=[spec.path])

    @stage
    def netboot(self) -> Stage:
        """Kernel + one initramfs for iPXE or a host's GRUB: the initramfs carries the system (embed) or
        fetches it from the folder's URL and checks each file against the sha256 baked into it (fetch)."""
        from pebuilder.fsutil import file_sha256
        from pebuilder.outputs import netboot as nb_out

        nb = self.cfg.output.netboot
        assert nb is not None

        def action() -> str:
            payload = {"os/core.sqfs": self.p.core}
            payload.update({"ext/" + p.relative_to(self.p.ext).as_posix(): p
                            for p in sorted(self.p.ext.rglob("*")) if p.is_file()})
            texts: dict[str, str] = {}
            if self.wants_install_image():
                payload["os/install.img.gz"] = self.p.install
                texts["etc/pebuilder/install.sha256"] = self.p.install_sum.read_text()
            conf = {"MEDIA": "", "DATA_LABEL": "PBDATA", "INIT": "/sbin/init", "FETCH_URL": ""}
            if nb.mode == "fetch":
                assert nb.url is not None
                conf["FETCH_URL"] = nb.url.rstrip("/")
                texts["etc/pebuilder/fetch.sha256"] = "".join(f"{file_sha256(src)}  {rel}\n"
                                                               for rel, src in payload.items())
                embedded: dict[str, Path] = {}
            else:
                embedded = payload
            i = self.cfg.initrd
            # An embedded system is squashfs already: a fast gzip of it loads quicker than xz under TFTP.
            comp, level = (i.compression or "xz", i.level) if nb.mode == "fetch" else ("gzip", "fast")
            r = initramfs.build(self.p.netboot_initrd, self.busybox(), self.kernel_files(),
                                self.p.scratch / "netboot-initramfs", conf, compression=comp, level=level,
                                network=True, files=embedded, texts=texts)
            cmdline = self.cmdline("")[1:]
            n = nb_out.write(nb.dir, self.kernel_files().vmlinuz, self.p.netboot_initrd, cmdline,
                             "pebuilder PE", payload if nb.mode == "fetch" else None)
            return f"{nb.mode}: initramfs {r['bytes']} bytes, {n} files in {nb.dir}"

        return Stage("netboot", action, after=["kernel", "packages", "core-sqfs", "extensions",
                                               *(["install-image"] if self.wants_install_image() else [])],
                     reads=("output.netboot", "initrd", *BOOT_ENTRY_READS), outputs=[nb.dir])

    @stage
    def disk_image(self, index: int, spec: DiskOutput) -> Stage:
        from pebuilder.outputs import disk

        def action() -> str:
            work = self.p.scratch / f"disk{index}"
            staging = work / "root"
            rmtree(work)
            link_tree(self.p.image, staging, skip={"boot/isolinux", "boot/grub"})
            (staging / "data").mkdir(exist_ok=True)
            media = self.media_label(spec)
            ident = self.medium_id(f"disk|{spec.path.name}|{spec.label}")
            write_text_atomic(staging / initramfs.ID_FILE, ident + "\n")  # replaces the ISO's (a hard link)
            entry = self.entry(media, ident)
            if spec.data_size:
                entry.cmdline.append(f"pb.data=LABEL={spec.data_label}")
            dspec = disk.DiskSpec(spec.path, spec.size, spec.table, spec.firmware, spec.filesystem, spec.label,
                                  spec.format, spec.data_size, spec.data_label)
            plan = disk.write(dspec, staging, entry, work, seed=f"{spec.path.name}|{spec.label}|{ident}",
                              arch=self.arch(), grub_lib=self.grub_lib(), signed=self.signed_chain())
            rmtree(work)
            return f"{spec.table}/{spec.firmware} {spec.format}, root at sector {plan.root.start}: {media}"

        return Stage(f"disk-{spec.path.name}", action, after=["medium", "packages", "content-id"],
                     reads=(f"output.disk[{index}]", *BOOT_ENTRY_READS, "boot.secure_boot"), outputs=[spec.path])


def build_extensions(cfg: Config, names: list[str], out_root: Path, compression: str = "gzip",
                     force: bool = False) -> tuple[Path, list[debext.Built]]:
    """`pebuilder ext build`: Debian packages as a closed set of extensions in a repository folder."""
    live = DebianLive(cfg)
    live.run("base" if cfg.base.variant == "minbase" else "packages", force=force)
    builder = live.extension_builder()
    builder.compression = compression
    folder = out_root / debext.repo_path(cfg.base.suite, live.arch())
    return folder, builder.build(names, folder)


def default_config(out: Path, overrides: list[tuple[str, Any, bool]] | None = None) -> Config:
    """`pebuilder build` with no config: the tiny live system as a hybrid ISO, on the serial console."""
    data: dict[str, Any] = {
        "system": "debian",
        "base": {"variant": "tiny"},
        "work": {"dir": str(out / "work")},
        "boot": {"serial": True, "timeout": 1},
        "output": {"iso": {"path": str(out / "pebuilder-default.iso")}},
    }
    for dotted, value, append in overrides or []:
        registry.set_path(data, dotted, value, append)
    return registry.parse(data, None, out)
