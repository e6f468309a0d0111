"""dandifs: the DANDI Archive as a filesystem (FUSE mount and WebDAV server)."""

__version__ = "0.1.0"
