"""Expected failures and the exit codes they map to.

The numbers below 25 are Tiny Core's remaster.sh codes, kept so scripts written against
remaster.sh keep working; pebuilder's own failures use 30 and up.
"""

from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    USAGE = 1
    CONFIG_UNREADABLE = 2
    BAD_FUNCTION = 3
    NO_TEMPLATE = 5  # no ISO, or no kernel/initrd inside it
    TEMP_DIR = 7
    NO_ISOLINUX_CFG = 9
    CPIO = 22
    MKISOFS = 24
    CONFIG_INVALID = 30
    EXTENSION_MISSING = 31
    TOOL_MISSING = 32
    TOOL_FAILED = 33
    UNSAFE_ARCHIVE = 34
    NOT_TINYCORE = 35
    BOOT_FAILED = 36
    DISK = 37
    DOWNLOAD = 38
    KERNEL = 39
    LOCKED = 40  # another build holds the work folder
    UNRESOLVABLE = 41  # Debian dependencies that cannot be satisfied
    SUITE = 42  # a Debian suite that cannot be built from the mirror (unreleased, expired, unknown)


class PebuilderError(Exception):
    """An expected failure: printed as one clear message, never as a traceback."""

    code: Exit = Exit.USAGE

    def __init__(self, message: str, code: Exit | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code


class ConfigError(PebuilderError):
    code = Exit.CONFIG_INVALID


class UnsafeArchiveError(PebuilderError):
    code = Exit.UNSAFE_ARCHIVE


class ToolMissingError(PebuilderError):
    code = Exit.TOOL_MISSING


class ToolFailedError(PebuilderError):
    code = Exit.TOOL_FAILED
