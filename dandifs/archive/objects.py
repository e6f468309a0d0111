"""Object bytes: ranged reads from S3 (or through the archive's download redirect) and the
thin S3 side of uploads.

Every read is pinned to an ETag: an answer carrying a different ETag raises `errors.Stale`
rather than returning bytes of another object version.  A short body is retried like any
other transient failure, and so is a GET that receives nothing for a while (a stall, see
`ObjectStore.stall_timeout`); over the lean client the bytes such a GET did receive are
kept and the retry asks only for the rest, on another connection.  A redirect met by a
read (the archive's download URL, under whatever name the archive calls itself) is
followed and its target cached like a located one, so later reads of that URL go straight
to S3.  Bytes are taken raw (no content
decoding), because ranges count stored bytes.
"""

from __future__ import annotations

import logging
import os
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar
from urllib.parse import parse_qsl, urljoin, urlsplit
from urllib.request import getproxies, proxy_bypass

import anyio
import anyio.abc
import httpx

from dandifs.archive import rawhttp
from dandifs.archive.instances import origin_of
from dandifs.archive.presigned import PresignedTargets, redact
from dandifs.archive.rawhttp import RangeClient
from dandifs.archive.retry import TransientFailure, parse_retry_after
from dandifs.archive.session import (
    MAX_REDIRECTS,
    Body,
    HttpSession,
    describe,
    is_retryable_status,
)
from dandifs.concurrency import SingleFlight
from dandifs.errors import ArchiveRejected, DandiFSError, Stale, Unavailable
from dandifs.model import ObjectInfo

log = logging.getLogger(__name__)

T = TypeVar("T")
Answer = httpx.Response | rawhttp.Answer
"""The head of an answer to a GET, from either HTTP client."""

UPLOAD_CHUNK = 1 << 20
RATE_SAMPLE_BYTES = 128 << 10  # shorter bodies arrive too fast to time
RATE_WEIGHT = 0.3  # of the newest sample in the running per-connection rate and head wait
# How long a ranged GET may receive nothing before it is given up as stalled (see
# `ObjectStore.stall_timeout`).
STALL_FLOOR = 1.0  # seconds: the least, so a busy machine's pauses are not taken for stalls
STALL_ROUND_TRIPS = 4  # head waits measured lately (a round trip plus the server's time)
STALL_RATE_FACTOR = 4  # times the time the next few segments take at the measured rate
STALL_QUANTUM = 64 << 10  # bytes: what one receive waits for at least (a few TCP segments)

_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)")


@dataclass(frozen=True)
class ContentRange:
    """`Content-Range: bytes first-last/total` (first/last None for `*`, total None if unknown)."""

    first: int | None
    last: int | None
    total: int | None


def parse_content_range(value: str | None) -> ContentRange | None:
    match = _CONTENT_RANGE.fullmatch((value or "").strip())
    if match is None:
        return None
    first, last, total = match.groups()
    return ContentRange(
        int(first) if first is not None else None,
        int(last) if last is not None else None,
        int(total) if total not in (None, "*") else None,
    )


def normalize_etag(value: str | None) -> str:
    """An ETag without the weak prefix and quotes, so `"abc-1"` equals the dandi-etag `abc-1`."""
    text = (value or "").strip()
    if text.startswith("W/"):
        text = text[2:]
    return text.strip('"')


def parse_http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None


def range_header(start: int, end: int) -> dict[str, str]:
    return {"Range": f"bytes={start}-{end - 1}"}


