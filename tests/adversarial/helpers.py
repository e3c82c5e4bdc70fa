"""Shared pieces of the adversarial tests (issue 9): hostile archives made on the spot, canary folders
outside the work tree, configs, and the CLI with its one-line error contract.

Imported as `from adversarial.helpers import ...` (tests/ is on sys.path through tests/conftest.py).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import ROOT, TCZ, make_iso, make_template_tree

from pebuilder.formats import cpio, iso
from pebuilder.fsutil import file_sha256

SDE = "1700000000"
BUILD_ENV = {"SOURCE_DATE_EPOCH": SDE}


# -- canaries ---------------------------------------------------------------------------------------

def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under `root` (itself included): type, mode, owner, size, mtime, content hash or link."""
    out: dict[str, tuple] = {}
    paths = [root, *sorted(root.rglob("*"))] if root.exists() else []
    for p in paths:
        st = os.lstat(p)
        rel = "." if p == root else p.relative_to(root).as_posix()
        if stat.S_ISLNK(st.st_mode):
            what: Any = os.readlink(p)
        elif stat.S_ISREG(st.st_mode):
            what = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            what = None
        out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_size,
                    st.st_mtime_ns, what)
    return out


class Canary:
    """A folder outside every work tree that hostile input aims at; it must never change."""

    def __init__(self, base: Path, name: str = "canary"):
        self.dir = base / name
        (self.dir / "sub").mkdir(parents=True)
        (self.dir / "file.txt").write_text("canary: must never change\n")
        (self.dir / "sub" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
        (self.dir / "empty").mkdir()
        self.before = snapshot(self.dir)

    def rebase(self) -> None:
        """The test added bait of its own: take the snapshot again."""
        self.before = snapshot(self.dir)

    @property
    def file(self) -> Path:
        return self.dir / "file.txt"

    def check(self) -> None:
        after = snapshot(self.dir)
        changed = sorted(k for k in set(self.before) | set(after) if self.before.get(k) != after.get(k))
        assert not changed, f"the canary folder {self.dir} changed: {changed}"


# -- the CLI --------------------------------------------------------------------------------------

def cli(*args: str | os.PathLike, env: dict[str, str | None] | None = None, timeout: float = 300,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """pebuilder as a user runs it, with reproducible time unless `env` says otherwise (None unsets)."""
    full = {**os.environ, **BUILD_ENV, "PYTHONPATH": str(ROOT / "src")}
    for k, v in (env or {}).items():
        if v is None:
            full.pop(k, None)
        else:
            full[k] = v
    return subprocess.run([sys.executable, "-m", "pebuilder", *map(str, args)], capture_output=True, text=True,
                          env=full, cwd=cwd, timeout=timeout)


def build(cfg: Path, *extra: str | os.PathLike, env: dict[str, str | None] | None = None,
          command: str = "build") -> subprocess.CompletedProcess[str]:
    args = [command, cfg, *extra]
    return cli(*args, "--json", env=env)


def error_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    """stderr without the log's warnings: what the user is told went wrong."""
    return [ln for ln in proc.stderr.splitlines()
            if ln.strip() and not ln.startswith(("WARNING:", "INFO:", "DEBUG:"))]


def assert_ok(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout[-2000:]}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr


def assert_error(proc: subprocess.CompletedProcess[str], code: int, *needles: str, lines: int = 1) -> str:
    """Exit `code`, one `pebuilder: error:` line on stderr naming every needle, never a traceback."""
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == code, (f"expected exit {code}, got {proc.returncode}\nstdout:\n{proc.stdout[-2000:]}"
                                     f"\nstderr:\n{proc.stderr[-3000:]}")
    errs = error_lines(proc)
    assert len(errs) == lines and errs[0].startswith("pebuilder: error: "), proc.stderr
    text = "\n".join(errs)
    for n in needles:
        assert n in text, f"{n!r} not in the message {text!r}"
    return text


# -- configs --------------------------------------------------------------------------------------

def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (str, Path)):
        return json.dumps(str(v))  # a TOML basic string: \n, \" and \u0000 escapes are TOML too
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(v)


def toml_text(data: dict[str, Any], prefix: str = "") -> str:
    lines: list[str] = []
    tables: list[str] = []
    for k, v in data.items():
        name = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict):
            tables.append(f"\n[{name}]\n" + toml_text(v, name))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for t in v:
                tables.append(f"\n[[{name}]]\n" + toml_text(t, name))
        else:
            lines.append(f"{k} = {_toml_value(v)}")
    return "\n".join(lines) + ("\n" if lines else "") + "".join(tables)


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def tc_data(base: Path, template: Path, **over: Any) -> dict[str, Any]:
    """A Tiny Core remaster of `template` with its work folder and ISO under `base`."""
    data = {"template": {"iso": str(template)}, "work": {"dir": str(base / "work")},
            "extensions": {"dirs": [str(TCZ)]}, "boot": {"timeout": 1},
            "output": {"iso": {"path": str(base / "out" / "x.iso")}}}
    return merge(data, over)


