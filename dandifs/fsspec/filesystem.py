"""The archive as an fsspec filesystem, over the same core as the mount and the server.

Paths are the mount's, without the leading slash: `dandisets/<id>/<version>/<path>`
(`dandifs://dandisets/...` with the protocol).  Every method is one call into the core on
its trio thread; bytes come from the core's readers, so HDF5 files get the opener's
prefetch and every read the block cache, which is why fsspec's own file cache is off by
default.  Nothing is written: the write methods refuse with `PermissionError` (EROFS).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from fsspec.spec import AbstractBufferedFile, AbstractFileSystem
from fsspec.utils import stringify_path

from dandifs import errors
from dandifs.concurrency import gather
from dandifs.core import CacheConfig, Core, CoreConfig, Entry, EntryKind, FileReader
from dandifs.fsspec.cores import CORES, CoreKey, RunningCore
from dandifs.fsspec.errors import mapped_errors, python_error

T = TypeVar("T")

PROTOCOL = "dandifs"
MiB = 1 << 20
GiB = 1 << 30


class DandiFileSystem(AbstractFileSystem):
    """The DANDI Archive (or another DANDI instance), read-only.

    `instance`: a dandi-cli instance name (`dandi`, `dandi-sandbox`, ...) or an API URL;
    None is the DANDI Archive.  `token`: an API token; None finds one the way dandi-cli
    does (`DANDI_API_KEY`, then the keyring), `anonymous=True` uses none.  `cache_dir`:
    keep published blocks (up to `cache_size` bytes) and published metadata on disk there,
    across processes, as the mount does; None keeps everything in memory (`memory_size`).
    """

    protocol = (PROTOCOL,)
    root_marker = ""
    cachable = True

    def __init__(
        self,
        instance: str | None = None,
        token: str | None = None,
        *,
        anonymous: bool = False,
        cache_dir: str | os.PathLike[str] | None = None,
        cache_size: int = 10 * GiB,
        memory_size: int = 256 * MiB,
        **storage_options: Any,
    ) -> None:
        super().__init__(**storage_options)
        self._key = CoreKey(
            instance, token, anonymous, core_config(cache_dir, cache_size, memory_size)
        )
        self._closed = False
        self._running = self._acquire()

    # -- the core ------------------------------------------------------------------------

    def _acquire(self) -> RunningCore:
        self._pid = os.getpid()
        with mapped_errors():
            return CORES.acquire(self._key)

    def _core(self) -> RunningCore:
        if self._closed:
            raise ValueError("this filesystem is closed")
        if self._pid != os.getpid():  # forked: the core's thread stayed in the parent
            self._running = self._acquire()
        return self._running

    def _call(self, name: str, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """`await fn(core, *args)` on the core's loop, its errors as Python's for `name`."""
        running = self._core()
        with mapped_errors(name):
            return running.call(fn, *args)

    def close(self) -> None:
        """Stop using the core (the last filesystem object using it closes it)."""
        if not self._closed:
            self._closed = True
            CORES.release(self._key)
        type(self)._cache.pop(self._fs_token, None)

    @property
    def api_url(self) -> str:
        return self._core().core.instance.api_url

    def statistics(self) -> dict[str, dict[str, int]]:
        """What the core asked of the archive and how its caches served it."""
        return self._call("", statistics)

    # -- names ---------------------------------------------------------------------------

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(item) for item in path]
        path = stringify_path(path)
        if path.startswith(f"{PROTOCOL}://"):
            path = path[len(PROTOCOL) + 3 :]
        return path.strip("/")

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        """A folder's entries (`latest` as a folder); a file's own entry for a file."""
        name = self._strip_protocol(path)
        found = self._call(name, listing, core_path(name))
        if isinstance(found, Entry):
            infos = [entry_info(name, found)]
        else:
            infos = [entry_info(join(name, child.name), child) for child in found]
        return infos if detail else [info["name"] for info in infos]

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        name = self._strip_protocol(path)
        return entry_info(name, self._call(name, stat, core_path(name)))

    def modified(self, path: str) -> datetime | None:
        """The archive's `modified` time (None where it gives none: the root)."""
        name = self._strip_protocol(path)
        return self._call(name, stat, core_path(name)).mtime

    def created(self, path: str) -> datetime | None:
        name = self._strip_protocol(path)
        return self._call(name, stat, core_path(name)).ctime

    def ukey(self, path: str) -> str:
        """The archive's digest (dandi-etag, Zarr checksum, S3 ETag): changes with the bytes."""
        name = self._strip_protocol(path)
        entry = self._call(name, stat, core_path(name))
        return entry.etag or super().ukey(name)

    def metadata(self, path: str) -> dict[str, Any]:
        """The archive's metadata record for `path`: its asset's, else its version's."""
        name = self._strip_protocol(path)
        return self._call(name, Core.metadata, core_path(name))

    # -- bytes ---------------------------------------------------------------------------

    def cat_file(
        self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any
    ) -> bytes:
        name = self._strip_protocol(path)
        return self._call(name, read_files, [(name, [(start, end)])], "raise")[0][0]

    def cat_ranges(
        self,
        paths: list[str],
        starts: int | None | list[int | None],
        ends: int | None | list[int | None],
        max_gap: int | None = None,
        on_error: str = "return",
        **kwargs: Any,
    ) -> list[bytes | Exception]:
        """Every range in one call, concurrently, each file opened once.  The block cache
        merges neighbouring blocks into one GET, so `max_gap` has nothing to add."""
        count = len(paths)
        starts = starts if isinstance(starts, list) else [starts] * count
        ends = ends if isinstance(ends, list) else [ends] * count
        if len(starts) != count or len(ends) != count:
            raise ValueError("cat_ranges needs as many starts and ends as paths")
        by_file: dict[str, list[int]] = {}
        for index, path in enumerate(paths):
            by_file.setdefault(self._strip_protocol(path), []).append(index)
        files = [(name, [(starts[i], ends[i]) for i in indexes]) for name, indexes in by_file.items()]
        found = self._call("", read_files, files, on_error)
        results: list[bytes | Exception] = [b""] * count
        for indexes, datas in zip(by_file.values(), found):
            for index, data in zip(indexes, datas):
                results[index] = data
        return results

    def _open(
        self,
        path: str,
        mode: str = "rb",
        block_size: int | None = None,
        autocommit: bool = True,
        cache_options: dict[str, Any] | None = None,
        cache_type: str = "none",
        **kwargs: Any,
    ) -> DandiFile:
        name = self._strip_protocol(path)
        if mode != "rb":
            raise python_error(errors.ReadOnly(f"{name}: {READ_ONLY}"), name)
        kwargs.pop("size", None)  # a reopened pickle passes the size it had; ours is fresher
        running = self._core()
        entry, reader = self._call(name, open_file, core_path(name))
        return DandiFile(
            self, name, entry, running, reader,
            block_size=block_size, cache_type=cache_type, cache_options=cache_options, **kwargs,
        )

    # -- writes --------------------------------------------------------------------------

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise python_error(errors.ReadOnly(READ_ONLY))

    mkdir = makedirs = rmdir = rm_file = _rm = rm = cp_file = mv = _refuse
    touch = pipe_file = put_file = _refuse


