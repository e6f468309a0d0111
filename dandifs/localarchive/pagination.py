"""The archive's two page-number paginations and DRF's way of building page links.

`next`/`previous` are built from the URL the client requested (its host, its other query
parameters, sorted as DRF sorts them), which dandi-cli relies on to fetch pages in parallel.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from dandifs.localarchive.problems import detail

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def replace_query_param(url: str, key: str, value: object) -> str:
    scheme, netloc, path, query, fragment = urlsplit(url)
    params = parse_qs(query, keep_blank_values=True)
    params[key] = [str(value)]
    return urlunsplit((scheme, netloc, path, urlencode(sorted(params.items()), doseq=True),
                       fragment))


def remove_query_param(url: str, key: str) -> str:
    scheme, netloc, path, query, fragment = urlsplit(url)
    params = parse_qs(query, keep_blank_values=True)
    params.pop(key, None)
    return urlunsplit((scheme, netloc, path, urlencode(sorted(params.items()), doseq=True),
                       fragment))


def page_size(raw: str | None) -> int:
    """DRF's rule: a positive integer clamped to the maximum, anything else the default."""
    try:
        size = int(raw) if raw is not None else DEFAULT_PAGE_SIZE
    except ValueError:
        return DEFAULT_PAGE_SIZE
    if size <= 0:
        return DEFAULT_PAGE_SIZE
    return min(size, MAX_PAGE_SIZE)


def _page_number(raw: str | None) -> int:
    if raw is None:
        return 1
    try:
        number = int(raw)
    except ValueError:
        raise detail(404, "Invalid page.") from None
    if number < 1:
        raise detail(404, "Invalid page.")
    return number


def _links(url: str, number: int, has_next: bool) -> tuple[str | None, str | None]:
    following = replace_query_param(url, "page", number + 1) if has_next else None
    if number <= 1:
        return following, None
    if number == 2:
        return following, remove_query_param(url, "page")
    return following, replace_query_param(url, "page", number - 1)


def standard_page(
    url: str,
    query: dict[str, str],
    total: int,
    fetch: Callable[[int, int], Sequence[Any]],
) -> dict[str, Any]:
    """`count` on every page; a page past the end is a 404 (page 1 may be empty)."""
    size = page_size(query.get("page_size"))
    raw = query.get("page")
    last = max(1, -(-total // size))
    number = last if raw == "last" else _page_number(raw)
    if number > last:
        raise detail(404, "Invalid page.")
    results = list(fetch((number - 1) * size, size))
    following, previous = _links(url, number, number < last)
    return {"count": total, "next": following, "previous": previous, "results": results}


def lazy_page(
    url: str,
    query: dict[str, str],
    fetch: Callable[[int, int], Sequence[Any]],
    count: Callable[[], int],
) -> dict[str, Any]:
    """`count` only on page 1; `next` known by fetching one extra row; no 404 past the end."""
    size = page_size(query.get("page_size"))
    number = _page_number(query.get("page"))
    rows = list(fetch((number - 1) * size, size + 1))
    following, previous = _links(url, number, len(rows) > size)
    return {
        "count": count() if number == 1 else None,
        "next": following,
        "previous": previous,
        "results": rows[:size],
    }
