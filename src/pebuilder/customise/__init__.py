"""Customisation of any root tree (a Tiny Core initrd, a Debian base): accounts, SSH, CA
certificates, files, kernel modules. Distribution specifics come in as a `Profile`."""
