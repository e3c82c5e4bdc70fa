"""Host injection (the installnet approach): a POSIX sh script that makes an existing Debian/Ubuntu host
boot a netboot output's PE once.

A cloud VM has no console to pick a boot entry and no network boot to point at the PE. The script runs on
the host as root: it downloads the netboot kernel and initramfs into /boot/pebuilder, adds a GRUB entry
(/etc/grub.d/42_pebuilder) and selects it with grub-reboot, so the next boot, and only that one, starts
the PE. The script text lives in inject.sh.in; this module fills it in.

The script is run by root on someone's server, so everything baked into it is checked here, when it is
written: the sha256 of each file comes from the netboot folder's SHA256SUMS (and the folder's files must
still match it), the URL, the title and the boot codes must fit grammars that leave nothing for sh or
GRUB to interpret, and every value is single-quoted for sh anyway. The download is trusted for nothing but
bytes whose sha256 is the baked one.
"""

from __future__ import annotations

import re
import urllib.parse
from pathlib import Path

from pebuilder.config import validate
from pebuilder.errors import Exit, PebuilderError
from pebuilder.fsutil import file_sha256
from pebuilder.outputs.bootmenu import grub_quote

TEMPLATE = Path(__file__).resolve().parent / "inject.sh.in"
FILES = ("vmlinuz", "initrd.img")
# What the netboot output's own menus use when its folder says nothing: the VGA console and the first
# serial port (where a cloud provider's serial log shows the PE).
DEFAULT_CMDLINE = ["console=tty0", "console=ttyS0,115200"]
DEFAULT_TITLE = "pebuilder PE"
ENTRY_ID = "pebuilder-pe"
TITLE_MAX = 100
_SUM_LINE = re.compile(r"([0-9a-fA-F]{64}) [ *](.+)")
_PLACEHOLDER = re.compile(r"@([A-Z0-9_]+)@")
# Placeholders inside the quoted here-documents (the grub.d script): the text lands there unchanged, so it
# must be one line; the grammars below see to that, the renderer checks it again.
_HEREDOC_KEYS = {"GRUB_TITLE", "GRUB_CMDLINE"}


class InjectError(PebuilderError):
    """A netboot folder or a value the script cannot be written from (a usage error: fix the arguments)."""

    code = Exit.USAGE


def sh_quote(value: str) -> str:
    """One sh word whatever the value: single quotes, a quote inside written as '\\''.

    Always quoted (unlike shlex.quote) so every baked value reads the same in the script.
    """
    return "'" + value.replace("'", "'\\''") + "'"


def read_sums(netboot_dir: Path) -> dict[str, str]:
    """SHA256SUMS as {file: sha256}; a line that is not `<sha256>  <file>` is an error, not skipped, since
    the hashes are the only thing the script trusts."""
    path = netboot_dir / "SHA256SUMS"
    if not path.is_file():
        raise InjectError(f"{path} not found: {netboot_dir} is not a netboot output folder "
                          "(pebuilder build writes one for [output.netboot])")
    sums: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        m = _SUM_LINE.fullmatch(line)
        if not m:
            raise InjectError(f"{path}, line {number}: not '<sha256>  <file>': {line[:80]!r}")
        name = m[2].removeprefix("./")
        sums[name] = m[1].lower()
    return sums