class ObjectStore:
    """Reads and writes object bytes through an `HttpSession` sized for parallel ranges.

    URLs on the API origin (the archive's `/assets/<id>/download/`) are first resolved to
    their redirect target with the token; the target is cached until near its expiry and
    fetched without the token.  Any other URL is fetched as is, never with the token.

    With `ranges`, `read_range` and `read_pieces` fetch token-free, proxy-free targets
    (http or https) over that lean client instead of httpx (the bulk of a mount's bytes);
    everything else goes through `session`.
    """

    def __init__(
        self,
        session: HttpSession,
        *,
        targets: PresignedTargets | None = None,
        ranges: RangeClient | None = None,
    ) -> None:
        self.session = session
        self.targets = targets if targets is not None else PresignedTargets()
        self.ranges = ranges
        self._direct_origins: dict[str, bool] = {}
        self._locating: SingleFlight[str, str] = SingleFlight()
        self._stream_rate: float | None = None
        self._head_seconds: float | None = None

    @property
    def stream_rate(self) -> float | None:
        """Bytes per second one connection delivered lately (a running average over the
        bodies received, by either client), or None before the first.  It tells a reader
        whether a large range comes sooner as several parallel GETs."""
        return self._stream_rate

    def _observe(self, received: int, seconds: float) -> None:
        if received < RATE_SAMPLE_BYTES or seconds <= 0:
            return
        self._stream_rate = _running(self._stream_rate, received / seconds)

    @property
    def stall_timeout(self) -> float:
        """How long a ranged GET over the lean client may receive nothing, head or body,
        before it is given up as stalled and its missing bytes asked for on another
        connection.

        A healthy answer's head comes within a round trip plus the server's time to first
        byte (the head wait measured lately), and then its body never pauses for much longer
        than a round trip or the time a few segments take at the rate measured lately: a few
        of each, but never less than `STALL_FLOOR`.  The bound is on silence, not on the
        whole body: the kernel reports each receive's progress, so a large body at a healthy
        rate never meets it, and a stall in it costs no more than one in a small one.
        """
        wait = STALL_ROUND_TRIPS * (self._head_seconds or 0.0)
        if self._stream_rate:
            wait += STALL_RATE_FACTOR * STALL_QUANTUM / self._stream_rate
        return max(STALL_FLOOR, wait)

    # -- connections --------------------------------------------------------------------

    def _lean_target(self, url: str) -> str | None:
        """Where reads of `url` go over the lean client, if they do and it is known."""
        target = self.targets.get(url) or (None if self._via_api(url) else url)
        return target if target is not None and self._direct(target) else None

    def warm_bytes(self, url: str) -> int | None:
        """Bytes the next GET of `url` receives in its first round trip (the best idle
        connection's congestion window, or a new one's); None if unknown."""
        target = self._lean_target(url)
        return None if target is None or self.ranges is None else self.ranges.warm_bytes(target)

    def round_trip(self, url: str) -> float:
        """Seconds of one round trip to where `url`'s bytes come from (0: not known)."""
        target = self._lean_target(url)
        return 0.0 if target is None or self.ranges is None else self.ranges.round_trip(target)

    async def measured_round_trip(self, url: str) -> float:
        """`round_trip`, once a connection being opened ahead of reads has measured it."""
        target = self._lean_target(url)
        if target is None or self.ranges is None:
            return 0.0
        return await self.ranges.measured_round_trip(target)

    def ready_connections(self, url: str) -> int:
        """Connections a GET of `url` could take without setting one up."""
        target = self._lean_target(url)
        return 0 if target is None or self.ranges is None else self.ranges.ready_connections(target)

    def warm(self, url: str, count: int, tasks: anyio.abc.TaskGroup) -> int:
        """Open connections to where `url`'s bytes come from ahead of the GETs, in `tasks`
        (see `RangeClient.warm`); how many it started."""
        target = self._lean_target(url)
        if target is None or self.ranges is None:
            return 0
        return self.ranges.warm(target, count, tasks)

    # -- locating ---------------------------------------------------------------------

    def _via_api(self, url: str) -> bool:
        return origin_of(url) == self.session.tokens.api_origin

    async def locate(self, url: str, *, fresh: bool = False) -> str:
        """Where the bytes of `url` are fetched from: itself, or its redirect (cached; for
        a URL off the API origin, once a read met it).

        Concurrent first reads of one URL (the parallel GETs of a large read) wait for one
        answer of the API rather than each asking it.
        """
        if not fresh and (cached := self.targets.get(url)) is not None:
            return cached
        if not self._via_api(url):
            return url
        return await self._locating.run(url, lambda: self._ask_redirect(url))

    async def _ask_redirect(self, url: str) -> str:
        response = await self.session.request("GET", url, follow_redirects=False)
        if response.is_redirect:
            target = urljoin(str(response.request.url), response.headers["location"])
            self.targets.put(url, target)
            return target
        self.session.raise_for_status(response, what=f"GET {url}")
        return url

    async def _with_fresh_target(self, url: str, operation: Callable[[str], Awaitable[T]]) -> T:
        """Run `operation(target)`, following (and caching) the redirects it meets; if a
        cached or redirected target was refused, ask for a new one once."""
        target, refreshed = await self.locate(url), False
        for _hop in range(MAX_REDIRECTS + 1):
            try:
                return await operation(target)
            except _Redirected as redirect:
                target = urljoin(target, redirect.location)
                self.targets.put(url, target)
            except _TargetRefused as refused:
                if refreshed or target == url:
                    raise refused.error from None
                self.targets.forget(url)
                target, refreshed = await self.locate(url, fresh=True), True
        raise ArchiveRejected(f"GET {redact(url)}: more than {MAX_REDIRECTS} redirects", status=310)

    # -- reading ----------------------------------------------------------------------

    async def stat(self, url: str) -> ObjectInfo:
        """Size, ETag and Last-Modified of an object, from a one-byte ranged GET.

        A GET rather than a HEAD, because presigned URLs are signed for GET only.
        """

        async def attempt(target: str) -> ObjectInfo:
            async with self.session.open(
                "GET", target, headers=range_header(0, 1), follow_redirects=False
            ) as response:
                await self._read_small(response, target)
                status = response.status_code
                if status == 206:
                    content_range = parse_content_range(response.headers.get("content-range"))
                    size = content_range.total if content_range else None
                elif status == 200:
                    size = int(response.headers.get("content-length", "0"))
                elif status == 416:
                    return await self._stat_by_head(url, target)
                else:
                    raise ArchiveRejected(
                        f"GET {redact(target)}: unexpected {status}", status=status
                    )
                if size is None:
                    raise ArchiveRejected(
                        f"GET {redact(target)}: no object size in answer", status=status
                    )
                return self._info(url, response, size)

        return await self._with_fresh_target(
            url,
            lambda target: self.session.retrying(f"GET {redact(target)}", lambda: attempt(target)),
        )

    async def _stat_by_head(self, url: str, target: str) -> ObjectInfo:
        """For empty objects, which have no byte 0 to ask for."""
        response = await self.session.request("HEAD", target)
        self.session.raise_for_status(response, what=f"HEAD {redact(target)}")
        return self._info(url, response, int(response.headers.get("content-length", "0")))

    @staticmethod
    def _info(url: str, response: httpx.Response, size: int) -> ObjectInfo:
        return ObjectInfo(
            url=url,
            size=size,
            etag=normalize_etag(response.headers.get("etag")),
            last_modified=parse_http_date(response.headers.get("last-modified")),
        )

    async def read_range(self, url: str, start: int, end: int, *, etag: str | None = None) -> bytes:
        """Bytes `[start, end)` of the object; fewer only where the object ends first.

        The result may be a `bytearray` (bytes received in place); treat it as read-only.
        """
        pieces = await self._read(url, start, end, etag, None)
        return pieces[0] if pieces else b""

    async def read_pieces(
        self, url: str, start: int, end: int, *, piece_size: int, etag: str | None = None
    ) -> list[bytes]:
        """Bytes `[start, end)` of the object in consecutive pieces of `piece_size` bytes
        (the last may be shorter); fewer bytes only where the object ends first.

        Over the lean client each piece is its own buffer, received in place: a cache that
        keeps blocks separately keeps them without copying.  Pieces may be `bytearray`s;
        treat them as read-only.
        """
        if piece_size <= 0:
            raise ValueError(f"piece size must be positive, not {piece_size}")
        return await self._read(url, start, end, etag, piece_size)

    async def _read(
        self, url: str, start: int, end: int, etag: str | None, piece_size: int | None
    ) -> list[bytes]:
        if start < 0 or end < start:
            raise ValueError(f"bad byte range [{start}, {end})")
        if end == start:
            return []

        progress = _RangeProgress(rawhttp.Filling(piece_size, end - start), etag)

        async def attempt(target: str) -> list[bytes]:
            if self._direct(target):
                return await self._read_range_direct(target, start, end, progress)
            data = await self._read_range_via_session(target, start, end, etag)
            if piece_size is None:
                return [data] if data else []
            return [data[at : at + piece_size] for at in range(0, len(data), piece_size)]

        return await self._with_fresh_target(
            url,
            lambda target: self.session.retrying(
                f"GET {redact(target)} bytes {start}-{end - 1}",
                lambda: attempt(target),
            ),
        )

    def _direct(self, target: str) -> bool:
        """Whether `target` may be read with the lean client: a token-free, proxy-free URL."""
        if self.ranges is None or self._via_api(target):
            return False
        origin = origin_of(target)
        direct = self._direct_origins.get(origin)
        if direct is None:
            host = urlsplit(target).hostname or ""
            proxied = getproxies().keys() & {"http", "https", "all"}
            direct = not proxied or bool(proxy_bypass(host))
            self._direct_origins[origin] = direct
        return direct

    async def _read_range_direct(
        self, target: str, start: int, end: int, progress: _RangeProgress
    ) -> list[bytes]:
        """One attempt over the lean client: a GET of what `progress` still lacks of bytes
        `[start, end)`, received after the bytes it holds."""
        assert self.ranges is not None
        filling, stats = progress.filling, self.session.stats
        before = filling.filled
        at = start + before

        def span(answer: rawhttp.Answer) -> tuple[int, int]:
            progress.etag = check_etag(answer, progress.etag, target) or progress.etag
            return body_window(answer, at, end, target)

        stats.object_requests += 1
        if progress.stalled:
            stats.hedged_requests += 1
            progress.stalled = False
        try:
            answer = await self.ranges.get(
                target, range_header(at, end), span, filling, timeout=self.stall_timeout
            )
        except rawhttp.CertificateRefused as exc:
            raise Unavailable(f"GET {redact(target)}: {exc}") from exc
        except rawhttp.TransportError as exc:
            stats.bytes_received += filling.filled - before
            if isinstance(exc, rawhttp.Stalled):
                stats.stalled_requests += 1
                progress.stalled = True
                log.warning(
                    "GET %s bytes %d-%d: %s; gave up that connection, asking another for "
                    "the %d bytes still missing", redact(target), at, end - 1, exc,
                    end - start - filling.filled,
                )
            raise TransientFailure(str(exc)) from exc
        if not answer.is_success:
            if answer.is_redirect:
                raise _Redirected(answer.headers["location"])
            self._refuse(answer.as_httpx(target), target)
            # 416: the range starts at or after the object's end.
            return filling.kept()  # type: ignore[return-value]
        received = filling.filled - before
        stats.bytes_received += received
        self._observe(received, answer.body_seconds)
        self._head_seconds = _running(self._head_seconds, answer.head_seconds)
        offset, stop = body_window(answer, at, end, target)
        if received != stop - offset:
            raise TransientFailure(f"short body: {received} of {stop - offset} bytes")
        # `bytearray`s, received in place: copying them to `bytes` would cost a pass.
        return filling.kept()  # type: ignore[return-value]

    def _refuse(self, response: httpx.Response, target: str) -> None:
        """Raise what a non-2xx answer to a ranged GET means (nothing for 416)."""
        status = response.status_code
        if is_retryable_status(status, idempotent=True):
            raise TransientFailure(
                f"HTTP {status} {response.reason_phrase}".strip(),
                retry_after=parse_retry_after(response.headers.get("retry-after")),
            )
        if status == 403:
            raise _TargetRefused(self.session.error_for(response, what=f"GET {redact(target)}"))
        if status == 416:
            return
        self.session.raise_for_status(response, what=f"GET {redact(target)}")
        raise ArchiveRejected(f"GET {redact(target)}: unexpected {status}", status=status)

    async def _read_range_via_session(
        self, target: str, start: int, end: int, etag: str | None
    ) -> bytes:
        async with self.session.open(
            "GET", target, headers=range_header(start, end), follow_redirects=False
        ) as response:
            if response.status_code not in (200, 206):
                await self._read_small(response, target)
                if response.status_code == 416:
                    return b""  # the range starts at or after the object's end
                raise ArchiveRejected(
                    f"GET {redact(target)}: unexpected {response.status_code}",
                    status=response.status_code,
                )
            check_etag(response, etag, target)
            offset, stop = body_window(response, start, end, target)
            started = anyio.current_time()
            data = await read_raw(response, offset, stop)
            self.session.stats.bytes_received += len(data)
            self._observe(len(data), anyio.current_time() - started)
            if len(data) != stop - offset:
                raise TransientFailure(f"short body: {len(data)} of {stop - offset} bytes")
            return data

    async def _read_small(self, response: httpx.Response, target: str) -> None:
        """Read a small (error or one-byte) body so the connection can be reused, turn a
        refusal of a presigned target into a reason to re-resolve it, and a redirect into
        `_Redirected`."""
        if response.status_code == 200:
            return  # a whole object: do not download it just to reuse a connection
        try:
            await response.aread()
        except httpx.TransportError as exc:
            raise TransientFailure(f"body cut short: {describe(exc)}") from exc
        if response.is_redirect:
            raise _Redirected(response.headers["location"])
        if response.status_code == 403:
            raise _TargetRefused(self.session.error_for(response, what=f"GET {redact(target)}"))
        if not response.is_success and response.status_code != 416:
            self.session.raise_for_status(response, what=f"GET {redact(target)}")

    # -- writing (uploads) --------------------------------------------------------------

    async def put(self, url: str, data: bytes, *, headers: dict[str, str] | None = None) -> str:
        """PUT bytes to a presigned URL (a multipart part or a Zarr file); returns the ETag.

        A URL that signs `x-amz-tagging` (Zarr files of embargoed dandisets) gets the
        `embargoed=true` tag header it was signed with.
        """
        return await self._put(url, data, headers or {})

    async def put_file(
        self,
        url: str,
        path: str | os.PathLike[str],
        offset: int,
        size: int,
        *,
        headers: dict[str, str] | None = None,
    ) -> str:
        """PUT `size` bytes of a local file from `offset`, streamed from disk (a 64 MiB part
        need not sit in memory); each retry reads the file again.  Returns the ETag."""

        async def body() -> AsyncIterator[bytes]:
            async with await anyio.open_file(path, "rb") as file:
                await file.seek(offset)
                remaining = size
                while remaining:
                    chunk = await file.read(min(UPLOAD_CHUNK, remaining))
                    if not chunk:
                        raise ValueError(f"{path}: shorter than {offset + size} bytes")
                    remaining -= len(chunk)
                    yield chunk

        # A declared length, because S3 refuses chunked uploads to presigned URLs.
        return await self._put(url, body, {**(headers or {}), "Content-Length": str(size)})

    async def _put(self, url: str, content: Body, headers: dict[str, str]) -> str:
        headers = {**signed_tagging(url), **headers}
        response = await self.session.request("PUT", url, content=content, headers=headers)
        self.session.raise_for_status(response, what=f"PUT {redact(url)}")
        return normalize_etag(response.headers.get("etag"))

    async def complete_multipart(self, url: str, body: str) -> str:
        """POST the archive's CompleteMultipartUpload body; returns the object's ETag."""

        def check(response: httpx.Response) -> None:
            if response.is_success and b"<Error" in response.content[:512]:
                code = _xml_text(response.content, "Code") or "unknown"
                if code in {"InternalError", "SlowDown", "ServiceUnavailable"}:
                    raise TransientFailure(f"S3 error {code} in a 200 answer")
                raise ArchiveRejected(
                    f"POST {redact(url)}: S3 refused completion ({code})",
                    status=response.status_code,
                    body=response.text,
                )

        response = await self.session.request(
            "POST",
            url,
            content=body.encode(),
            headers={"Content-Type": "application/xml"},
            idempotent=True,
            check=check,
        )
        self.session.raise_for_status(response, what=f"POST {redact(url)}")
        return normalize_etag(_xml_text(response.content, "ETag"))


