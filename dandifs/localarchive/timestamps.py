"""The two timestamp spellings of the archive.

API objects (`created`, `modified`) use `...123456Z`; timestamps written inside metadata use
Python's isoformat (`+00:00`).  Both are produced from one aware UTC datetime.
"""

from __future__ import annotations

from datetime import datetime, timezone


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def api_time(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def metadata_time(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat()


def parse_api_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)


def now_api() -> str:
    return api_time(utcnow())