def write_config(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(toml_text(data))
    return path


def tc_config(base: Path, template: Path, name: str = "pebuilder.toml", **over: Any) -> Path:
    return write_config(base / name, tc_data(base, template, **over))


# -- crafted archives -------------------------------------------------------------------------------

def newc(members: list[dict[str, Any]]) -> bytes:
    """A newc cpio archive exactly as given: members are dicts of name, mode, and optionally ino,
    nlink, data (bytes; a symlink's target for S_IFLNK), rdev (major, minor)."""
    w = cpio.CpioWriter(_Sink())
    out = w.sink
    for m in members:
        data = m.get("data", b"")
        if isinstance(data, str):
            data = data.encode()
        mode = m["mode"]
        e = cpio.Entry(name=m["name"], mode=mode, nlink=m.get("nlink", 1), ino=m.get("ino", 0) or w.next_ino,
                       mtime=1_600_000_000, size=len(data))
        w.next_ino += 1
        e.rdevmajor, e.rdevminor = m.get("rdev", (0, 0))
        if stat.S_ISLNK(mode):
            e.link_target = data.decode()
            w.add(e)
        else:
            w.add(e, data)
    w.finish()
    return bytes(out.buf)


class _Sink:
    def __init__(self) -> None:
        self.buf = bytearray()

    def write(self, data: bytes) -> int:
        self.buf += data
        return len(data)

    def tell(self) -> int:
        return len(self.buf)


REG = stat.S_IFREG | 0o644
DIR = stat.S_IFDIR | 0o755
LNK = stat.S_IFLNK | 0o777


def make_tcz(folder: Path, name: str, files: dict[str, str | bytes] | None = None, *,
             links: dict[str, str] | None = None, pseudo: list[str] | None = None,
             sparse: dict[str, int] | None = None, modes: dict[str, int] | None = None) -> Path:
    """An extension `name`.tcz made by the test: files, symlinks (as given, pointing anywhere),
    mksquashfs pseudo definitions (device nodes, fifos), sparse files of a given apparent size."""
    src = folder / f"{name}-src"
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    for rel, data in (files or {}).items():
        p = src / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode() if isinstance(data, str) else data)
        os.chmod(p, (modes or {}).get(rel, 0o644))
    for rel, target in (links or {}).items():
        p = src / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, p)
    for rel, size in (sparse or {}).items():
        p = src / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(p, "wb") as f:
            f.truncate(size)
    out = folder / f"{name}.tcz"
    out.unlink(missing_ok=True)
    opts = ["-b", "4k", "-no-xattrs", "-all-root", "-noappend", "-quiet", "-no-progress"]
    for p in pseudo or []:
        opts += ["-p", p]
    if sparse:
        # mksquashfs would read every zero of a sparse file; a GNU sparse tar carries only the holes.
        tar = subprocess.Popen(["tar", "--sparse", "--format=gnu", "-cf", "-", "-C", str(src), "."],
                               stdout=subprocess.PIPE)
        subprocess.run(["mksquashfs", "-", str(out), "-tar", *opts], stdin=tar.stdout, check=True,
                       capture_output=True)
        assert tar.wait() == 0
    else:
        subprocess.run(["mksquashfs", str(src), str(out), *opts], check=True, capture_output=True)
    shutil.rmtree(src)
    return out


