"""pebuilder: rootless builder of small bootable Linux images."""

__version__ = "0.1.0"
