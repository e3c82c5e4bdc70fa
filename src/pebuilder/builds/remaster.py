"""A Tiny Core remaster as a flat sequence of stages: the table of contents is `stages()`.

Work trees keep remaster.sh's names: `<work>/image` is the ISO tree, `<work>/extract` the unpacked
initrd. pebuilder's own state (stage keys, owners of initrd files, the template's pristine boot
config) sits in `<work>/.pebuilder`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from pebuilder.config.model import BuildConfig
from pebuilder.engine.stages import Engine, Stage
from pebuilder.errors import Exit, PebuilderError
from pebuilder.formats import cpio, iso
from pebuilder.fsutil import rmtree, write_text_atomic
from pebuilder.outputs import iso as iso_out
from pebuilder.outputs.bootmenu import BootEntry
from pebuilder.tinycore import cde, initrd_ext, isolinux_cfg, template
from pebuilder.tinycore.extensions import kernel_name

log = logging.getLogger("pebuilder.remaster")

FUNCTIONS = ("checkimage", "extractimage", "bootcode", "package", "rebuild", "packagehd")


@dataclass
class Paths:
    work: Path

    @property
    def image(self) -> Path:
        return self.work / "image"

    @property
    def extract(self) -> Path:
        return self.work / "extract"

    @property
    def state(self) -> Path:
        return self.work / ".pebuilder"

    @property
    def meta(self) -> Path:
        return self.state / "extract.meta.json"

    @property
    def template_json(self) -> Path:
        return self.state / "template.json"

    @property
    def pristine_cfg(self) -> Path:
        return self.state / "isolinux.cfg.orig"

    @property
    def esp(self) -> Path:
        return self.state / "esp.img"

    @property
    def entry_json(self) -> Path:
        return self.state / "boot-entry.json"


def _secret_digest(user) -> str:
    if user.password_file and user.password_file.is_file():
        data = user.password_file.read_bytes()
    elif user.password_env:
        data = os.environ.get(user.password_env, "").encode()
    else:
        data = (user.password_hash or "").encode()
    return hashlib.sha256(data).hexdigest()


class Remaster:
    def __init__(self, cfg: BuildConfig, engine: Engine):
        self.cfg = cfg
        self.p = Paths(cfg.work_dir)
        self.engine = engine

    # -- the sequence -----------------------------------------------------------------------------

    def stages(self) -> list[list[Stage]]:
        """Each inner list is a chain editing one tree; the outer list is the build, in order."""
        return [
            [self.unpack_iso(), self.kernel()],
            [self.unpack_initrd(), self.extensions_into_initrd(), self.customise(), self.kernel_modules()],
            [self.extensions_beside_initrd()],
            [self.bootcode()],
            [self.pack_initrd()],
            [self.efi_boot()],
            [self.package_iso()],
            *([self.disk_image(i, d)] for i, d in enumerate(self.cfg.disks)),
        ]

    def run(self, function: str) -> None:
        """remaster.sh's functions as prefixes of the one sequence (packagehd: all but the ISO)."""
        if function == "packagehd" and not self.cfg.disks:
            from pebuilder.config.model import DiskOutput

            # The seed's packagehd: temp_dir/buildpackage.raw, 20 GiB, msdos, ext3, GRUB for BIOS.
            self.cfg.disks = [DiskOutput(path=self.p.work / "buildpackage.raw", filesystem="ext3", label="TCROOT")]
        upto = {"extractimage": "extensions-cde", "bootcode": "bootcode", "package": "package-iso",
                "rebuild": None, "checkimage": "template", "packagehd": None}[function]
        for chain in self.stages():
            name = chain[0].name
            if function == "bootcode" and name not in ("template", "bootcode"):
                continue
            if function == "packagehd" and name in ("efi-boot", "package-iso"):
                continue
            if function in ("package", "extractimage", "bootcode", "checkimage") and name.startswith("disk-"):
                continue
            self.engine.chain(chain)
            if upto and any(s.name == upto for s in chain):
                return

    # -- helpers ----------------------------------------------------------------------------------

    def info(self) -> template.TemplateInfo:
        return template.TemplateInfo(**json.loads(self.p.template_json.read_text()))

    def sources(self):
        """Local folders first, then the configured mirrors (repository path from the template)."""
        if getattr(self, "_sources", None) is None:
            from pebuilder.tinycore.mirror import Mirror, Sources, repo_path

            mirror = None
            if self.cfg.mirrors:
                info = self.info()
                repo = self.cfg.repo or repo_path(info.tc_version, info.arch)
                mirror = Mirror(self.cfg.mirrors, repo, offline=self.cfg.offline)
            self._sources = Sources(self.cfg.ext_dirs, mirror, self._kver())
        return self._sources

    def resolve(self, placement: str) -> list[str]:
        """Requested extensions of one placement and their dependencies, dependencies first."""
        from pebuilder.tinycore.extensions import ExtensionMissing, resolve

        memo = self.__dict__.setdefault("_resolved", {})
        if placement in memo:
            return memo[placement]
        names = self.cfg.names(placement)
        src = self.sources()
        kver = self._kver()
        res = resolve([kernel_name(n, kver) for n in names], src.deps_of)
        for name, chain in res.missing.items():
            where = ", ".join(map(str, self.cfg.ext_dirs)) or "no extension folders"
            if src.mirror:
                where += f", and {', '.join(src.mirror.bases)} ({src.mirror.repo})"
            if len(chain) == 1:
                raise ExtensionMissing(f"extension {name} not found; looked in: {where}")
            msg = f"{name} (needed by {' -> '.join(chain[:-1])}) is not in {where}"
            if src.mirror:
                raise ExtensionMissing(f"dependency {msg}")
            log.warning("dependency %s; Tiny Core will look for it at boot", msg)
        memo[placement] = res.order
        return res.order

    def closure(self, placement: str) -> tuple[list[str], list[Path]]:
        order = self.resolve(placement)
        paths = self.sources().paths(order)
        return order, [paths[n] for n in order]

    def ext_key(self, *placements: str) -> dict:
        """What extension stages depend on: resolved names with local paths or the mirror's md5."""
        src = self.sources()
        out = {}
        for pl in placements:
            out[pl] = [[n, str(p) if (p := src.local(n)) else src.mirror.md5(n) if src.mirror else ""]
                       for n in self.resolve(pl)]
        return out

    def local_files(self, *placements: str) -> list[Path]:
        src = self.sources()
        return [p for pl in placements for n in self.resolve(pl) if (p := src.local(n)) is not None]

    def _kver(self) -> str | None:
        return self.info().kernel_version if self.p.template_json.exists() else None

    # -- stages -----------------------------------------------------------------------------------

    def unpack_iso(self) -> Stage:
        iso_path = self.cfg.template_iso
        if iso_path is None:
            return self.builtin_template()

        def action() -> str:
            iso.check_readable(iso_path)
            iso.extract_tree(iso_path, self.p.image)
            info = template.describe(self.p.image)
            template.require_tinycore(info, iso_path)
            self.p.state.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.p.template_json, info.to_json())
            shutil.copyfile(self.p.image / info.isolinux_cfg, self.p.pristine_cfg)
            # xorriso writes a new boot catalog; the template's old one must not linger in the tree.
            (self.p.image / Path(info.isolinux_cfg).parent / "boot.cat").unlink(missing_ok=True)
            return f"Tiny Core {info.tc_version or '?'} {info.arch}, kernel {info.kernel_version}"

        iso.check_readable(iso_path)
        return Stage("template", action, files=[iso_path],
                     outputs=[self.p.image, self.p.template_json, self.p.pristine_cfg])

    def builtin_template(self) -> Stage:
        from pebuilder.debian import template as debian_template

        if self.cfg.extensions:
            raise PebuilderError("extensions (.tcz) need a Tiny Core template; the built-in Debian template "
                                 "has no tce-load. Set [template] iso to a Tiny Core ISO", Exit.NOT_TINYCORE)

        def action() -> str:
            debian_template.assemble(self.p.image, self.p.state)
            info = template.describe(self.p.image)
            self.p.state.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.p.template_json, info.to_json())
            shutil.copyfile(self.p.image / info.isolinux_cfg, self.p.pristine_cfg)
            return f"Debian kernel {info.kernel_version} + busybox-static"

        return Stage("template", action, values={"builtin": "debian"},
                     outputs=[self.p.image, self.p.template_json, self.p.pristine_cfg])

    def unpack_initrd(self) -> Stage:
        def action() -> str:
            info = self.info()
            rmtree(self.p.extract)
            if self.p.meta.exists():
                self.p.meta.unlink()
            for rel in info.initrds:
                cpio.extract(self.p.image / rel, self.p.extract, self.p.meta)
            return f"{len(cpio.TreeMeta.load(self.p.meta).entries)} entries"

        return Stage("unpack-initrd", action, after=["template"], outputs=[self.p.extract, self.p.meta])

    def extensions_into_initrd(self) -> Stage:
        def action() -> str:
            meta = cpio.TreeMeta.load(self.p.meta)
            _, tczs = self.closure("initrd")
            run_scripts = self.cfg.extract_scripts == "run"
            results = [initrd_ext.install_extracted(self.p.extract, meta, t, self.p.state, run_scripts)
                       for t in tczs]
            b_names, b_tczs = self.closure("builtin")
            if b_tczs:
                initrd_ext.install_builtin(self.p.extract, meta, b_tczs, self.cfg.names("builtin"))
            if self.cfg.mirrors:
                initrd_ext.write_tcemirror(self.p.extract, meta, self.cfg.mirrors[0])
            meta.save(self.p.meta)
            write_text_atomic(self.p.state / "initrd-extensions.json",
                              json.dumps({"modules": any(r.has_modules for r in results),
                                          "libs": any(r.has_libs for r in results)}))
            return f"{len(results)} extracted, {len(b_tczs)} builtin"

        return Stage("extensions-initrd", action, after=["unpack-initrd"],
                     files=lambda: self.local_files("initrd", "builtin"),
                     values=lambda: {"ext": self.ext_key("initrd", "builtin"), "scripts": self.cfg.extract_scripts,
                                     "mirrors": self.cfg.mirrors})

    def kernel(self) -> Stage:
        """Another kernel for the template (e.g. Debian's): its image replaces the template's."""
        spec = self.cfg.kernel

        def action() -> str:
            if spec is None:
                return "template's kernel"
            from pebuilder.debian.kernel import prepare
            from pebuilder.tinycore import kernel_swap

            kf = prepare(spec)
            info = self.info()
            kernel_swap.replace_kernel_image(self.p.image, info.kernel, kf)
            data = json.loads(self.p.template_json.read_text())
            data["kernel_version"] = kf.kver
            write_text_atomic(self.p.template_json, json.dumps(data, indent=2))
            return f"{kf.source} ({kf.kver})"

        return Stage("kernel", action, after=["template"],
                     values={"kernel": {k: str(v) for k, v in spec.__dict__.items()} if spec else None})

    def customise(self) -> Stage:
        from pebuilder.tinycore import customize

        c = self.cfg.custom

        def action() -> str:
            meta = cpio.TreeMeta.load(self.p.meta)
            done = customize.apply(self.p.extract, meta, c)
            meta.save(self.p.meta)
            return ", ".join(done) or "nothing to customise"

        def inputs() -> dict:
            d = json.loads(json.dumps(c.__dict__, default=lambda o: o.__dict__ if hasattr(o, "__dict__") else str(o)))
            # A digest, never the text, of the password sources, so a changed password rebuilds.
            d["secrets"] = [_secret_digest(u) for u in c.users]
            return {"custom": hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()}

        def files() -> list[Path]:
            out = [f.source for f in c.files if f.source.is_file()]
            out += [p for f in c.files if f.source.is_dir() for p in sorted(f.source.rglob("*")) if p.is_file()]
            return out + ([c.sshd_config] if c.sshd_config else [])

        return Stage("customise", action, after=["extensions-initrd"], values=inputs, files=files)

    def kernel_modules(self) -> Stage:
        def action() -> str:
            flags = json.loads((self.p.state / "initrd-extensions.json").read_text())
            kver = self.info().kernel_version
            meta = cpio.TreeMeta.load(self.p.meta)
            from pebuilder.tinycore import kernel_swap

            notes = []
            report = {"zram": True}
            if self.cfg.kernel is not None:
                from pebuilder.debian.kernel import prepare

                kf = prepare(self.cfg.kernel)
                report = kernel_swap.install_modules(self.p.extract, meta, kf, self.cfg.custom.modules)
                notes.append(f"{report['modules']} modules of {kf.kver}")
                if kernel_swap.patch_tce_load(self.p.extract):
                    notes.append("tce-load: bs=4096 dropped (kernels since 5.4 refuse it)")
                if not report["zram"]:
                    notes.append("no zram: nozswap")
            elif flags["modules"] and kver:
                initrd_ext.depmod(self.p.extract, kver)
                for f in (self.p.extract / "lib/modules" / kver).glob("modules.*"):
                    meta.set(f.relative_to(self.p.extract).as_posix(), 0o100644, 0, 0)
                notes.append(f"depmod {kver}")
            early = list(dict.fromkeys([*report.get("early", []), *self.cfg.custom.modules]))
            if self.cfg.custom.modules:
                self._check_modules(kver)
            if early:
                kernel_swap.load_early(self.p.extract, meta, early)
                notes.append("early: " + " ".join(early))
            meta.save(self.p.meta)
            write_text_atomic(self.p.state / "kernel.json", json.dumps(report))
            return "; ".join(notes) or "no modules added"

        return Stage("kernel-modules", action, after=["customise", "kernel"],
                     values={"modules": self.cfg.custom.modules})

    def _check_modules(self, kver: str | None) -> None:
        """Each early module must be in the image's module trees (base or extensions) or built in."""
        have: set[str] = set()
        for base in ("lib/modules", "usr/local/lib/modules"):
            d = self.p.extract / base / (kver or "")
            for f in ("modules.dep", "modules.builtin"):
                if (d / f).exists():
                    for line in (d / f).read_text().splitlines():
                        name = line.split(":")[0].rsplit("/", 1)[-1].split(".ko")[0].replace("-", "_")
                        have.add(name)
            for ko in d.rglob("*.ko*") if d.is_dir() else []:
                have.add(ko.name.split(".ko")[0].replace("-", "_"))
        for m in self.cfg.custom.modules:
            if m.replace("-", "_") not in have:
                raise PebuilderError(f"boot.modules: {m!r} is in no module tree of the image (kernel {kver}); "
                                     "add the extension that holds it, or set [kernel] to one that has it",
                                     Exit.KERNEL)

    def extensions_beside_initrd(self) -> Stage:
        def action() -> str:
            in_initrd = self.resolve("initrd")
            names, tczs = self.closure("onboot")
            od_names, od_tczs = self.closure("ondemand")
            return cde.write(self.p.image / "cde", onboot=self.cfg.names("onboot"),
                             files=[t for t in [*tczs, *od_tczs] if t.name not in in_initrd],
                             copy2fs_all=self.cfg.copy2fs_all, copy2fs=self.cfg.copy2fs)

        return Stage("extensions-cde", action, after=["template"],
                     files=lambda: self.local_files("onboot", "ondemand"),
                     values=lambda: {"ext": self.ext_key("onboot", "ondemand", "initrd"),
                                     "onboot": self.cfg.names("onboot"),
                                     "copy2fs": [self.cfg.copy2fs_all, self.cfg.copy2fs]})

    def boot_codes(self) -> list[str]:
        codes = list(self.cfg.boot_codes)
        c = self.cfg.custom
        if not c.autologin and "noautologin" not in codes:
            codes.append("noautologin")
        if c.hostname and not any(x.startswith("host=") for x in codes):
            codes.append(f"host={c.hostname}")
        kjson = self.p.state / "kernel.json"
        if self.cfg.kernel is not None and kjson.exists() and not json.loads(kjson.read_text()).get("zram", True):
            codes.append("nozswap")
        if self.cfg.names("onboot") or self.cfg.names("ondemand"):
            codes.append("cde")
        if self.cfg.serial and not any(c.startswith("console=") for c in codes):
            codes += ["console=tty0", "console=ttyS0,115200"]
        return codes

    def bootcode(self) -> Stage:
        def action() -> str:
            info = self.info()
            initrds = ["/" + info.initrds[0]]
            timeout = None
            if self.cfg.menu_timeout is not None:
                timeout = max(1, round(self.cfg.menu_timeout * 10))
            pristine = self.p.pristine_cfg.read_text(errors="replace")
            serial = self.cfg.serial or any(c.startswith("console=ttyS") for c in self.cfg.boot_codes)
            text = isolinux_cfg.rewrite(pristine, codes=self.boot_codes(), timeout_tenths=timeout,
                                        serial=serial,
                                        initrds=initrds if len(info.initrds) > 1 else None)
            write_text_atomic(self.p.image / info.isolinux_cfg, text)
            parsed = isolinux_cfg.parse(text)
            label = parsed.default_label()
            assert label is not None
            tenths = next((int(w[1]) for w in (ln.split() for ln in text.splitlines())
                           if len(w) == 2 and w[0].lower() == "timeout" and w[1].isdigit()), 50)
            entry = BootEntry(title=f"{label.name} (pebuilder)", kernel="/" + info.kernel, initrds=initrds,
                              cmdline=label.append, timeout=tenths / 10, serial=serial)
            marker = entry.marker_name(self.cfg.iso.volume_id if self.cfg.iso else "")
            if info.arch == "x86_64":
                iso_out.write_grub_files(self.p.image, entry, marker)
            write_text_atomic(self.p.entry_json, json.dumps({"marker": marker, **entry.__dict__}))
            return " ".join(self.boot_codes())

        return Stage("bootcode", action, after=["template", "extensions-cde", "kernel-modules"],
                     values=lambda: {"codes": self.boot_codes(), "timeout": self.cfg.menu_timeout,
                                     "serial": self.cfg.serial,
                                     "vol": self.cfg.iso.volume_id if self.cfg.iso else ""},
                     outputs=[self.p.entry_json])

    def pack_initrd(self) -> Stage:
        def action() -> str:
            info = self.info()
            target = self.p.image / info.initrds[0]
            size = cpio.pack(self.p.extract, cpio.TreeMeta.load(self.p.meta), target,
                             self.cfg.initrd_compression, self.cfg.initrd_level)
            for extra in info.initrds[1:]:
                (self.p.image / extra).unlink(missing_ok=True)
            return f"{target.name} {size} bytes"

        return Stage("pack-initrd", action, after=["template", "kernel-modules"],
                     trees=[self.p.extract], files=[self.p.meta],
                     values={"c": self.cfg.initrd_compression, "l": self.cfg.initrd_level})

    def efi_boot(self) -> Stage:
        def action() -> str:
            info = self.info()
            if info.arch != "x86_64" or not (self.cfg.iso and self.cfg.iso.uefi):
                self.p.esp.unlink(missing_ok=True)
                return f"no UEFI for {info.arch}: BIOS only"
            marker = json.loads(self.p.entry_json.read_text())["marker"]
            iso_out.build_esp(self.p.esp, "x86_64", marker, self.p.state)
            return "GRUB x86_64-efi"

        return Stage("efi-boot", action, after=["bootcode"],
                     values={"uefi": bool(self.cfg.iso and self.cfg.iso.uefi)})

    def package_iso(self) -> Stage:
        out = self.cfg.iso.path if self.cfg.iso else self.p.work / "ezremaster.iso"
        vol = self.cfg.iso.volume_id if self.cfg.iso else "Tinycore"

        def action() -> str:
            info = self.info()
            isolinux_bin = str(Path(info.isolinux_cfg).parent / "isolinux.bin")
            if not (self.p.image / isolinux_bin).is_file():
                raise PebuilderError(f"the template has no {isolinux_bin}; cannot make a BIOS-bootable ISO",
                                     Exit.NO_ISOLINUX_CFG)
            esp = self.p.esp if self.p.esp.exists() else None
            iso_out.package(self.p.image, out, isolinux_bin=isolinux_bin, esp=esp, volume_id=vol)
            return str(out)

        return Stage("package-iso", action, after=["bootcode", "pack-initrd", "efi-boot", "extensions-cde"],
                     trees=[self.p.image], values={"out": str(out), "vol": vol}, outputs=[out])

    def disk_image(self, index: int, spec) -> Stage:
        from pebuilder.outputs import disk
        from pebuilder.tinycore import frugal

        name = f"disk-{spec.path.name}"
        staging = self.p.state / f"disk{index}" / "root"

        def action() -> str:
            info = self.info()
            entry_data = json.loads(self.p.entry_json.read_text())
            entry_data.pop("marker", None)
            entry = frugal.disk_entry(BootEntry(**entry_data), spec)
            frugal.stage(self.p.image, info.kernel, info.initrds[0], spec, staging)
            plan = disk.write(spec, staging, entry, staging.parent, seed=f"{spec.path.name}|{spec.label}")
            rmtree(staging)
            return (f"{spec.table}/{spec.firmware} {spec.filesystem} {spec.format}, root at sector "
                    f"{plan.root.start}: {' '.join(entry.cmdline)}")

        values = {k: str(v) for k, v in spec.__dict__.items()}
        return Stage(name, action, after=["bootcode", "pack-initrd", "extensions-cde"], trees=[self.p.image]
                     + ([spec.mydata] if spec.mydata else []), values=values, outputs=[spec.path])
