"""Grammars of the values that end up in boot menus, shell scripts and account files.

Each checker returns None for a good value and a sentence saying what is wrong otherwise. They run
when the config is read, so a value that would inject a GRUB command, a second passwd line or a
shell command never reaches a build; the message names the key (the reader adds it).
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
from collections.abc import Callable

from pebuilder.formats.tcz import ext_name  # noqa: F401 - the config checks names with it

Check = Callable[[str], str | None]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                      r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
# Boot codes reach isolinux's append line and GRUB's `linux` line. GRUB's metacharacters
# ({ } | & $ ; < > quotes, #, backslash, white space) and control characters are refused, so a code is
# always one word that both menus pass to the kernel unchanged.
BOOT_CODE = re.compile(r"^[A-Za-z0-9_.,:/=+@%~?!-]+$")
BOOT_CODE_MAX = 1024
CMDLINE_MAX = 2048  # x86's COMMAND_LINE_SIZE; arm64's is the same
USER_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,30}\$?$")  # Debian's useradd NAME_REGEX, 32 at most
SHELL = re.compile(r"^/[A-Za-z0-9_./+-]+$")
CRYPT = re.compile(r"^[!*]*(\$(1|5|6|y|gy|7|2[abxy])\$[./A-Za-z0-9$=,]+)?$")
KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ssh-dss", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
             "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com")
URL = re.compile(r"^https?://[A-Za-z0-9._~:/?#\[\]@!%+,=-]+$")
DEB_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
MODULE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
LABEL = re.compile(r"^[A-Za-z0-9_.-]+$")
MAX_ID = 2**32 - 2  # (uid_t)-1 means "no change" to chown: never a real owner


def hostname(v: str) -> str | None:
    if not HOSTNAME.fullmatch(v):
        return (f"{v!r} is not a host name (RFC 1123: letters, digits and '-', dot-separated labels of at most "
                "63 characters, 253 in all)")
    return None


def boot_code(v: str) -> str | None:
    if len(v) > BOOT_CODE_MAX:
        return f"a boot code of {len(v)} characters is too long (at most {BOOT_CODE_MAX})"
    if not BOOT_CODE.fullmatch(v):
        bad = sorted({c for c in v if not BOOT_CODE.fullmatch(c)})
        shown = ", ".join(repr(c) for c in bad[:6])
        return (f"{v!r} holds {shown}; a boot code is one word of letters, digits and _ . , : / = + @ % ~ ? ! - "
                "(no spaces, quotes, ; { } | & $ < > # or backslash, which GRUB or ISOLINUX would read as syntax)")
    return None


def cmdline(codes: list[str]) -> str | None:
    total = len(" ".join(codes))
    if total > CMDLINE_MAX:
        return f"the boot codes add up to {total} characters; the kernel takes at most {CMDLINE_MAX}"
    return None


def user_name(v: str) -> str | None:
    if not USER_NAME.fullmatch(v):
        return (f"{v!r} is not a valid user name (Debian's rule: a lower-case letter or _, then lower-case "
                "letters, digits, _ or -, at most 32 characters)")
    return None


def shell(v: str) -> str | None:
    if not SHELL.fullmatch(v):
        return f"{v!r} is not a shell path (an absolute path of letters, digits and _ . / + -)"
    return None


def crypt_hash(v: str) -> str | None:
    if not CRYPT.fullmatch(v) or v == "":
        return (f"{v!r} is not a crypt(3) hash such as $6$salt$hash (or one prefixed with ! to lock it); "
                "make one with: openssl passwd -6")
    return None


def authorized_key(v: str) -> str | None:
    """One public key line: [options] type base64 [comment]; the blob must decode to that type."""
    if _CONTROL.search(v):
        return "holds a newline or control character; give one key per list item"
    words = v.split()
    at = next((i for i, w in enumerate(words) if w in KEY_TYPES), None)
    if at is None or at + 1 >= len(words):
        return f"not an OpenSSH public key (expected one of {', '.join(KEY_TYPES[:3])}, ... followed by the key)"
    try:
        blob = base64.b64decode(words[at + 1], validate=True)
        (n,) = struct.unpack(">I", blob[:4])
        inner = blob[4:4 + n].decode()
    except (binascii.Error, struct.error, UnicodeDecodeError, ValueError):
        return "the key's base64 part does not decode"
    if inner != words[at]:
        return f"the key says {words[at]} but its data is a {inner} key"
    return None


def url(v: str) -> str | None:
    if not URL.fullmatch(v):
        return (f"{v!r} is not an http:// or https:// URL made of URL characters (no spaces, quotes, "
                "; $ ` | & < > or backslash)")
    return None


def repo(v: str) -> str | None:
    parts = v.strip("/").split("/")
    if not v.strip("/") or any(not re.fullmatch(r"[A-Za-z0-9._+-]+", p) or p in (".", "..") for p in parts):
        return f"{v!r} is not a repository path such as \"14.x/x86_64/tcz\" (plain folder names, no '..')"
    return None


def deb_name(v: str) -> str | None:
    if not DEB_NAME.fullmatch(v):
        return f"{v!r} is not a Debian package name (lower-case letters, digits and + . -)"
    return None


def module_name(v: str) -> str | None:
    if not MODULE.fullmatch(v):
        return f"{v!r} is not a kernel module name (letters, digits, _ and -)"
    return None


def sha256(v: str) -> str | None:
    if not re.fullmatch(r"[0-9a-f]{64}", v):
        return f"{v!r} is not a sha256 (64 lower-case hex digits)"
    return None


def target(v: str) -> str | None:
    if v != "auto" and not re.fullmatch(r"/dev/[A-Za-z0-9/_-]+", v):
        return f"{v!r}: give auto or a device path such as /dev/vda"
    return None


def label(max_len: int) -> Check:
    def check(v: str) -> str | None:
        if not 1 <= len(v) <= max_len or not LABEL.fullmatch(v):
            return f"{v!r}: a label is 1 to {max_len} characters of letters, digits, _ . and -"
        return None

    return check


def one_line(v: str) -> str | None:
    if _CONTROL.search(v.replace("\t", " ")):
        return "holds a newline or control character; give one line per list item"
    return None


def owner(v: str) -> str | None:
    parts = v.split(":")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        return f"{v!r}: give a numeric uid:gid such as \"1001:50\""
    if any(int(p) > MAX_ID for p in parts):
        return f"{v!r}: ids go from 0 to {MAX_ID}"
    return None


def mode(v: str) -> str | None:
    if not re.fullmatch(r"0?[0-7]{1,4}", v):
        return f"{v!r} is not an octal mode from 0000 to 7777 such as \"0644\""
    return None


def abs_dest(v: str) -> str | None:
    if _CONTROL.search(v):
        return "holds a control character"
    parts = [p for p in v.split("/") if p]
    if not v.startswith("/") or not parts:
        return f"{v!r}: give an absolute path of a file in the image, e.g. \"/etc/motd\" (not \"/\")"
    if any(p in (".", "..") for p in parts):
        return f"{v!r} holds '.' or '..' components"
    return None
