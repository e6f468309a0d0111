"""webdav layer."""