def read_cmdline(netboot_dir: Path) -> list[str]:
    """The boot codes the netboot output was built with (cmdline.txt, one line), each checked against the
    boot-code grammar: they end up on a GRUB `linux` line on the host."""
    path = netboot_dir / "cmdline.txt"
    if not path.is_file():
        return list(DEFAULT_CMDLINE)
    lines = [ln for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    if len(lines) > 1:
        raise InjectError(f"{path} holds {len(lines)} lines; it must be one line of boot codes")
    codes = lines[0].split() if lines else []
    for code in codes:
        if problem := validate.boot_code(code):
            raise InjectError(f"{path}: {problem}")
    return codes


def check_url(base_url: str) -> str:
    """The base URL without its trailing slash; http(s), URL characters only, and no query or fragment
    (the file names are appended to it)."""
    if problem := validate.url(base_url):
        raise InjectError(f"--url: {problem}")
    parts = urllib.parse.urlsplit(base_url)
    if not parts.netloc or not parts.hostname:
        raise InjectError(f"--url: {base_url!r} names no host")
    if parts.query or parts.fragment or "?" in base_url or "#" in base_url:
        raise InjectError(f"--url: {base_url!r} has a query or fragment; give the folder's URL, "
                          "the script appends vmlinuz and initrd.img to it")
    return base_url.rstrip("/")


def check_title(title: str) -> str:
    """A menu title that GRUB reads literally inside single quotes, on one line of the grub.d script."""
    if not title or len(title) > TITLE_MAX:
        raise InjectError(f"--title: give 1 to {TITLE_MAX} characters")
    if not title.isprintable():
        raise InjectError(f"--title: {title!r} holds a control character or newline")
    if "'" in title:
        raise InjectError(f"--title: {title!r} holds a single quote, which would end GRUB's quoted title")
    return title


def check_codes(codes: list[str]) -> list[str]:
    """Extra boot codes (--append), by the same grammar as the config's: one word, no GRUB or sh syntax."""
    for code in codes:
        if problem := validate.boot_code(code):
            raise InjectError(f"--append: {problem}")
    return codes


def netboot_files(netboot_dir: Path) -> dict[str, tuple[str, int]]:
    """{name: (sha256, size)} for the kernel and the initramfs, after checking that the folder's files are
    the ones SHA256SUMS lists: a script baked from a stale list would refuse every download."""
    if not netboot_dir.is_dir():
        raise InjectError(f"{netboot_dir} is not a folder (give the netboot output's folder)")
    sums = read_sums(netboot_dir)
    out: dict[str, tuple[str, int]] = {}
    for name in FILES:
        path = netboot_dir / name
        if not path.is_file():
            raise InjectError(f"{path} not found: the netboot folder must hold {' and '.join(FILES)}")
        if name not in sums:
            raise InjectError(f"{netboot_dir / 'SHA256SUMS'} lists no {name}")
        actual = file_sha256(path)
        if actual != sums[name]:
            raise InjectError(f"{path} has sha256 {actual} but SHA256SUMS says {sums[name]}: the folder changed "
                              "after it was written; build it again")
        out[name] = (sums[name], path.stat().st_size)
    return out


def render(template: str, values: dict[str, str]) -> str:
    """Fill @KEY@ placeholders in one pass (a value's own text is never scanned again); a placeholder
    without a value, or a value without a placeholder, is a bug here, not something to ship."""
    used: set[str] = set()

    def fill(m: re.Match[str]) -> str:
        if m[1] not in values:
            raise KeyError(f"inject.sh.in: no value for @{m[1]}@")
        used.add(m[1])
        return values[m[1]]

    for key in _HEREDOC_KEYS & values.keys():
        if "\n" in values[key] or "\r" in values[key]:
            raise ValueError(f"{key} must be one line")
    text = _PLACEHOLDER.sub(fill, template)
    if unused := values.keys() - used:
        raise KeyError(f"inject.sh.in has no place for {sorted(unused)}")
    return text


def inject_script(netboot_dir: Path, base_url: str, title: str = DEFAULT_TITLE, append: list[str] | None = None) -> str:
    """The host script for the netboot output in `netboot_dir`, served at `base_url`."""
    netboot_dir = Path(netboot_dir)
    base = check_url(base_url)
    title = check_title(title)
    files = netboot_files(netboot_dir)
    codes = read_cmdline(netboot_dir) + check_codes(list(append or []))
    if problem := validate.cmdline(codes):
        raise InjectError(f"--append: {problem}")
    (k_sum, k_size), (i_sum, i_size) = files["vmlinuz"], files["initrd.img"]
    cmdline = " ".join(codes)
    values = {
        "TITLE": sh_quote(title),
        "CMDLINE": sh_quote(cmdline),
        "VMLINUZ_URL": sh_quote(f"{base}/vmlinuz"),
        "VMLINUZ_SHA256": sh_quote(k_sum),
        "VMLINUZ_SIZE": str(int(k_size)),
        "INITRD_URL": sh_quote(f"{base}/initrd.img"),
        "INITRD_SHA256": sh_quote(i_sum),
        "INITRD_SIZE": str(int(i_size)),
        "GRUB_TITLE": grub_quote(title),
        "GRUB_CMDLINE": f" {cmdline}" if cmdline else "",
    }
    return render(TEMPLATE.read_text(encoding="utf-8"), values)
