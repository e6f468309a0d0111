"""A cache of where the archive's download URLs redirect to.

`GET <api>/assets/<id>/download/` answers with a presigned S3 URL that stays valid for hours.
Asking the API once per block read would double the request count, so the target is kept
until shortly before the signature expires (read from `X-Amz-Date` + `X-Amz-Expires`, or
SigV2's `Expires`).  Expiry is wall-clock time because signatures are.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timezone
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from cachetools import LRUCache

UNKNOWN_LIFETIME = 60.0
"""How long to trust a redirect target whose URL says nothing about its expiry."""

MAX_MARGIN = 300.0


SIGNING_PARAMETERS = frozenset(
    {"X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token", "Signature", "AWSAccessKeyId"}
)


def redact(url: str) -> str:
    """The URL for messages and logs: a presigned URL grants access for hours, so its query
    is replaced by `<signed>`."""
    parts = urlsplit(url)
    if not any(name in SIGNING_PARAMETERS for name, _ in parse_qsl(parts.query)):
        return url
    return urlunsplit(parts._replace(query="<signed>"))


def presigned_expiry(url: str) -> float | None:
    """When a presigned URL stops working (POSIX seconds), or None if it does not say."""
    query = dict(parse_qsl(urlsplit(url).query))
    try:
        if "X-Amz-Date" in query and "X-Amz-Expires" in query:
            signed = datetime.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
            return signed.replace(tzinfo=timezone.utc).timestamp() + int(query["X-Amz-Expires"])
        if "Expires" in query:
            return float(query["Expires"])
    except ValueError:
        return None
    return None


class PresignedTargets:
    """`source URL -> (target URL, use-until)`, bounded in size."""

    def __init__(self, maxsize: int = 4096, clock: Callable[[], float] = time.time) -> None:
        self._entries: LRUCache[str, tuple[str, float]] = LRUCache(maxsize=maxsize)
        self._clock = clock

    def get(self, source: str) -> str | None:
        entry = self._entries.get(source)
        if entry is None:
            return None
        target, use_until = entry
        if self._clock() >= use_until:
            self._entries.pop(source, None)
            return None
        return target

    def put(self, source: str, target: str) -> None:
        now = self._clock()
        expiry = presigned_expiry(target)
        if expiry is None:
            use_until = now + UNKNOWN_LIFETIME
        else:
            margin = min(MAX_MARGIN, max(0.0, (expiry - now) * 0.1))
            use_until = expiry - margin
        if use_until > now:
            self._entries[source] = (target, use_until)

    def forget(self, source: str) -> None:
        self._entries.pop(source, None)
