"""fuse layer."""
