"""Running cores, shared by every filesystem object of the process that asks for the same one.

fsspec makes one filesystem object per thread (its instance cache is keyed by thread), but
one process should have one block cache and one connection pool per archive and token, as
the mount has: so objects asking for the same (instance, token, configuration) share one
core, each on its own trio thread (`CorePortal`), closed when the last object using it is
closed, or at interpreter exit.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from dandifs.core import Core, CoreConfig, open_core
from dandifs.core.portal import CorePortal

T = TypeVar("T")


@dataclass(frozen=True)
class CoreKey:
    """What makes two cores differ: the archive, whose token, and how they cache."""

    instance: str | None
    token: str | None = field(repr=False)
    anonymous: bool
    config: CoreConfig


class RunningCore:
    """A core on its own loop thread, and how many filesystem objects use it."""

    def __init__(self, key: CoreKey) -> None:
        self.portal = CorePortal().start()
        try:
            self.core: Core = self.portal.enter(
                open_core(
                    key.instance,
                    token=key.token,
                    token_source="the token= option",
                    anonymous=key.anonymous,
                    config=key.config,
                )
            )
        except BaseException:
            self.portal.stop()
            raise
        self.users = 0
        self.stopped = False

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """`await fn(core, *args)` on the core's loop, from any thread."""
        return self.portal.call(fn, self.core, *args)

    def stop(self) -> None:
        self.stopped = True
        self.portal.stop()


class SharedCores:
    """Running cores by key; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[CoreKey, RunningCore] = {}
        self._orphans: list[RunningCore] = []

    def acquire(self, key: CoreKey) -> RunningCore:
        """The core for `key`, opened (and its token checked) by the first caller."""
        with self._lock:
            running = self._running.get(key)
            if running is None:
                running = self._running[key] = RunningCore(key)
            running.users += 1
            return running

    def release(self, key: CoreKey) -> None:
        """One user fewer; the last one closes the core."""
        with self._lock:
            running = self._running.get(key)
            if running is None:
                return
            running.users -= 1
            if running.users > 0:
                return
            del self._running[key]
        running.stop()

    def close_all(self) -> None:
        with self._lock:
            running, self._running = list(self._running.values()), {}
        for core in running:
            core.stop()

    def forget(self) -> None:
        """In a forked child: the loop threads were not copied, so nothing can be closed,
        and the copies are kept from the garbage collector too, whose finalizers would
        wait for a loop that is not there."""
        self._orphans.extend(self._running.values())
        self._running = {}
        self._lock = threading.Lock()


CORES = SharedCores()
atexit.register(CORES.close_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=CORES.forget)
