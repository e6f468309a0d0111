"""Connections to the object stores opened before the first read needs them.

Over a long path a new HTTPS connection costs two round trips (TCP, then TLS) before its
first GET can even be sent.  The S3 origins an archive serves bytes from are few and
stable, so a mount opens connections to them as it starts (the instance's public bucket,
and those its earlier mounts met, remembered in `<metadata dir>/object-origins.json`), and
again when the resolver hands out files of an origin with no connection ready: the read
that follows finds one open.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import anyio
import anyio.abc

from dandifs.archive.instances import origin_of
from dandifs.resolve.entry import Entry

log = logging.getLogger(__name__)

ORIGINS_FILE = "object-origins.json"
CONNECTIONS = 2  # an HDF5 open reads its two ends at once
REWARM_SECONDS = 10.0  # an origin is warmed again at most this often
MAX_REMEMBERED = 16  # origins per instance


class Connections(Protocol):
    def ready_connections(self, url: str) -> int: ...

    def warm(self, url: str, count: int, tasks: anyio.abc.TaskGroup) -> int: ...


class ConnectionWarmer:
    """Opens connections to object origins in `background`; `start` for those known up
    front, `saw` for the entries the resolver hands out."""

    def __init__(
        self,
        objects: Connections,
        background: anyio.abc.TaskGroup,
        *,
        instance_url: str,
        known: Iterable[str] = (),
        state_dir: Path | None = None,
    ) -> None:
        self._objects = objects
        self._background = background
        self._instance = instance_url
        self._state = state_dir / ORIGINS_FILE if state_dir is not None else None
        self._remembered = [*dict.fromkeys([*known, *self._load()])]
        self._saved = set(self._load())
        self._warmed: dict[str, float] = {}

    def start(self) -> None:
        for origin in self._remembered:
            self._warm(origin)

    def saw(self, entries: Iterable[Entry]) -> None:
        """Warm the origins of `entries`' bytes that have no connection ready."""
        origins: set[str] = set()
        last = ""
        for entry in entries:
            url = entry.content_url
            if url is None or (last and url.startswith(last)):
                continue  # a folder's files mostly share one origin: parse each URL once
            if url.startswith(("http://", "https://")):
                origin = origin_of(url)
                origins.add(origin)
                last = f"{origin}/"
        for origin in origins:
            if origin not in self._saved:
                self._remember(origin)
            if self._objects.ready_connections(f"{origin}/") == 0:
                self._warm(origin)

    def _warm(self, origin: str) -> None:
        now = time.monotonic()
        if now - self._warmed.get(origin, -REWARM_SECONDS) < REWARM_SECONDS:
            return
        self._warmed[origin] = now
        # Registered at once, so that an open right after this lookup finds them coming.
        started = self._objects.warm(f"{origin}/", CONNECTIONS, self._background)
        log.debug("opening %d connection(s) to %s ahead of reads", started, origin)

    def _load(self) -> list[str]:
        if self._state is None:
            return []
        try:
            table = json.loads(self._state.read_text())
            origins = table.get(self._instance, [])
            return [origin for origin in origins if isinstance(origin, str)]
        except (OSError, ValueError, AttributeError):
            return []

    def _remember(self, origin: str) -> None:
        self._saved.add(origin)
        if self._state is None:
            return
        try:
            table = json.loads(self._state.read_text()) if self._state.exists() else {}
            if not isinstance(table, dict):
                table = {}
        except (OSError, ValueError):
            table = {}
        origins = [o for o in table.get(self._instance, []) if o != origin][-MAX_REMEMBERED + 1:]
        table[self._instance] = [*origins, origin]
        try:
            self._state.parent.mkdir(parents=True, exist_ok=True)
            temporary = self._state.with_suffix(".tmp")
            temporary.write_text(json.dumps(table, indent=1))
            temporary.replace(self._state)
        except OSError as exc:
            log.debug("could not remember object origin %s: %s", origin, exc)
