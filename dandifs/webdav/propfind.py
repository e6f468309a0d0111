"""PROPFIND, rendered straight from entries.

WsgiDAV's generic PROPFIND builds an element tree through several calls per property and
resource, which costs seconds for a 10,000-entry folder.  Every property here comes from
the `Entry` already in hand, so the multistatus is written as text in one pass.  The
request body is parsed (and refused if malformed) before any archive request is made.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import format_datetime
from urllib.parse import quote
from xml.etree.ElementTree import ParseError
from xml.sax.saxutils import escape

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from dandifs.core import Entry
from dandifs.webdav.resources import content_type_of, plain_etag

DAV = "DAV:"
DANDI = "https://dandiarchive.org/ns"
"""Properties of this server: `upload` (where a written file is on its way to becoming
an asset) and `validation` (the archive's validation errors, asked only when named)."""
UPLOAD = (DANDI, "upload")
VALIDATION = (DANDI, "validation")
LIVE = (
    "resourcetype",
    "creationdate",
    "getcontentlength",
    "getcontenttype",
    "getlastmodified",
    "getetag",
    "displayname",
)
HREF_SAFE = "/-_.~!$&'()*+,;=:@"


class BadPropfind(ValueError):
    """The request body is not a PROPFIND this server understands."""


@dataclass(frozen=True)
class PropfindRequest:
    """What was asked: `allprop`, `propname`, or `prop` with (namespace, name) pairs."""

    mode: str
    names: tuple[tuple[str, str], ...] = ()


def parse_request(body: bytes) -> PropfindRequest:
    if not body.strip():
        return PropfindRequest("allprop")
    try:
        root = fromstring(body)
    except (ParseError, DefusedXmlException) as exc:
        raise BadPropfind(f"the PROPFIND body is not well-formed XML ({exc})") from None
    if root.tag != f"{{{DAV}}}propfind":
        raise BadPropfind("the PROPFIND body must be a DAV:propfind element")
    modes = [child for child in root if child.tag in {f"{{{DAV}}}{m}" for m in ("allprop", "propname", "prop")}]
    if len(modes) != 1 and not (
        len(modes) == 0 and any(child.tag == f"{{{DAV}}}include" for child in root)
    ):
        raise BadPropfind("DAV:propfind must hold exactly one of allprop, propname or prop")
    mode = modes[0].tag.split("}", 1)[1] if modes else "allprop"
    if mode != "prop":
        return PropfindRequest(mode)
    names = tuple(split_tag(child.tag) for child in modes[0])
    return PropfindRequest("prop", names)


def split_tag(tag: str) -> tuple[str, str]:
    if tag.startswith("{"):
        namespace, _, name = tag[1:].partition("}")
        return namespace, name
    return "", tag


@functools.lru_cache(maxsize=4096)
def rfc3339(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@functools.lru_cache(maxsize=4096)
def rfc1123(moment: datetime) -> str:
    whole = datetime.fromtimestamp(math.floor(moment.timestamp()), timezone.utc)
    return format_datetime(whole, usegmt=True)


def text(value: str) -> str:
    """XML character data (most names need no escaping, and checking is cheaper)."""
    return escape(value) if ("&" in value or "<" in value or ">" in value) else value


def live_values(entry: Entry) -> dict[str, str]:
    """The defined live properties of an entry, as XML content."""
    values = {
        "resourcetype": "<D:collection/>" if entry.is_folder else "",
        "displayname": text(entry.name),
    }
    created, modified = entry.ctime or entry.mtime, entry.mtime or entry.ctime
    if created is not None:
        values["creationdate"] = rfc3339(created)
    if modified is not None:
        values["getlastmodified"] = rfc1123(modified)
    if not entry.is_folder:
        values["getcontentlength"] = str(entry.size)
        values["getcontenttype"] = text(content_type_of(entry))
        etag = plain_etag(entry.etag)
        if etag is not None:
            values["getetag"] = text(f'"{etag}"')
    return values


def element(name: str, content: str, prefix: str = "D") -> str:
    return f"<{prefix}:{name}>{content}</{prefix}:{name}>" if content else f"<{prefix}:{name}/>"


Extra = dict[tuple[str, str], str]
"""Properties beside the live ones, by (namespace, name): each a whole XML element."""


def upload_element(entry: Entry) -> Extra:
    if entry.upload is None:
        return {}
    return {UPLOAD: element("upload", text(entry.upload.describe()), "dandi")}


def validation_element(problems: list[str]) -> Extra:
    content = "".join(element("error", text(problem), "dandi") for problem in problems)
    return {VALIDATION: element("validation", content, "dandi")}


def empty_element(namespace: str, name: str, prefixes: dict[str, str]) -> str:
    if namespace == DAV:
        return f"<D:{name}/>"
    if namespace in prefixes:
        return f"<{prefixes[namespace]}:{name}/>"
    if namespace:
        return f'<x:{name} xmlns:x="{escape(namespace)}"/>'
    return f"<{name}/>"


def href_for(base: str, path: str, is_folder: bool) -> str:
    href = quote(base + path, safe=HREF_SAFE)
    if is_folder and not href.endswith("/"):
        href += "/"
    return text(href)


def response(
    href: str, entry: Entry, request: PropfindRequest, prefixes: dict[str, str], extra: Extra
) -> str:
    values = live_values(entry)
    others = {**upload_element(entry), **extra}
    if request.mode == "propname":
        found = "".join(f"<D:{name}/>" for name in LIVE if name in values)
        found += "".join(empty_element(ns, name, prefixes) for ns, name in others)
        missing = ""
    elif request.mode == "allprop":
        found = "".join(element(name, values[name]) for name in LIVE if name in values)
        found += "".join(others.values())
        missing = ""
    else:
        found_parts, missing_parts = [], []
        for namespace, name in request.names:
            if namespace == DAV and name in values:
                found_parts.append(element(name, values[name]))
            elif (namespace, name) in others:
                found_parts.append(others[(namespace, name)])
            else:
                missing_parts.append(empty_element(namespace, name, prefixes))
        found, missing = "".join(found_parts), "".join(missing_parts)
    parts = [f"<D:response><D:href>{href}</D:href>"]
    if found or not missing:
        parts.append(f"<D:propstat><D:prop>{found}</D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat>")
    if missing:
        parts.append(
            f"<D:propstat><D:prop>{missing}</D:prop><D:status>HTTP/1.1 404 Not Found</D:status></D:propstat>"
        )
    parts.append("</D:response>")
    return "".join(parts)


def render(
    base: str,
    items: Iterable[tuple[str, Entry]],
    request: PropfindRequest,
    extras: dict[str, Extra] | None = None,
) -> bytes:
    """The 207 body for (path, entry) pairs; `base` is the mount prefix (SCRIPT_NAME);
    `extras` are further properties by path (dead properties, validation errors)."""
    extras = extras or {}
    namespaces = sorted({ns for ns, _ in request.names if ns and ns not in (DAV, DANDI)})
    prefixes = {namespace: f"ns{index}" for index, namespace in enumerate(namespaces)}
    prefixes[DANDI] = "dandi"
    declarations = "".join(f' xmlns:{prefix}="{escape(ns)}"' for ns, prefix in prefixes.items())
    body = [f'<?xml version="1.0" encoding="utf-8"?>\n<D:multistatus xmlns:D="DAV:"{declarations}>']
    body.extend(
        response(href_for(base, path, entry.is_folder), entry, request, prefixes, extras.get(path, {}))
        for path, entry in items
    )
    body.append("</D:multistatus>\n")
    return "".join(body).encode("utf-8")