READ_ONLY = "the archive is read-only through fsspec (use dandi upload to change a draft)"


class DandiFile(AbstractBufferedFile):
    """An open archive file: seek, tell, read, readinto over one core reader (one handle,
    so the block cache's read-ahead follows this file alone)."""

    def __init__(
        self,
        fs: DandiFileSystem,
        path: str,
        entry: Entry,
        running: RunningCore,
        reader: FileReader,
        *,
        block_size: int | None = None,
        cache_type: str = "none",
        cache_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._running = running
        self._reader = reader
        super().__init__(
            fs, path, mode="rb", block_size=block_size, cache_type=cache_type,
            cache_options=cache_options, size=entry.size, **kwargs,
        )
        self.details = entry_info(path, entry)

    def _fetch_range(self, start: int, end: int) -> bytes:
        with mapped_errors(self.path):
            return self._running.portal.call(self._reader.read, start, max(0, end - start))

    def close(self) -> None:
        if not self.closed and not self._running.stopped:
            with mapped_errors(self.path):
                self._running.portal.call(self._reader.aclose)
        super().close()


# -- on the core's loop -------------------------------------------------------------------


async def stat(core: Core, path: str) -> Entry:
    return await core.stat(path, follow=True)


async def listing(core: Core, path: str) -> Entry | list[Entry]:
    """A folder's children, or the entry itself for a file (fsspec's `ls` of a file)."""
    try:
        return await core.listdir(path, follow=True)
    except errors.NotADirectory:
        return await core.stat(path, follow=True)


async def file_entry(core: Core, path: str) -> Entry:
    entry = await core.stat(path, follow=True)
    if entry.kind is not EntryKind.FILE:
        raise errors.IsADirectory(f"{path} is a folder")
    return entry


async def open_file(core: Core, path: str) -> tuple[Entry, FileReader]:
    entry = await file_entry(core, path)
    return entry, await core.open(entry)


async def read_files(
    core: Core, files: list[tuple[str, list[tuple[int | None, int | None]]]], on_error: str
) -> list[list[bytes | Exception]]:
    """Ranges of files (fsspec's `start`/`end`: None for the file's ends, negative from its
    end), all read concurrently, one reader per file.  With `on_error` "return" a failure
    takes the place of the bytes it stopped; otherwise the first one is raised."""

    async def ranges_of(name: str, ranges: list[tuple[int | None, int | None]]) -> list[Any]:
        try:
            entry, reader = await open_file(core, core_path(name))
        except errors.DandiFSError as exc:
            return [failed(exc, name, on_error)] * len(ranges)
        try:
            return await gather(*[lambda r=r: read(entry, reader, name, *r) for r in ranges])
        finally:
            await reader.aclose()

    async def read(
        entry: Entry, reader: FileReader, name: str, start: int | None, end: int | None
    ) -> bytes | Exception:
        begin, stop = byte_range(entry.size, start, end)
        try:
            return await reader.read(begin, stop - begin) if stop > begin else b""
        except errors.DandiFSError as exc:
            return failed(exc, name, on_error)

    return await gather(*[lambda f=f: ranges_of(*f) for f in files])


def failed(error: errors.DandiFSError, name: str, on_error: str) -> OSError:
    """The Python exception for a failed read, raised unless `on_error` is "return"."""
    mapped = python_error(error, name)
    if on_error != "return":
        raise mapped from error
    return mapped


async def statistics(core: Core) -> dict[str, dict[str, int]]:
    return core.statistics()


# -- values --------------------------------------------------------------------------------


def core_config(cache_dir: str | os.PathLike[str] | None, cache_size: int, memory_size: int) -> CoreConfig:
    if cache_dir is None:
        return CoreConfig(cache=CacheConfig(memory_bytes=memory_size))
    return CoreConfig.in_directory(
        Path(cache_dir).expanduser(), disk_bytes=cache_size, memory_bytes=memory_size
    )


def core_path(name: str) -> str:
    return "/" + name


def join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def byte_range(size: int, start: int | None, end: int | None) -> tuple[int, int]:
    """fsspec's range convention made absolute and clipped to the file."""
    begin = 0 if start is None else start + size if start < 0 else start
    stop = size if end is None else end + size if end < 0 else end
    return max(0, min(begin, size)), max(0, min(stop, size))


def entry_info(name: str, entry: Entry) -> dict[str, Any]:
    """fsspec's info dict: `name`, `size`, `type` ("file" / "directory"), `mtime` and
    `created` as POSIX seconds (like the local filesystem's), and the archive's identities."""
    is_file = entry.kind is EntryKind.FILE
    info: dict[str, Any] = {
        "name": name,
        "size": entry.size if is_file else 0,
        "type": "file" if is_file else "directory",
    }
    extras = {
        "mtime": entry.mtime.timestamp() if entry.mtime else None,
        "created": entry.ctime.timestamp() if entry.ctime else None,
        "etag": entry.etag,
        "asset_id": entry.asset_id,
        "zarr_id": entry.zarr_id,
        "dandiset_id": entry.dandiset_id,
        "version": entry.version,
        "content_type": entry.content_type,
    }
    info.update({key: value for key, value in extras.items() if value is not None})
    info["immutable"] = entry.immutable
    if entry.embargoed:
        info["embargoed"] = True
    return info
