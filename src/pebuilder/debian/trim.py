"""What a small live system leaves out of Debian packages: documentation and translations.

The same list as the `path-exclude` options Debian suggests for minimal systems (and that the
recipes pass to mmdebstrap), as a predicate on a member's relative path (no leading '/' or './').
It drops man and info pages, docs, lintian overrides, message catalogs and locale sources,
locale data other than C.UTF-8 (which glibc needs for the C.UTF-8 locale the system uses), and the
iconv modules of rarely used charsets.

`usr/share/doc/<package>/copyright` is kept by `TRIM`: an image that is handed to others is a
binary distribution, and many licenses (BSD, MIT, the GPL's notices) ask that their text travel
with the binaries; all of them together are a few hundred KB compressed. `TRIM_ALL` drops them too,
for images that stay in-house.
"""

from __future__ import annotations

DROPPED = (
    "usr/share/man/", "usr/share/info/", "usr/share/lintian/", "usr/share/linda/", "usr/share/doc-base/",
    "usr/share/gtk-doc/", "usr/share/help/", "usr/share/i18n/", "usr/share/bug/", "usr/share/reportbug/",
)
DOC = "usr/share/doc/"
LOCALE = "usr/share/locale/"
LOCALE_KEEP = frozenset({"usr/share/locale/locale.alias"})
LOCALE_DATA = "usr/lib/locale/"
C_LOCALES = frozenset({"C.utf8", "C.UTF-8"})
# glibc's iconv modules (8 MB, 2 MB of a squashfs): a live system keeps the Unicode ones and the
# Western code pages; UTF-8, ASCII and ISO-8859-1 are built into libc. iconv to any other charset
# then fails cleanly (EINVAL); `[base] trim = false` keeps them all.
# (Extensions built with these rules are cached: a change here bumps debian/extensions.py's FORMAT.)
GCONV_KEEP = frozenset({"UTF-16.so", "UTF-32.so", "UTF-7.so", "UNICODE.so", "ISO8859-15.so", "CP1252.so"})


def trim(relpath: str, keep_copyright: bool = True) -> bool:
    """True when `relpath` is documentation or translation a minimal system does without.

    Folders named by the prefixes themselves (usr/share/man, …) stay, empty, so that packages and
    scripts that expect them still find them; everything beneath goes.
    """
    p = relpath.lstrip("/")
    if p.startswith("./"):
        p = p[2:]
    if p.startswith(DOC):
        rest = p[len(DOC):].split("/")
        if len(rest) == 1:
            return False  # the package's own doc folder (or its symlink to another package's)
        return not (keep_copyright and len(rest) == 2 and rest[1] == "copyright")
    if p.startswith(LOCALE):
        return p not in LOCALE_KEEP
    if p.startswith(LOCALE_DATA):
        return p[len(LOCALE_DATA):].split("/", 1)[0] not in C_LOCALES
    parts = p.split("/")
    if len(parts) == 5 and parts[:2] == ["usr", "lib"] and parts[3] == "gconv":  # usr/lib/<triplet>/gconv/X
        return parts[4].endswith(".so") and parts[4] not in GCONV_KEEP
    return p.startswith(DROPPED)


def TRIM(relpath: str) -> bool:
    """Drop docs, man/info pages, translations and non-C locales; keep copyright files."""
    return trim(relpath, keep_copyright=True)


def TRIM_ALL(relpath: str) -> bool:
    """As TRIM, and drop copyright files too (images that are not redistributed)."""
    return trim(relpath, keep_copyright=False)
