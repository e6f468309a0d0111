"""Conditional requests (RFC 9110 §13), answered from metadata alone.

davfs2 revalidates its cached copy with If-None-Match and If-Modified-Since; browsers and
wget -N send If-Modified-Since.  Answering them here means a revalidation costs no S3
request.  (WsgiDAV's own evaluation treats an If-Modified-Since equal to Last-Modified as
"modified", which would turn every such revalidation into a download.)
"""

from __future__ import annotations

from email.utils import parsedate_to_datetime


def entity_tags(header: str) -> list[str]:
    """The tags of an If-(None-)Match header, without quotes or weakness; `*` kept."""
    tags = []
    for item in header.split(","):
        item = item.strip()
        if item.startswith("W/"):
            item = item[2:]
        if item:
            tags.append(item.strip('"'))
    return tags


def http_time(header: str) -> float | None:
    try:
        return parsedate_to_datetime(header).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def evaluate(headers: dict[str, str], etag: str | None, last_modified: float | None) -> int | None:
    """304 or 412 if the request's preconditions say so, else None (serve normally).

    `headers` are WSGI environ keys (`HTTP_IF_NONE_MATCH`, ...); `etag` is unquoted.
    """
    if_match = headers.get("HTTP_IF_MATCH")
    if if_match is not None:
        tags = entity_tags(if_match)
        if "*" not in tags and etag not in tags:
            return 412
    elif (since := headers.get("HTTP_IF_UNMODIFIED_SINCE")) is not None:
        moment = http_time(since)
        if moment is not None and last_modified is not None and last_modified > moment:
            return 412
    if_none_match = headers.get("HTTP_IF_NONE_MATCH")
    if if_none_match is not None:
        tags = entity_tags(if_none_match)
        return 304 if "*" in tags or (etag is not None and etag in tags) else None
    since = headers.get("HTTP_IF_MODIFIED_SINCE")
    if since is not None and last_modified is not None:
        moment = http_time(since)
        if moment is not None and last_modified <= moment:
            return 304
    return None