@dataclass
class _RangeProgress:
    """What the GETs of one range have brought so far: the bytes (kept when a GET fails
    part-way, so the next asks only for the rest), the ETag they carry (the next must carry
    the same), and whether the last GET was given up as stalled."""

    filling: rawhttp.Filling
    etag: str | None
    stalled: bool = False


def _running(average: float | None, sample: float) -> float:
    """A running average, `RATE_WEIGHT` of it the newest sample."""
    return sample if average is None else average + RATE_WEIGHT * (sample - average)


class _Redirected(Exception):
    """A GET of object bytes was answered with a redirect to `location` (maybe relative)."""

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


class _TargetRefused(Exception):
    """S3 refused a URL with 403: for a cached presigned target, time to ask for a new one.

    Carries the domain error to raise when asking again is pointless.
    """

    def __init__(self, error: DandiFSError) -> None:
        super().__init__(str(error))
        self.error = error


def signed_tagging(url: str) -> dict[str, str]:
    signed = dict(parse_qsl(urlsplit(url).query)).get("X-Amz-SignedHeaders", "")
    return {"x-amz-tagging": "embargoed=true"} if "x-amz-tagging" in signed.split(";") else {}


def check_etag(response: Answer, expected: str | None, target: str) -> str | None:
    """The answer's ETag; `Stale` if it is not the one expected."""
    actual = normalize_etag(response.headers.get("etag")) or None
    if expected and actual and actual != normalize_etag(expected):
        raise Stale(
            f"GET {redact(target)}: the object changed (ETag {actual}, expected {expected})"
        )
    return actual


