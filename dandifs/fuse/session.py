"""One mount's life: mount, answer requests until unmounted or signalled, unmount cleanly.

The mount is "ready" only once the kernel has had an answer from us (a `stat` of the
mountpoint, made from a worker thread while this loop serves it): that is the moment the
background mode lets `mount` return and systemd is told READY=1.  SIGTERM, SIGINT and
SIGHUP end the loop and unmount; `fusermount3 -u` ends it from outside.  What the
operations must tell the kernel on their own (cache invalidations) runs only while the
session does.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
from contextlib import AbstractAsyncContextManager
from typing import Callable, Protocol, runtime_checkable

import pyfuse3
import trio

from dandifs.fuse import kernel

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@runtime_checkable
class TellsTheKernel(Protocol):
    """Operations that send the kernel notifications of their own while the session runs."""

    async def notify_kernel(self) -> None: ...


def fuse_options(*, fsname: str, allow_other: bool) -> set[str]:
    """The libfuse mount options: the kernel checks permissions from our modes; the mount
    shows up in /proc/mounts as `fuse.dandifs` with the instance as its source."""
    options = set(pyfuse3.default_options)  # default_permissions
    options |= {f"fsname={fsname}", "subtype=dandifs", "noatime"}
    if allow_other:
        options.add("allow_other")
    return options


async def serve(
    open_operations: Callable[[], AbstractAsyncContextManager[pyfuse3.Operations]],
    mountpoint: str,
    options: set[str],
    *,
    on_ready: Callable[[], None] = lambda: None,
) -> None:
    """Mount the operations `open_operations()` yields at `mountpoint` and serve until stopped.

    `open_operations` builds the layers beneath (archive client, cache, resolver) inside
    this trio run and closes them after the unmount.
    """
    async with open_operations() as operations:
        pyfuse3.init(operations, mountpoint, options)
        unmounted_by_us = False
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_serve_until_unmounted, nursery.cancel_scope)
                nursery.start_soon(_stop_on_signal)
                if isinstance(operations, TellsTheKernel):
                    nursery.start_soon(operations.notify_kernel)
                await trio.to_thread.run_sync(os.stat, mountpoint)
                applied = await trio.to_thread.run_sync(kernel.tune, mountpoint)
                log.info("mounted at %s (options %s, tuning %s)", mountpoint, sorted(options), applied)
                on_ready()
                notify_systemd("READY=1")
            unmounted_by_us = True
        finally:
            notify_systemd("STOPPING=1")
            pyfuse3.close(unmount=True)
            log.info("unmounted %s%s", mountpoint, "" if unmounted_by_us else " after an error")


async def _serve_until_unmounted(scope: trio.CancelScope) -> None:
    await pyfuse3.main()
    log.info("the kernel closed the FUSE session (unmounted)")
    scope.cancel()


async def _stop_on_signal() -> None:
    with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
        async for signum in signals:
            log.info("received %s, unmounting", signal.Signals(signum).name)
            pyfuse3.terminate()
            return


def notify_systemd(state: str) -> None:
    """Tell systemd (a `Type=notify` unit) how the mount is doing; a no-op elsewhere."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(state.encode(), address)
    except OSError as exc:
        log.warning("cannot notify systemd at %s: %s", address, exc)
