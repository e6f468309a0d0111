"""Walking the archive's paginated lists: `{"count", "next", "previous", "results"}`.

Page 1 comes first.  When its `next` is the very same request with `page=2` and the total
`count` is known, the page count is known too and the remaining pages are fetched
concurrently (a bounded number at a time), then joined in page order; dandi-cli does the
same.  Any other `next` (a rewritten host, a cursor) is followed one page at a time.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import anyio

from dandifs.errors import NotFound

Page = dict[str, Any]
FetchPage = Callable[[str, dict[str, Any] | None], Awaitable[tuple[Page, str]]]
"""(url, params) -> (the decoded page, the URL that was actually requested)."""

DEFAULT_CONCURRENCY = 6


def is_next_page_of(next_url: str, requested_url: str) -> bool:
    """Is `next_url` exactly `requested_url` with `page=2` (query order aside)?"""
    nxt, first = urlsplit(next_url), urlsplit(requested_url)
    if (nxt.scheme, nxt.netloc, nxt.path) != (first.scheme, first.netloc, first.path):
        return False
    expected = [(k, v) for k, v in parse_qsl(first.query, keep_blank_values=True) if k != "page"]
    expected.append(("page", "2"))
    return sorted(parse_qsl(nxt.query, keep_blank_values=True)) == sorted(expected)


def page_count(count: int, page_size: int) -> int:
    return max(1, math.ceil(count / page_size)) if page_size > 0 else 1


async def collect(
    fetch: FetchPage,
    url: str,
    params: dict[str, Any] | None = None,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> list[Any]:
    """All `results` of the list at `url`, in the archive's order."""
    first, requested = await fetch(url, params)
    results: list[Any] = list(first.get("results") or [])
    next_url = first.get("next")
    count = first.get("count")
    if next_url and isinstance(count, int) and results and is_next_page_of(next_url, requested):
        size = int((params or {}).get("page_size") or len(results))
        pages = await _fetch_numbered_pages(
            fetch, url, params, range(2, page_count(count, size) + 1), concurrency
        )
        for page in pages:
            results.extend(page.get("results") or [])
        # Items added while we were listing may have made the last page point further.
        next_url = pages[-1].get("next") if pages else None
    while next_url:
        page, _ = await fetch(next_url, None)
        results.extend(page.get("results") or [])
        next_url = page.get("next")
    return results


async def _fetch_numbered_pages(
    fetch: FetchPage,
    url: str,
    params: dict[str, Any] | None,
    numbers: range,
    concurrency: int,
) -> list[Page]:
    pages: dict[int, Page] = {}
    limiter = anyio.CapacityLimiter(concurrency)

    async def fetch_one(number: int) -> None:
        async with limiter:
            try:
                pages[number], _ = await fetch(url, {**(params or {}), "page": number})
            except NotFound:
                # The list shrank while we walked it: the page no longer exists.
                pages[number] = {"results": [], "next": None}

    async with anyio.create_task_group() as group:
        for number in numbers:
            group.start_soon(fetch_one, number)
    return [pages[number] for number in numbers]