def make_template(out: Path, *, extra_initrd: bytes | None = None,
                  edit: Callable[[Path], None] | None = None) -> Path:
    """A CorePure64-style template ISO from the fixtures; `extra_initrd` (a cpio archive) is appended
    to its initrd as another gzip member (the kernel reads it after the real one), `edit` changes the
    CD tree before it is written."""
    tree = make_template_tree(out.parent / (out.stem + "-tree"))
    if extra_initrd is not None:
        with open(tree / "boot/corepure64.gz", "ab") as f:
            f.write(gzip.compress(extra_initrd, mtime=0))
    if edit is not None:
        edit(tree)
    make_iso(tree, out)
    shutil.rmtree(tree)
    return out


# -- reading results --------------------------------------------------------------------------------

def iso_member(image: Path, name: str, dest: Path) -> Path:
    got = iso.extract_files(image, [name], dest)
    assert name in got, f"{name} not in {image}"
    return got[name]


def initrd_entries(image: Path, dest: Path) -> dict[str, cpio.Entry]:
    initrd = iso_member(image, "boot/corepure64.gz", dest)
    return {e.name.removeprefix("./"): e for e in cpio.list_entries(initrd)}


def initrd_member(image: Path, name: str, dest: Path) -> bytes | None:
    return cpio.read_member(iso_member(image, "boot/corepure64.gz", dest), name)


def sha256(path: Path) -> str:
    return file_sha256(path)


def tmp_leftovers(*folders: Path) -> list[str]:
    """pebuilder's temporaries (atomic outputs, downloads, ESP parts) anywhere under these folders."""
    found = []
    for folder in folders:
        if not folder.exists():
            continue
        for p in folder.rglob("*"):
            if p.name.endswith((".pbtmp", ".part", ".tmp")) or p.name.startswith((".dl-", ".tmp-")):
                found.append(str(p))
    return found


# -- reading menus back as their boot loaders do ---------------------------------------------------

GRUB_META = set("$;|&<>{}`")


def grub_words(line: str) -> list[str]:
    """One line of GRUB script split into words as GRUB's lexer does: '...' is literal, "..." takes
    backslash escapes of $ " \\, a bare backslash escapes the next character. An unquoted metacharacter
    (or any $) would be syntax or an expansion, so it fails the parse instead of being guessed at."""
    words: list[str] = []
    cur: list[str] = []
    in_word = False
    i = 0
    while i < len(line):
        c = line[i]
        if c in " \t":
            if in_word:
                words.append("".join(cur))
                cur, in_word = [], False
            i += 1
            continue
        if c == "#" and not in_word:
            raise ValueError(f"a comment starts in {line!r}")
        in_word = True
        if c == "'":
            j = line.index("'", i + 1)
            cur.append(line[i + 1:j])
            i = j + 1
        elif c == '"':
            i += 1
            while line[i] != '"':
                if line[i] == "\\" and line[i + 1] in '$"\\':
                    cur.append(line[i + 1])
                    i += 2
                elif line[i] == "$":
                    raise ValueError(f"an expansion in {line!r}")
                else:
                    cur.append(line[i])
                    i += 1
            i += 1
        elif c == "\\":
            cur.append(line[i + 1])
            i += 2
        elif c in GRUB_META:
            raise ValueError(f"unquoted {c!r} in {line!r}")
        else:
            cur.append(c)
            i += 1
    if in_word:
        words.append("".join(cur))
    return words


def grub_linux_words(cfg: str) -> list[list[str]]:
    """The words of every `linux` command (after the command name) of a grub.cfg."""
    out = []
    for ln in cfg.splitlines():
        if ln.split()[:1] == ["linux"]:
            out.append(grub_words(ln)[1:])
    return out


def grub_script_check(text: str, folder: Path) -> subprocess.CompletedProcess[str]:
    path = folder / "check-grub.cfg"
    path.write_text(text)
    return subprocess.run(["grub-script-check", str(path)], capture_output=True, text=True)


def isolinux_append_words(cfg: str) -> list[list[str]]:
    return [ln.split()[1:] for ln in cfg.splitlines() if ln.split()[:1] and ln.split()[0].lower() == "append"]
