"""A Tiny Core remaster as a flat sequence of stages: the table of contents is `stages()`.

Work trees keep remaster.sh's names: `<work>/extract` is the unpacked initrd, `<work>/image` the ISO
tree — assembled afresh from the pristine template (`.pebuilder/template`, never edited) and the
stages' products, so a rerun never works on the leftovers of the last one. pebuilder's own state
(stage keys, owners of initrd files) sits in `<work>/.pebuilder`.

What only a stage's action needs (archive formats, compressors, customisation, ISO writing) is
imported inside that action: a no-op run computes keys and imports none of it.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
from pebuilder.config.model import Config, DiskOutput
from pebuilder.engine.stages import Stage
from pebuilder.errors import Exit, PebuilderError
from pebuilder.formats.tcz import ExtensionMissing, kernel_name, resolve, tcz_name
from pebuilder.fsutil import link_tree, rmtree, write_text_atomic

if TYPE_CHECKING:
    from pebuilder.fsroot import Budget, FsRoot
    from pebuilder.tinycore.template import TemplateInfo

log = logging.getLogger("pebuilder.remaster")

# Where extensions come from (sources()).
SOURCES_READS = ("extensions.dirs", "extensions.mirrors", "extensions.repo")
FUNCTIONS = ("checkimage", "extractimage", "bootcode", "package", "rebuild", "packagehd")


@dataclass
class Paths:
    work: Path

    image = property(lambda self: self.work / "image")
    extract = property(lambda self: self.work / "extract")
    state = property(lambda self: self.work / ".pebuilder")
    template = property(lambda self: self.state / "template")
    template_json = property(lambda self: self.state / "template.json")
    meta = property(lambda self: self.state / "extract.meta.json")
    kernel_json = property(lambda self: self.state / "kernel.json")
    flags = property(lambda self: self.state / "initrd-extensions.json")
    cde = property(lambda self: self.state / "cde")
    boot = property(lambda self: self.state / "boot")
    initrd_dir = property(lambda self: self.state / "initrd")
    esp = property(lambda self: self.state / "esp.img")
    scratch = property(lambda self: self.state / "tmp")


class TinyCoreRemaster(Build):
    system = "tinycore"
    functions = FUNCTIONS

    def __init__(self, cfg: Config):
        super().__init__(cfg)
        self.p = Paths(cfg.work.dir)
        self._sources: Any = None
        self._resolved: dict[str, list[str]] = {}
        self._facts: dict[str, Any] | None = None

    # -- the sequence -----------------------------------------------------------------------------

    def stages(self) -> list[Stage]:
        return [
            self.unpack_template(),
            self.kernel(),
            self.unpack_initrd(),
            self.extensions_into_initrd(),
            self.customise(),
            self.kernel_modules(),
            self.extensions_beside_initrd(),
            self.bootcode(),
            self.pack_initrd(),
            self.efi_boot(),
            self.assemble_image(),
            self.package_iso(),
            *([self.netboot()] if self.cfg.output.netboot else []),
            *(self.disk_image(i, d) for i, d in enumerate(self.cfg.output.disk)),
        ]

    def select(self, function: str) -> set[str] | None:
        """remaster.sh's functions: which stages each one runs (None: all)."""
        names = [s.name for s in self.stages()]
        upto = {"checkimage": "template", "extractimage": "extensions-cde", "bootcode": "bootcode",
                "package": "package-iso"}
        if function in upto:
            chosen = set(names[: names.index(upto[function]) + 1])
            return chosen - {"kernel"} if function == "checkimage" else chosen
        if function == "packagehd":
            return set(names) - {"efi-boot", "package-iso"}
        return None

    def prepare(self, function: str) -> None:
        if function == "packagehd" and not self.cfg.output.disk:
            # The seed's packagehd: temp_dir/buildpackage.raw, 20 GiB, msdos, ext3, GRUB for BIOS.
            self.cfg.output.disk = [DiskOutput(path=self.p.work / "buildpackage.raw", filesystem="ext3",
                                               label="TCROOT")]

    def inputs(self) -> list[Path]:
        return [p for p in [self.plain.template.iso, self.plain.source] if p is not None]

    def check_target(self) -> tuple[Path, str, str, str]:
        """What `build --check` boots: the ISO as a CD, until tc-config names the host."""
        if not self.cfg.output.iso:
            raise PebuilderError("--check boots the ISO; this config has no [output.iso]", Exit.USAGE)
        if not any(c.startswith("console=ttyS") for c in self.boot_codes()):
            raise PebuilderError("--check reads the serial console: set [boot] serial = true (or --serial)",
                                 Exit.USAGE)
        a = self.arch()
        return self.cfg.output.iso.path, "bios" if a.bios else "uefi", "cdrom", "Setting hostname to"

    # -- helpers ----------------------------------------------------------------------------------

    def info(self) -> TemplateInfo:
        from pebuilder.tinycore.template import TemplateInfo

        return TemplateInfo(**json.loads(self.p.template_json.read_text()))

    def facts(self) -> dict[str, Any]:
        """template.json as plain data, for the key computations of a no-op run (reading it as a
        TemplateInfo would import the template module and with it the archive formats)."""
        if self._facts is None:
            self._facts = json.loads(self.p.template_json.read_text())
        return self._facts

    def arch(self) -> archs.Arch:
        name = self.facts().get("arch")
        return archs.parse(name) if name else archs.X86_64

    def kver(self) -> str | None:
        if self.p.kernel_json.exists():
            k = json.loads(self.p.kernel_json.read_text())
            if k.get("kver"):
                return k["kver"]
        return self.facts().get("kernel_version") if self.p.template_json.exists() else None

    def names(self, placement: str) -> list[str]:
        return [tcz_name(n) for n in getattr(self.cfg.extensions, placement)]

    def sources(self) -> Any:
        """Local folders first, then the configured mirrors (repository path from the template)."""
        ext = self.cfg.extensions
        # Read on every call, so each stage that asks is recorded as reading them; made once.
        wanted = (tuple(ext.dirs), tuple(ext.mirrors), ext.repo, ext.offline)
        if self._sources is None or self._sources[0] != wanted:
            from pebuilder.tinycore.mirror import Mirror, Sources, repo_path

            mirror = None
            if ext.mirrors:
                facts = self.facts()
                repo = ext.repo or repo_path(facts.get("tc_version"), facts.get("arch"))
                mirror = Mirror(list(ext.mirrors), repo, offline=ext.offline)
            self._sources = (wanted, Sources(list(ext.dirs), mirror, self.kver()))
            self._resolved = {}
        return self._sources[1]

    def resolve(self, placement: str) -> list[str]:
        """Requested extensions of one placement and their dependencies, dependencies first."""
        src = self.sources()
        names = self.names(placement)  # read on every call (see sources)
        if placement in self._resolved:
            return self._resolved[placement]
        kver = self.kver()
        res = resolve([kernel_name(n, kver) for n in names], src.deps_of)
        for name, chain in res.missing.items():
            where = ", ".join(map(str, self.cfg.extensions.dirs)) or "no extension folders"
            if src.mirror:
                where += f", and {', '.join(src.mirror.bases)} ({src.mirror.repo})"
            if len(chain) == 1:
                raise ExtensionMissing(f"extension {name} not found; looked in: {where}")
            msg = f"{name} (needed by {' -> '.join(chain[:-1])}) is not in {where}"
            if src.mirror:
                raise ExtensionMissing(f"dependency {msg}")
            log.warning("dependency %s; Tiny Core will look for it at boot", msg)
        self._resolved[placement] = res.order
        return res.order

    def closure(self, placement: str) -> tuple[list[str], list[Path]]:
        order = self.resolve(placement)
        paths = self.sources().paths(order)
        return order, [paths[n] for n in order]

    def ext_key(self, *placements: str) -> dict[str, Any]:
        """What extension stages depend on: resolved names with the mirror's md5 for remote ones."""
        src = self.sources()
        return {pl: [[n, "local" if src.local(n) else src.mirror.md5(n) if src.mirror else ""]
                     for n in self.resolve(pl)] for pl in placements}

    def local_files(self, *placements: str) -> list[Path]:
        src = self.sources()
        return [p for pl in placements for n in self.resolve(pl) if (p := src.local(n)) is not None]

    def fs(self) -> FsRoot:
        from pebuilder.fsroot import FsRoot, TreeMeta

        return FsRoot(self.p.extract, TreeMeta.load(self.p.meta))

    def budget(self, what: str) -> Budget:
        from pebuilder.fsroot import Budget

        return Budget(max_bytes=self.cfg.work.extract_limit, what=what)

    # -- stages -----------------------------------------------------------------------------------

    @stage
    def unpack_template(self) -> Stage:
        src = self.cfg.template.iso
        if src is None:
            raise PebuilderError("template.iso: missing; a Tiny Core remaster needs the ISO to start from",
                                 Exit.NO_TEMPLATE)

        def action() -> str:
            from pebuilder.formats import iso
            from pebuilder.tinycore import template

            rmtree(self.p.template)
            if src.is_dir():
                shutil.copytree(src, self.p.template, symlinks=True)
            else:
                iso.check_readable(src)
                iso.extract_tree(src, self.p.template)
            info = template.describe(self.p.template)
            template.require_tinycore(info, src)
            write_text_atomic(self.p.template_json, info.to_json())
            self._facts = None
            return f"Tiny Core {info.tc_version or '?'} {info.arch}, kernel {info.kernel_version}"

        if not src.exists():
            from pebuilder.formats import iso

            iso.check_readable(src)
        return Stage("template", action, files=[src] if src.is_file() else [], trees=[src] if src.is_dir() else [],
                     reads=("template.iso",), outputs=[self.p.template, self.p.template_json])

    @stage
    def kernel(self) -> Stage:
        """Another kernel for the template (e.g. Debian's): facts about it for the stages after."""
        spec = self.cfg.kernel

        def action() -> str:
            if not (spec.package or spec.vmlinuz):
                write_text_atomic(self.p.kernel_json, json.dumps({"kver": None}))
                return "template's kernel"
            from pebuilder.debian.kernel import prepare

            b = self.cfg.base
            # --offline is about Tiny Core's extension mirrors, as it always was; the kernel package still
            # comes from the (cached) Debian archive.
            kf = prepare(spec, self.arch(), b.suite, b.mirror, offline=False)
            write_text_atomic(self.p.kernel_json, json.dumps(
                {"kver": kf.kver, "vmlinuz": str(kf.vmlinuz), "root": str(kf.root), "source": kf.source}))
            return f"{kf.source} ({kf.kver})"

        return Stage("kernel", action, reads=("kernel", "base.suite", "base.mirror"),
                     files=[spec.vmlinuz] if spec.vmlinuz and spec.vmlinuz.is_file() else [],
                     trees=[spec.modules_dir] if spec.modules_dir else [], outputs=[self.p.kernel_json])

    def kernel_files(self) -> Any:
        from pebuilder.customise.modules import KernelFiles

        k = json.loads(self.p.kernel_json.read_text())
        return KernelFiles(Path(k["vmlinuz"]), k["kver"], Path(k["root"]), k["source"]) if k.get("kver") else None

    @stage
    def unpack_initrd(self) -> Stage:
        def action() -> str:
            from pebuilder.formats import cpio
            from pebuilder.fsroot import TreeMeta

            info = self.info()
            rmtree(self.p.extract)
            self.p.meta.unlink(missing_ok=True)
            budget = self.budget("the template's initrd")
            for rel in info.initrds:
                cpio.extract(self.p.template / rel, self.p.extract, self.p.meta, budget)
            return f"{len(TreeMeta.load(self.p.meta).entries)} entries"

        return Stage("unpack-initrd", action, after=["template"], chain="initrd",
                     outputs=[self.p.extract, self.p.meta])

    @stage
    def extensions_into_initrd(self) -> Stage:
        def action() -> str:
            from pebuilder.tinycore import initrd_ext

            fs = self.fs()
            _, tczs = self.closure("initrd")
            run_scripts = self.cfg.extensions.scripts == "run"
            budget = self.budget("extensions for the initrd")
            results = [initrd_ext.install_extracted(fs, t, self.p.scratch, run_scripts, budget) for t in tczs]
            _, b_tczs = self.closure("builtin")
            if b_tczs:
                initrd_ext.install_builtin(fs, b_tczs, self.names("builtin"))
            if self.cfg.extensions.mirrors:
                initrd_ext.write_tcemirror(fs, self.cfg.extensions.mirrors[0])
            fs.meta.save(self.p.meta)
            write_text_atomic(self.p.flags, json.dumps({"modules": any(r.has_modules for r in results),
                                                        "libs": any(r.has_libs for r in results)}))
            return f"{len(results)} extracted, {len(b_tczs)} builtin"

        return Stage("extensions-initrd", action, after=["template"], chain="initrd",
                     files=lambda: self.local_files("initrd", "builtin"),
                     reads=(*SOURCES_READS, "extensions.initrd", "extensions.builtin", "extensions.scripts"),
                     values=lambda: self.ext_key("initrd", "builtin"))

    @stage
    def customise(self) -> Stage:
        c = self.cfg

        def action() -> str:
            from pebuilder.customise import accounts, certificates, files, ssh
            from pebuilder.customise.profile import TINYCORE
            from pebuilder.tinycore import services

            fs = self.fs()
            done = []
            if c.users or (c.accounts.lock_root and fs.is_file("etc/passwd")):
                done.append(accounts.apply(fs, c.users, c.accounts.lock_root, TINYCORE, salt_secret(c)))
            if c.boot.serial_getty:
                services.serial_getty(fs, self.arch().console)
                done.append("serial getty")
            if c.ssh.enable:
                done.append(ssh.apply(fs, TINYCORE, c.ssh.config, c.ssh.host_keys))
            if c.certificates.bundle:
                done.append(certificates.apply(fs, TINYCORE, c.certificates.bundle))
            sv = c.services
            bootlocal = [*sv.bootlocal, *(["/usr/local/sbin/pb-provision &"] if c.provision else [])]
            services.boot_scripts(fs, bootlocal, sv.bootsync, sv.filetool, c.ssh.enable)
            if c.files:
                done.append(files.apply(fs, c.files))
            if c.kiosk.url:
                services.kiosk(fs, c.kiosk.url)
                done.append("kiosk")
            from pebuilder.customise import provision

            if provision.write_conf(fs, c.provision):
                provision.install_script(fs, "usr/local/sbin/pb-provision")
                done.append("provisioning (from bootlocal.sh)")
            fs.meta.save(self.p.meta)
            return ", ".join(done) or "nothing to customise"

        # serial_getty is the only [boot] key this stage reads: hostname, autologin and serial are boot
        # codes (host=, noautologin, console=), written by the bootcode stage, and must not repack the initrd.
        return Stage("customise", action, chain="initrd",
                     reads=(*CUSTOMISATION_READS, "boot.serial_getty", "services", "kiosk"),
                     values=lambda: password_digests(c), files=lambda: customisation_files(c),
                     trees=lambda: customisation_trees(c))

    @stage
    def kernel_modules(self) -> Stage:
        def action() -> str:
            from pebuilder.customise import modules
            from pebuilder.tinycore import kernel_swap

            flags = json.loads(self.p.flags.read_text())
            kver = self.kver()
            fs = self.fs()
            notes = []
            report: dict[str, Any] = {"zram": True}
            kf = self.kernel_files()
            if kf is not None:
                report = kernel_swap.install_modules(fs, kf, self.cfg.boot.modules)
                notes.append(f"{report['modules']} modules of {kf.kver}")
                if kernel_swap.patch_tce_load(fs):
                    notes.append("tce-load: bs=4096 dropped (kernels since 5.4 refuse it)")
                if not report["zram"]:
                    notes.append("no zram: nozswap")
            elif flags["modules"] and kver:
                modules.depmod(fs, kver)
                notes.append(f"depmod {kver}")
            early = list(dict.fromkeys([*report.get("early", []), *self.cfg.boot.modules]))
            if self.cfg.boot.modules:
                self._check_modules(fs, kver)
            if early:
                kernel_swap.load_early(fs, early)
                notes.append("early: " + " ".join(early))
            fs.meta.save(self.p.meta)
            write_text_atomic(self.p.state / "kernel-modules.json", json.dumps(report))
            return "; ".join(notes) or "no modules added"

        # A local kernel's files are read here too: kernel.json (the kernel stage's token) names them,
        # so a changed module with the same name would not otherwise reach the image.
        return Stage("kernel-modules", action, after=["kernel"], chain="initrd",
                     trees=[self.cfg.kernel.modules_dir] if self.cfg.kernel.vmlinuz and self.cfg.kernel.modules_dir
                     else [], reads=("boot.modules", "kernel.vmlinuz", "kernel.modules_dir"),
                     outputs=[self.p.extract, self.p.meta, self.p.flags, self.p.state / "kernel-modules.json"])

    def _check_modules(self, fs: FsRoot, kver: str | None) -> None:
        """Each early module must be in the image's module trees (base or extensions) or built in."""
        from pebuilder.customise.modules import module_name

        have: set[str] = set()
        for base in ("lib/modules", "usr/local/lib/modules"):
            d = fs.path(f"{base}/{kver or ''}")
            for f in ("modules.dep", "modules.builtin"):
                for line in fs.read_lines(f"{base}/{kver or ''}/{f}"):
                    have.add(module_name(line.split(":")[0]))
            for ko in d.rglob("*.ko*") if d.is_dir() else []:
                have.add(module_name(ko.name))
        for m in self.cfg.boot.modules:
            if m.replace("-", "_") not in have:
                raise PebuilderError(f"boot.modules: {m!r} is in no module tree of the image (kernel {kver}); "
                                     "add the extension that holds it, or set [kernel] to one that has it",
                                     Exit.KERNEL)

    @stage
    def extensions_beside_initrd(self) -> Stage:
        ext = self.cfg.extensions

        def action() -> str:
            from pebuilder.tinycore import cde

            in_initrd = self.resolve("initrd")
            _, tczs = self.closure("onboot")
            _, od_tczs = self.closure("ondemand")
            return cde.write(self.p.cde, onboot=self.names("onboot"),
                             files=[t for t in [*tczs, *od_tczs] if t.name not in in_initrd],
                             copy2fs_all=ext.copy2fs is True,
                             copy2fs=[tcz_name(n) for n in ext.copy2fs] if isinstance(ext.copy2fs, list) else [])

        return Stage("extensions-cde", action, after=["template"],
                     files=lambda: self.local_files("onboot", "ondemand"),
                     reads=(*SOURCES_READS, "extensions.initrd", "extensions.onboot", "extensions.ondemand",
                            "extensions.copy2fs"),
                     values=lambda: self.ext_key("onboot", "ondemand", "initrd"), outputs=[self.p.cde])

    def boot_codes(self) -> list[str]:
        codes = list(self.cfg.boot.codes)
        b = self.cfg.boot
        if not b.autologin and "noautologin" not in codes:
            codes.append("noautologin")
        if b.hostname and not any(x.startswith("host=") for x in codes):
            codes.append(f"host={b.hostname}")
        km = self.p.state / "kernel-modules.json"
        if self.kernel_files() is not None and km.exists() and not json.loads(km.read_text()).get("zram", True):
            codes.append("nozswap")
        if self.names("onboot") or self.names("ondemand"):
            codes.append("cde")
        if b.serial and not any(c.startswith("console=") for c in codes):
            codes += ["console=tty0", f"console={self.arch().console},115200"]
        return codes

    @stage
    def bootcode(self) -> Stage:
        def action() -> str:
            from pebuilder.fsroot import FsRoot
            from pebuilder.outputs import iso as iso_out
            from pebuilder.outputs.bootmenu import BootEntry
            from pebuilder.tinycore import isolinux_cfg

            info = self.info()
            initrds = ["/" + info.initrds[0]]
            timeout = None
            if self.cfg.boot.timeout is not None:
                timeout = max(1, round(self.cfg.boot.timeout * 10))
            pristine = (self.p.template / info.isolinux_cfg).read_text(errors="replace")
            codes = self.boot_codes()
            serial = self.cfg.boot.serial or any(c.startswith("console=ttyS") for c in codes)
            text = isolinux_cfg.rewrite(pristine, codes=codes, timeout_tenths=timeout, serial=serial,
                                        initrds=initrds if len(info.initrds) > 1 else None)
            rmtree(self.p.boot)
            out = FsRoot(self.p.boot)
            out.write(info.isolinux_cfg, text, 0o644)
            label = isolinux_cfg.parse(text).default_label()
            assert label is not None
            tenths = isolinux_cfg.timeout_tenths(text)
            entry = BootEntry(title=f"{label.name} (pebuilder)", kernel="/" + info.kernel, initrds=initrds,
                              cmdline=label.append, timeout=tenths / 10, serial=serial)
            marker = entry.marker_name(self.cfg.output.iso.volume_id if self.cfg.output.iso else "")
            if self.arch().grub_efi:
                iso_out.write_grub_files(self.p.boot, entry, marker)
            write_text_atomic(self.p.boot / "entry.json", json.dumps({"marker": marker, **entry.__dict__}))
            return " ".join(codes)

        # kernel-modules.json (whether the kernel has zram: nozswap) comes through the kernel-modules token.
        return Stage("bootcode", action, after=["template", "extensions-cde", "kernel-modules"],
                     reads=("boot.codes", "boot.autologin", "boot.hostname", "boot.serial", "boot.timeout",
                            "extensions.onboot", "extensions.ondemand", "output.iso.volume_id"),
                     outputs=[self.p.boot])

    def initrd_out(self) -> Path:
        return self.p.initrd_dir / Path(self.info().initrds[0]).name

    @stage
    def pack_initrd(self) -> Stage:
        def action() -> str:
            from pebuilder.formats import cpio
            from pebuilder.fsroot import TreeMeta

            size = cpio.pack(self.p.extract, TreeMeta.load(self.p.meta), self.initrd_out(),
                             self.cfg.initrd.compression or "gzip", self.cfg.initrd.level)
            return f"{self.initrd_out().name} {size} bytes"

        # The tree itself is an input (not only the chain's token): remaster.sh users edit extract/ by hand.
        return Stage("pack-initrd", action, after=["kernel-modules"], trees=[self.p.extract], files=[self.p.meta],
                     reads=("initrd",), outputs=[self.p.initrd_dir])

    @stage
    def efi_boot(self) -> Stage:
        def action() -> str:
            from pebuilder.outputs import iso as iso_out

            wanted = bool(self.cfg.output.iso and self.cfg.output.iso.uefi)
            a = self.arch()
            if not a.grub_efi or not wanted:
                self.p.esp.unlink(missing_ok=True)
                return f"no UEFI for {a}: BIOS only" if wanted else "UEFI not asked for"
            marker = json.loads((self.p.boot / "entry.json").read_text())["marker"]
            self.p.scratch.mkdir(parents=True, exist_ok=True)
            iso_out.build_esp(self.p.esp, a, marker, self.p.scratch)
            return f"GRUB {a.grub_efi}"

        return Stage("efi-boot", action, after=["bootcode"], reads=("output.iso.uefi",))

    @stage
    def assemble_image(self) -> Stage:
        def action() -> str:
            from pebuilder.fsroot import FsRoot

            info = self.info()
            rmtree(self.p.image)
            kf = self.kernel_files()
            replaced = {*info.initrds, str(Path(info.isolinux_cfg).parent / "boot.cat")}
            if kf is not None:
                replaced.add(info.kernel)
            count = link_tree(self.p.template, self.p.image, skip=replaced)
            image = FsRoot(self.p.image)
            image.copy_from(self.initrd_out(), info.initrds[0], 0o644, own_parents=True)
            if kf is not None:
                image.copy_from(kf.vmlinuz, info.kernel, 0o644, own_parents=True)
            for src in sorted(p for p in self.p.boot.rglob("*") if p.is_file() and p.name != "entry.json"):
                image.copy_from(src, src.relative_to(self.p.boot).as_posix(), 0o644, own_parents=True)
            if any(self.p.cde.iterdir()):
                if image.exists("cde"):
                    image.remove("cde")
                for src in sorted(p for p in self.p.cde.rglob("*") if p.is_file()):
                    image.copy_from(src, "cde/" + src.relative_to(self.p.cde).as_posix(), 0o644, own_parents=True)
            return f"{count} template files + initrd, boot menus" + (", cde" if any(self.p.cde.iterdir()) else "")

        vmlinuz = self.cfg.kernel.vmlinuz
        return Stage("assemble-image", action, files=[vmlinuz] if vmlinuz and vmlinuz.is_file() else [],
                     reads=("kernel.vmlinuz",), outputs=[self.p.image],
                     after=["template", "kernel", "extensions-cde", "bootcode", "pack-initrd"])

    @stage
    def package_iso(self) -> Stage:
        out_spec = self.cfg.output.iso
        out = out_spec.path if out_spec else self.p.work / "ezremaster.iso"
        vol = out_spec.volume_id if out_spec else "Tinycore"

        def action() -> str:
            from pebuilder.outputs import iso as iso_out

            info = self.info()
            isolinux_bin = str(Path(info.isolinux_cfg).parent / "isolinux.bin")
            has_bios = (self.p.image / isolinux_bin).is_file()
            esp = self.p.esp if self.p.esp.exists() else None
            if not has_bios and esp is None:
                raise PebuilderError(f"the template has no {isolinux_bin} and UEFI is off: nothing could boot "
                                     "this ISO; keep [output.iso] uefi = true", Exit.NO_ISOLINUX_CFG)
            iso_out.package(self.p.image, out, isolinux_bin=isolinux_bin if has_bios else None, esp=esp,
                            volume_id=vol)
            return str(out) + ("" if has_bios else " (UEFI only: the template has no isolinux.bin)")

        return Stage("package-iso", action, after=["assemble-image", "efi-boot"], reads=("output.iso",), outputs=[out])

    @stage
    def netboot(self) -> Stage:
        """A RAM boot of the remaster: its kernel and initrd, with the cde extensions appended as a
        second archive in /tmp/builtin (tce-setup loads those at boot, since Tiny Core 4.7.5)."""
        from pebuilder.formats import cpio as cpio_fmt
        from pebuilder.fsroot import FsRoot
        from pebuilder.outputs import netboot as nb_out
        from pebuilder.tinycore import initrd_ext

        nb = self.cfg.output.netboot
        assert nb is not None
        if nb.mode != "embed":
            raise PebuilderError("output.netboot.mode: a Tiny Core netboot carries its extensions in the initrd; "
                                 "use mode = \"embed\" (fetch is for the Debian system)", Exit.CONFIG_INVALID)

        def action() -> str:
            info = self.info()
            work = self.p.scratch / "netboot"
            rmtree(work)
            initrd = work / "initrd.img"
            extra = work / "builtin.gz"
            tree = FsRoot(work / "builtin")
            names = [*self.names("builtin"), *self.names("onboot")]
            tree.mkdir("tmp", 0o1777)  # the kernel applies a later archive's folder modes: keep /tmp's
            tczs = [t for d in (self.p.cde / "optional", self.p.extract / "tmp/builtin/optional") if d.is_dir()
                    for t in sorted(d.glob("*.tcz"))]
            initrd_ext.install_builtin(tree, tczs, list(dict.fromkeys(names)))
            cpio_fmt.pack(tree.root, tree.meta, extra, "gzip", "default")
            with open(initrd, "wb") as out:
                for part in (self.initrd_out(), extra):
                    with open(part, "rb") as f:
                        shutil.copyfileobj(f, out)
            kf = self.kernel_files()
            kernel = kf.vmlinuz if kf is not None else self.p.template / info.kernel
            entry = json.loads((self.p.boot / "entry.json").read_text())
            cmdline = [c for c in entry["cmdline"] if c != "cde"]
            n = nb_out.write(nb.dir, kernel, initrd, cmdline, "Tiny Core (pebuilder)")
            rmtree(work)
            return f"{n} files in {nb.dir}, {len(names)} extensions built in"

        return Stage("netboot", action, after=["kernel", "bootcode", "pack-initrd", "extensions-cde"],
                     reads=("output.netboot", "extensions.builtin", "extensions.onboot"), outputs=[nb.dir])

    @stage
    def disk_image(self, index: int, spec: DiskOutput) -> Stage:
        def action() -> str:
            from pebuilder.outputs import disk
            from pebuilder.outputs.bootmenu import BootEntry
            from pebuilder.tinycore import frugal

            info = self.info()
            entry_data = json.loads((self.p.boot / "entry.json").read_text())
            entry_data.pop("marker", None)
            entry = frugal.disk_entry(BootEntry(**entry_data), spec)
            work = self.p.scratch / f"disk{index}"
            staging = work / "root"
            frugal.stage(self.p.image, info.kernel, info.initrds[0], spec, staging)
            dspec = disk.DiskSpec(spec.path, spec.size, spec.table, spec.firmware, spec.filesystem, spec.label,
                                  spec.format, spec.data_size, spec.data_label)
            plan = disk.write(dspec, staging, entry, work, seed=f"{spec.path.name}|{spec.label}", arch=self.arch())
            rmtree(work)
            return (f"{spec.table}/{spec.firmware} {spec.filesystem} {spec.format}, root at sector "
                    f"{plan.root.start}: {' '.join(entry.cmdline)}")

        return Stage(f"disk-{spec.path.name}", action, after=["bootcode", "assemble-image"],
                     trees=[spec.mydata] if spec.mydata else [], reads=(f"output.disk[{index}]",), outputs=[spec.path])

