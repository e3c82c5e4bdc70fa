"""A CA bundle in the image, so HTTPS clients there trust what the builder trusts (or a given PEM)."""

from __future__ import annotations

import os
from pathlib import Path

from pebuilder.customise.profile import Profile
from pebuilder.errors import ConfigError
from pebuilder.fsroot import FsRoot

HOST_CA = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")


def bundle_path(source: str) -> Path:
    if source == "host":
        found = next((p for p in HOST_CA if os.path.isfile(p)), None)
        if not found:
            raise ConfigError("certificates.bundle = \"host\": no CA bundle on this machine "
                              f"({', '.join(HOST_CA)}); install ca-certificates or give a PEM file")
        return Path(found)
    return Path(source)


def apply(fs: FsRoot, profile: Profile, source: str) -> str:
    path = bundle_path(source)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"certificates.bundle: cannot read {path}: {exc.strerror}") from None
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise ConfigError(f"certificates.bundle: {path} holds no PEM certificate")
    for rel in profile.ca_paths:
        fs.write(rel, data, 0o644)
    for link, target in profile.ca_links:
        fs.symlink(link, target)
    return f"CA bundle ({data.count(b'BEGIN CERTIFICATE')} certificates)"