def body_window(response: Answer, start: int, end: int, target: str) -> tuple[int, int]:
    """Which bytes of this answer's body are `[start, end)`, clipped to the object's end.

    A 206 body begins at `start`; a 200 body is the whole object, so `start` is its offset.
    """
    if response.status_code == 200:
        size = int(response.headers.get("content-length", end))
        return start, min(end, size)
    content_range = parse_content_range(response.headers.get("content-range"))
    if content_range is None or content_range.first != start:
        raise TransientFailure(
            f"answer for the wrong range ({response.headers.get('content-range')!r})"
        )
    stop = end if content_range.total is None else min(end, content_range.total)
    return 0, stop - start


async def read_raw(response: httpx.Response, offset: int, stop: int) -> bytes:
    """The raw body's bytes `[offset, stop)` (no content decoding: ranges count stored bytes)."""
    pieces, position = [], 0
    try:
        async for chunk in response.aiter_raw():
            end = position + len(chunk)
            if offset <= position and end <= stop:
                pieces.append(chunk)  # the common case: no copy
            else:
                pieces.append(chunk[max(0, offset - position) : max(0, stop - position)])
            position = end
            if position >= stop:
                break
    except httpx.TransportError as exc:
        raise TransientFailure(f"body cut short: {describe(exc)}") from exc
    return b"".join(pieces)


def _xml_text(content: bytes, tag: str) -> str | None:
    try:
        root = ElementTree.fromstring(content)
    except ElementTree.ParseError:
        return None
    for element in root.iter():
        if element.tag == tag or element.tag.endswith("}" + tag):
            return element.text
    return None
