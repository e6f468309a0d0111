"""dandifs: the DANDI Archive as a filesystem (FUSE mount, WebDAV server, fsspec filesystem)."""

__version__ = "0.1.0"
