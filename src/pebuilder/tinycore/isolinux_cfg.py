"""isolinux.cfg as Tiny Core ISOs write it: labels with kernel, initrd and append lines.

Boot codes are applied to the template's pristine file every time, which is what makes `bootcode`
idempotent: a rerun never doubles a code, and a changed list replaces the old one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

CANDIDATES = ("boot/isolinux/isolinux.cfg", "isolinux/isolinux.cfg", "isolinux.cfg")


@dataclass
class Label:
    name: str
    kernel: str | None = None
    initrds: list[str] = field(default_factory=list)
    append: list[str] = field(default_factory=list)


@dataclass
class IsolinuxConfig:
    default: str | None
    labels: list[Label]

    def default_label(self) -> Label | None:
        for lab in self.labels:
            if self.default and lab.name == self.default:
                return lab
        for lab in self.labels:
            if lab.kernel:
                return lab
        return None


def parse(text: str) -> IsolinuxConfig:
    default = None
    labels: list[Label] = []
    for raw in text.splitlines():
        words = raw.split()
        if not words:
            continue
        key = words[0].lower()
        rest = words[1:]
        if key == "default" and rest:
            default = rest[0]
        elif key == "label" and rest:
            labels.append(Label(rest[0]))
        elif labels and key in ("kernel", "linux") and rest:
            labels[-1].kernel = rest[0]
        elif labels and key == "initrd" and rest:
            labels[-1].initrds.extend(x for x in rest[0].split(",") if x)
        elif labels and key == "append":
            for w in rest:
                if w.startswith("initrd="):
                    labels[-1].initrds.extend(x for x in w[len("initrd="):].split(",") if x)
                else:
                    labels[-1].append.append(w)
    return IsolinuxConfig(default, labels)


def _code_key(code: str) -> str | None:
    """`key=value` codes replace each other by key; console= may legitimately repeat."""
    if "=" not in code:
        return None
    key = code.split("=", 1)[0]
    return None if key == "console" else key


def merge_codes(existing: list[str], added: list[str]) -> list[str]:
    """Existing codes, then added ones; an added `key=value` replaces the same key, nothing repeats."""
    added_keys = {_code_key(c) for c in added} - {None}
    out = [c for c in existing if _code_key(c) not in added_keys]
    for c in added:
        if c not in out:
            out.append(c)
    return out


def rewrite(text: str, *, codes: list[str], timeout_tenths: int | None, serial: bool,
            initrds: list[str] | None = None) -> str:
    """remaster.sh's bootcode, made idempotent: codes go on every `append` line exactly once."""
    lines = text.splitlines()
    out: list[str] = []
    if serial and not any(re.match(r"\s*serial\s", ln, re.I) for ln in lines):
        out.append("SERIAL 0 115200")
    saw_timeout = False
    for ln in lines:
        words = ln.split()
        key = words[0].lower() if words else ""
        indent = ln[: len(ln) - len(ln.lstrip())]
        if key == "append":
            kept = [w for w in words[1:] if not w.startswith("initrd=")]
            old_initrd = [w for w in words[1:] if w.startswith("initrd=")]
            if initrds is not None and old_initrd:
                old_initrd = ["initrd=" + ",".join(initrds)]
            ln = indent + " ".join([words[0], *old_initrd, *merge_codes(kept, codes)])
        elif key == "initrd" and initrds is not None:
            ln = f"{indent}{words[0]} {','.join(initrds)}"
        elif key == "timeout" and timeout_tenths is not None:
            ln = f"{indent}{words[0]} {timeout_tenths}"
            saw_timeout = True
        out.append(ln)
    if timeout_tenths is not None and not saw_timeout:
        out.append(f"timeout {timeout_tenths}")
    return "\n".join(out) + "\n"


def timeout_tenths(text: str, default: int = 50) -> int:
    """The menu timeout in tenths of a second, as ISOLINUX reads it."""
    for ln in text.splitlines():
        w = ln.split()
        if len(w) == 2 and w[0].lower() == "timeout" and w[1].isdigit():
            return int(w[1])
    return default
