"""Mount options: one parser for `dandifs mount`, `mount.dandifs` and fstab lines.

`-o` strings follow mount(8): comma-separated `key` or `key=value`.  Options that belong to
mount(8), fstab or systemd (`_netdev`, `noauto`, `nofail`, `x-systemd.*`, ...) are accepted
and ignored, so one fstab line works with every tool that reads it; an option nobody knows
is an error that names it.  Defaults come from `DANDIFS_*` environment variables, so that
systemd units and fstab lines stay short.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

from dandifs.core import CoreConfig, default_cache_dir

INDEX_PREFETCH_BLOCKS = CoreConfig().index_prefetch
ZARR_READAHEAD_FILES = CoreConfig().zarr_readahead

DEFAULT_INSTANCE = "dandi"
DEFAULT_CACHE_SIZE = 10 * 1024**3
DEFAULT_MEMORY_SIZE = 256 * 1024**2
#: How long an unmount waits for running uploads before it leaves them to the next start.
DEFAULT_UPLOAD_WAIT = 60.0

#: Options that mean something to mount(8), fstab, systemd or the kernel's generic mount
#: code, not to dandifs.  (`ro` is dandifs's too: drafts stay read-only even with a token.)
IGNORED_OPTIONS = frozenset(
    {
        "defaults", "auto", "noauto", "user", "nouser", "users", "owner", "group",
        "_netdev", "nofail", "exec", "noexec", "suid", "nosuid", "dev", "nodev", "atime",
        "noatime", "relatime", "norelatime", "strictatime", "diratime", "nodiratime",
        "async", "sync", "loud", "silent", "comment", "bg", "fg",
    }
)
IGNORED_PREFIXES = ("x-", "comment=", "_")


class OptionError(ValueError):
    """A mount option that cannot be used; the message says which and why."""


@dataclass(frozen=True)
class MountOptions:
    """Everything a mount needs to know, whichever command line it came from."""

    mountpoint: Path
    instance: str = DEFAULT_INSTANCE
    foreground: bool = False
    allow_other: bool = False
    uid: int | None = None
    gid: int | None = None
    cache_dir: Path = field(default_factory=lambda: default_cache_dir())
    cache_size: int = DEFAULT_CACHE_SIZE
    memory_size: int = DEFAULT_MEMORY_SIZE
    index_prefetch: int = INDEX_PREFETCH_BLOCKS
    zarr_readahead: int = ZARR_READAHEAD_FILES
    token_file: Path | None = None
    log_file: Path | None = None
    debug: bool = False
    fsname: str | None = None
    upload_wait: float = DEFAULT_UPLOAD_WAIT
    read_only: bool = False

    def token(self, environ: Mapping[str, str] = os.environ) -> str | None:
        """The API token: from `token_file` when given, else left to the archive client's lookup."""
        if self.token_file is None:
            return None
        try:
            text = self.token_file.read_text().strip()
        except OSError as exc:
            raise OptionError(f"token_file {self.token_file}: {exc.strerror}") from None
        if not text:
            raise OptionError(f"token_file {self.token_file} is empty")
        return text



_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4, "p": 1024**5}


def parse_size(text: str, *, what: str = "size") -> int:
    """Bytes from `123`, `512M`, `10G`, `1.5GiB` (binary units, as `du -h` means them)."""
    match = _SIZE.match(text)
    if not match:
        raise OptionError(f"{what}={text!r}: expected a number of bytes such as 512M or 10G")
    number, unit = float(match.group(1)), match.group(2).lower()
    return int(number * _UNITS[unit])


def _parse_id(text: str, what: str) -> int:
    if not text.isdigit():
        raise OptionError(f"{what}={text!r}: expected a numeric id")
    return int(text)


def _parse_count(text: str, what: str) -> int:
    if not text.isdigit():
        raise OptionError(f"{what}={text!r}: expected a whole number (0 or more)")
    return int(text)


def _parse_seconds(text: str, what: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise OptionError(f"{what}={text!r}: expected a number of seconds (0 or more)")
    return seconds


def _flag(value: str | None, key: str) -> bool:
    if value is None:
        return True
    raise OptionError(f"option {key} takes no value (got {key}={value})")


def _value(value: str | None, key: str) -> str:
    if not value:
        raise OptionError(f"option {key} needs a value: {key}=...")
    return value


def split_options(text: str) -> list[tuple[str, str | None]]:
    """`a,b=c,,d` -> [("a", None), ("b", "c"), ("d", None)]."""
    pairs = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        pairs.append((key.strip(), value if sep else None))
    return pairs


def apply_options(options: MountOptions, text: str, *, sloppy: bool = False) -> MountOptions:
    """Apply a `-o` string to `options`; later options win over earlier ones.

    `sloppy` (mount(8)'s `-s`) skips unknown options instead of refusing them.
    """
    changes: dict[str, object] = {}
    for key, value in split_options(text):
        name = key.replace("-", "_")
        if name == "allow_other":
            changes["allow_other"] = _flag(value, key)
        elif name in {"foreground", "debug"}:
            changes[name] = _flag(value, key)
        elif name == "ro":
            changes["read_only"] = _flag(value, key)
        elif name == "rw":
            changes["read_only"] = not _flag(value, key)
        elif name == "uid":
            changes["uid"] = _parse_id(_value(value, key), key)
        elif name == "gid":
            changes["gid"] = _parse_id(_value(value, key), key)
        elif name == "cache_dir":
            changes["cache_dir"] = Path(_value(value, key)).expanduser()
        elif name == "cache_size":
            changes["cache_size"] = parse_size(_value(value, key), what=key)
        elif name == "memory_size":
            changes["memory_size"] = parse_size(_value(value, key), what=key)
        elif name == "index_prefetch":
            changes["index_prefetch"] = _parse_count(_value(value, key), key)
        elif name == "zarr_readahead":
            changes["zarr_readahead"] = _parse_count(_value(value, key), key)
        elif name == "instance":
            changes["instance"] = _value(value, key)
        elif name == "token_file":
            changes["token_file"] = Path(_value(value, key)).expanduser()
        elif name == "log_file":
            changes["log_file"] = Path(_value(value, key)).expanduser()
        elif name == "fsname":
            changes["fsname"] = _value(value, key)
        elif name == "upload_wait":
            changes["upload_wait"] = _parse_seconds(_value(value, key), key)
        elif key in IGNORED_OPTIONS or key.startswith(IGNORED_PREFIXES) or sloppy:
            continue
        else:
            raise OptionError(
                f"unknown mount option {key!r} (known: allow_other, uid, gid, cache_dir, "
                "cache_size, memory_size, index_prefetch, zarr_readahead, instance, token_file, log_file, "
                "fsname, upload_wait, debug)"
            )
    return replace(options, **changes)  # type: ignore[arg-type]


def from_environment(mountpoint: Path, environ: Mapping[str, str] = os.environ) -> MountOptions:
    """Defaults for a mount at `mountpoint`, taken from `DANDIFS_*` variables where set."""
    options = MountOptions(mountpoint=mountpoint)
    env_options = {
        "instance": environ.get("DANDIFS_INSTANCE"),
        "cache_dir": environ.get("DANDIFS_CACHE_DIR"),
        "cache_size": environ.get("DANDIFS_CACHE_SIZE"),
        "memory_size": environ.get("DANDIFS_MEMORY_SIZE"),
        "token_file": environ.get("DANDIFS_TOKEN_FILE"),
        "log_file": environ.get("DANDIFS_LOG_FILE"),
    }
    text = ",".join(f"{key}={value}" for key, value in env_options.items() if value)
    return apply_options(options, text) if text else options
