"""One HTTP connection pool with dandifs' request policy on top.

`HttpSession` is where every request goes through: it adds the token only for the API
origin (also on each redirect hop, which it follows itself), turns transport errors and
gateway statuses into retries, counts requests and logs each one with its timing.  Callers
get back a final `httpx.Response` and decide what its status means.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urljoin

import anyio
import httpx

from dandifs.archive.auth import TokenPolicy
from dandifs.archive.instances import origin_of
from dandifs.archive.presigned import redact
from dandifs.archive.retry import (
    RETRYABLE_STATUSES,
    Attempts,
    RetryPolicy,
    TransientFailure,
    call_with_retries,
    parse_retry_after,
)
from dandifs.archive.status import error_for
from dandifs.counters import Counters
from dandifs.errors import ArchiveRejected, DandiFSError, Unavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_REDIRECTS = 5
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
# Failures that prove the request never reached the server, so even a POST may be repeated.
NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
NOT_PROCESSED_STATUSES = frozenset({429, 503})

Check = Callable[[httpx.Response], None]
Body = bytes | Callable[[], AsyncIterator[bytes]]
"""A request body: bytes, or a factory of a fresh byte stream per attempt (retries re-send)."""


@dataclass
class RequestStats(Counters):
    """Counters for benchmarks and logs ("archive requests made")."""

    api_requests: int = 0
    object_requests: int = 0
    failed_attempts: int = 0
    bytes_received: int = 0
    stalled_requests: int = 0  # ranged GETs given up because nothing came for a while
    hedged_requests: int = 0  # GETs, each after a stalled one, for the bytes it still owed

    @property
    def requests(self) -> int:
        return self.api_requests + self.object_requests

    def derived(self) -> dict[str, int]:
        return {"requests": self.requests}


def describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def outcome_unknown(method: str, url: str, exc: BaseException) -> Unavailable:
    """A request that must not be repeated blindly failed after it may have been carried out."""
    return Unavailable(
        f"{method} {redact(url)}: {describe(exc)}; the archive may or may not have carried it out, "
        "check before repeating it"
    )


def is_retryable_error(exc: httpx.TransportError, idempotent: bool) -> bool:
    return idempotent or isinstance(exc, NOT_SENT_ERRORS)


def is_retryable_status(status: int, idempotent: bool) -> bool:
    return status in RETRYABLE_STATUSES and (idempotent or status in NOT_PROCESSED_STATUSES)


class HttpSession:
    """Requests over one `httpx.AsyncClient`, with retries, per-origin token and counting."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        tokens: TokenPolicy,
        policy: RetryPolicy,
        stats: RequestStats | None = None,
    ) -> None:
        self.http = http
        self.tokens = tokens
        self.policy = policy
        self.stats = stats if stats is not None else RequestStats()

    def error_for(self, response: httpx.Response, *, what: str) -> DandiFSError:
        """The domain error for a final non-success answer (see `status.py`)."""
        sent_token = bool(self.tokens.headers_for(str(response.request.url)))
        return error_for(response, what=what, authenticated=sent_token)

    def raise_for_status(self, response: httpx.Response, *, what: str) -> None:
        if not response.is_success:
            raise self.error_for(response, what=what)

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        content: Body | None = None,
        headers: dict[str, str] | None = None,
        follow_redirects: bool = True,
        idempotent: bool | None = None,
        check: Check | None = None,
    ) -> httpx.Response:
        """Send until a final answer arrives; the body is read in full.

        `check` runs inside each attempt and may raise `TransientFailure` to retry an
        answer that looks complete to HTTP but is not (a short range, say).
        """
        safe = method in IDEMPOTENT_METHODS if idempotent is None else idempotent

        async def attempt() -> httpx.Response:
            async with self.open(
                method,
                url,
                params=params,
                json=json,
                content=content,
                headers=headers,
                follow_redirects=follow_redirects,
                idempotent=safe,
            ) as response:
                try:
                    await response.aread()
                except httpx.TransportError as exc:
                    if not safe:
                        self.stats.failed_attempts += 1
                        raise outcome_unknown(method, url, exc) from exc
                    raise TransientFailure(f"body cut short: {describe(exc)}") from exc
                self.stats.bytes_received += len(response.content)
                if check is not None:
                    check(response)
                return response

        return await self.retrying(f"{method} {redact(url)}", attempt)

    def _count_failure(self) -> None:
        self.stats.failed_attempts += 1

    async def retrying(self, what: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """`attempt()` under this session's retry policy, failures counted in `stats`."""
        return await call_with_retries(self.policy, what, attempt, on_failure=self._count_failure)

    def attempts(self, what: str) -> Attempts:
        """A retry budget for work that retries by itself (a resumable stream)."""
        return Attempts(self.policy, what, on_failure=self._count_failure)

    @asynccontextmanager
    async def open(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        content: Body | None = None,
        headers: dict[str, str] | None = None,
        follow_redirects: bool = True,
        idempotent: bool | None = None,
    ) -> AsyncIterator[httpx.Response]:
        """One attempt: the final response with its body still unread, or `TransientFailure`.

        Redirects are followed here rather than by httpx so that the token decision is made
        for every hop's own URL.
        """
        safe = method in IDEMPOTENT_METHODS if idempotent is None else idempotent
        for _hop in range(MAX_REDIRECTS + 1):
            response = await self._send(method, url, params, json, content, headers, safe)
            if not (follow_redirects and response.is_redirect):
                break
            await response.aclose()
            url = urljoin(str(response.request.url), response.headers["location"])
            params = None
            if response.status_code == 303 or (
                response.status_code in {301, 302} and method == "POST"
            ):
                method, json, content = "GET", None, None
        else:
            await response.aclose()
            raise ArchiveRejected(
                f"{method} {redact(url)}: more than {MAX_REDIRECTS} redirects", status=310
            )
        try:
            yield response
        finally:
            await response.aclose()

    async def _send(
        self,
        method: str,
        url: str,
        params: dict[str, Any] | None,
        json: Any,
        content: Body | None,
        headers: dict[str, str] | None,
        idempotent: bool,
    ) -> httpx.Response:
        request = self.http.build_request(
            method,
            url,
            params=params,
            json=json,
            content=content() if callable(content) else content,
            headers={**(headers or {}), **self.tokens.headers_for(url)},
        )
        if origin_of(url) == self.tokens.api_origin:
            self.stats.api_requests += 1
        else:
            self.stats.object_requests += 1
        started = anyio.current_time()
        try:
            response = await self.http.send(request, stream=True)
        except httpx.TransportError as exc:
            log.debug("%s %s failed: %s", method, redact(url), describe(exc))
            if is_retryable_error(exc, idempotent):
                raise TransientFailure(describe(exc)) from exc
            self.stats.failed_attempts += 1
            raise outcome_unknown(method, url, exc) from exc
        elapsed_ms = (anyio.current_time() - started) * 1000
        log.debug("%s %s -> %d in %.1f ms", method, redact(url), response.status_code, elapsed_ms)
        if is_retryable_status(response.status_code, idempotent):
            await response.aclose()
            raise TransientFailure(
                f"HTTP {response.status_code} {response.reason_phrase}".strip(),
                retry_after=parse_retry_after(response.headers.get("retry-after")),
            )
        return response
