"""Pure logic of the WebDAV front end, with worked vectors (no server, no network)."""

from __future__ import annotations

import base64
from contextlib import asynccontextmanager
from datetime import datetime, timezone

import pytest
import trio
import trio.testing

from dandifs import errors
from dandifs.resolve.entry import Entry, EntryKind
from dandifs.webdav.auth import MalformedCredentials, caller_label, token_from_authorization
from dandifs.webdav.conditional import evaluate
from dandifs.webdav.delivery import RedirectMode, choose_target, follows_redirects, redirect_target
from dandifs.webdav.errors import status_for, to_dav_error
from dandifs.webdav.guard import refusal
from dandifs.webdav.html import breadcrumbs, human_size, link_to, metadata_link, render_listing, utc_time
from dandifs.webdav.propfind import BadPropfind, PropfindRequest, parse_request
from dandifs.webdav.propfind import render as propfind_render
from dandifs.webdav.provider import ImmutableEntries
from dandifs.webdav.resources import content_type_of, plain_etag

API = "http://archive.example/api"
S3 = "http://s3.example/dandiarchive/blobs/abc/def/abcdef"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def blob(**fields) -> Entry:
    values = dict(
        path="/dandisets/000001/draft/sub-01/a.nwb",
        kind=EntryKind.FILE,
        size=10,
        asset_id="A1",
        content_url=S3,
        etag="0123456789abcdef0123456789abcdef-1",
    )
    return Entry(**{**values, **fields})


# -- credentials -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "header, token",
    [
        ("", None),
        (basic("anyone", "tok123"), "tok123"),
        (basic("", "tok:with:colons"), "tok:with:colons"),
        ("Bearer tok456", "tok456"),
        ("bearer   tok456  ", "tok456"),
        ("token tok789", "tok789"),
    ],
)
def test_token_from_authorization(header, token):
    assert token_from_authorization(header) == token


@pytest.mark.parametrize(
    "header",
    ["Basic !!!notbase64", basic("user", ""), "Basic " + base64.b64encode(b"nocolon").decode(),
     "Digest username=x", "Bearer"],
)
def test_malformed_authorization_is_refused(header):
    with pytest.raises(MalformedCredentials):
        token_from_authorization(header)


def test_caller_label_never_shows_the_token():
    assert caller_label(None) == "(anonymous)"
    label = caller_label("secret-token")
    assert label.startswith("token-") and "secret" not in label
    assert label == caller_label("secret-token") != caller_label("other-token")


# -- delivery --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "agent, follows",
    [
        ("Wget/1.21.3", True),
        ("curl/7.88.1", True),
        ("rclone/v1.60.1", True),
        ("Mozilla/5.0 (X11; Linux x86_64) Chrome/120", True),
        ("davfs2/1.7.0 neon/0.32.5", False),
        ("cadaver/0.24 neon/0.32.5", False),
        ("litmus/0.13 neon/0.32.5", False),
    ],
)
def test_neon_clients_do_not_follow_redirects(agent, follows):
    assert follows_redirects(agent) is follows


def test_redirect_targets_by_mode():
    entry = blob()
    assert redirect_target(entry, RedirectMode.S3, API) == S3
    assert redirect_target(entry, RedirectMode.API, API) == f"{API}/assets/A1/download/"
    assert redirect_target(entry, RedirectMode.STREAM, API) is None
    zarr_object = blob(zarr_id="Z1", content_url="http://s3.example/dandiarchive/zarr/Z1/0/0")
    assert redirect_target(zarr_object, RedirectMode.API, API) == zarr_object.content_url
    virtual = blob(content_url=None, asset_id=None)  # dandiset.yaml
    assert redirect_target(virtual, RedirectMode.S3, API) is None
    assert choose_target(entry, RedirectMode.S3, API, "davfs2/1.7.0 neon/0.32.5") is None
    assert choose_target(entry, RedirectMode.S3, API, "Wget/1.21.3") == S3


# -- errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error, status",
    [
        (errors.NotFound("x"), 404),
        (errors.InvalidPath("x"), 404),
        (errors.ReadOnly("x"), 403),
        (errors.InvalidToken("x"), 401),
        (errors.AuthenticationRequired("x"), 401),
        (errors.PermissionDenied("x"), 403),
        (errors.Stale("x"), 412),
        (errors.Unavailable("x", retry_after=7), 503),
        (errors.ArchiveRejected("x", status=500), 502),
        (RuntimeError("bug"), 500),
    ],
)
def test_error_table(error, status):
    assert status_for(error) == status
    dav = to_dav_error(error)
    assert dav.value == status
    headers = dict(dav.add_headers or [])
    assert ("WWW-Authenticate" in headers) == (status == 401)
    if isinstance(error, errors.Unavailable):
        assert headers["Retry-After"] == "7"
    if status == 500:
        assert "bug" not in (dav.context_info or "")


# -- request guard ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri, refused",
    [
        ("/dandisets/000001/draft/a.nwb", False),
        ("/dandisets/000001/draft/a%20b.nwb", False),
        ("/dandisets/../etc/passwd", True),
        ("/dandisets/%2e%2e/etc", True),
        ("/dandisets/%2E%2E/etc", True),
        ("/dandisets/000001/./draft", True),
        ("/dandisets/000001%2fdraft", True),
        ("/dandisets/000001%5cdraft", True),
        ("/dandisets/a%00b", True),
        ("/dandisets/x?q=..", False),
    ],
)
def test_guard_refusals(uri, refused):
    environ = {"REQUEST_URI": uri, "PATH_INFO": uri.split("?")[0]}
    assert (refusal(environ) is not None) is refused


# -- listing page ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "size, text",
    [(0, "0 B"), (1023, "1023 B"), (1024, "1.00 KiB"), (1536, "1.50 KiB"), (15 * 1024**2 + 1, "15.0 MiB"),
     (208 * 1024**2, "208 MiB"), (3 * 1024**4, "3.00 TiB")],
)
def test_human_size(size, text):
    assert human_size(size) == text


def test_utc_time_converts_offsets():
    moment = datetime(2024, 5, 1, 14, 0, 0, tzinfo=timezone.utc).astimezone()
    assert utc_time(moment) == "2024-05-01 14:00:00Z"
    assert utc_time(None) == ""


def test_links_are_relative_and_escaped():
    assert link_to("sub-01", True) == "sub-01/"
    assert link_to("a b#c?.nwb", False) == "a%20b%23c%3F.nwb"
    assert link_to("x:y.nwb", False) == "x%3Ay.nwb"  # never read as a URL scheme
    assert breadcrumbs("/") == '<a href="./">dandi</a> /'
    assert breadcrumbs("/dandisets/000001/") == (
        '<a href="../../">dandi</a> / <a href="../">dandisets</a> / <a href="./">000001</a> /'
    )


def test_metadata_links_leave_the_tree():
    entry = blob(dandiset_id="000001", version="draft")
    link = metadata_link("/dandisets/000001/draft/sub-01/", entry)
    assert link == '<a href="../../../../.metadata/dandisets/000001/draft/sub-01/a.nwb">metadata</a>'


def test_listing_page():
    folder = Entry("/dandisets/000001/draft/sub-01", EntryKind.FOLDER, size=3 * 1024**2, file_count=2)
    page = render_listing("/dandisets/000001/draft/", [blob(path="/dandisets/000001/draft/z.nwb"), folder])
    assert page.index('href="sub-01/"') < page.index('href="z.nwb"')  # folders first
    assert 'href="../"' in page
    assert "3.00 MiB" in page and ">2<" in page
    assert "1 folder, 1 file" in page


def test_plain_etag_and_content_type():
    assert plain_etag('"abc"') == "abc"
    assert plain_etag('W/"abc"') == "abc"
    assert plain_etag(None) is None
    assert content_type_of(blob()) == "application/x-nwb"
    assert content_type_of(blob(path="/x/dandiset.yaml")).startswith("text/yaml")
    assert content_type_of(blob(path="/x/zarr.json")) == "application/json"
    assert content_type_of(blob(path="/x/0/0")) == "application/octet-stream"


# -- conditional requests --------------------------------------------------------------

MODIFIED = 1_700_000_000.0  # Tue, 14 Nov 2023 22:13:20 GMT


@pytest.mark.parametrize(
    "headers, outcome",
    [
        ({}, None),
        ({"HTTP_IF_NONE_MATCH": '"abc-1"'}, 304),
        ({"HTTP_IF_NONE_MATCH": 'W/"abc-1", "x"'}, 304),
        ({"HTTP_IF_NONE_MATCH": "*"}, 304),
        ({"HTTP_IF_NONE_MATCH": '"other"'}, None),
        # If-None-Match wins over If-Modified-Since when both are sent (davfs2 sends both).
        ({"HTTP_IF_NONE_MATCH": '"other"', "HTTP_IF_MODIFIED_SINCE": "Tue, 14 Nov 2023 22:13:20 GMT"}, None),
        ({"HTTP_IF_MODIFIED_SINCE": "Tue, 14 Nov 2023 22:13:20 GMT"}, 304),  # equal: unchanged
        ({"HTTP_IF_MODIFIED_SINCE": "Tue, 14 Nov 2023 22:13:19 GMT"}, None),
        ({"HTTP_IF_MODIFIED_SINCE": "not a date"}, None),
        ({"HTTP_IF_MATCH": '"abc-1"'}, None),
        ({"HTTP_IF_MATCH": '"other"'}, 412),
        ({"HTTP_IF_UNMODIFIED_SINCE": "Tue, 14 Nov 2023 22:13:19 GMT"}, 412),
    ],
)
def test_conditional_requests(headers, outcome):
    assert evaluate(headers, "abc-1", MODIFIED) == outcome


# -- PROPFIND --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, mode, names",
    [
        (b"", "allprop", ()),
        (b"<?xml version='1.0'?><propfind xmlns='DAV:'><allprop/></propfind>", "allprop", ()),
        (b"<propfind xmlns='DAV:'><propname/></propfind>", "propname", ()),
        (
            b"<D:propfind xmlns:D='DAV:' xmlns:A='http://apache.org/dav/props/'><D:prop>"
            b"<D:getetag/><A:executable/></D:prop></D:propfind>",
            "prop",
            (("DAV:", "getetag"), ("http://apache.org/dav/props/", "executable")),
        ),
    ],
)
def test_propfind_request_parsing(body, mode, names):
    assert parse_request(body) == PropfindRequest(mode, names)


@pytest.mark.parametrize(
    "body",
    [b"<not xml", b"<other xmlns='DAV:'/>", b"<propfind xmlns='DAV:'><allprop/><propname/></propfind>",
     b"<!DOCTYPE x [<!ENTITY a 'aaaa'><!ENTITY b '&a;&a;'>]><propfind xmlns='DAV:'>&b;</propfind>"],
)
def test_bad_propfind_bodies(body):
    with pytest.raises(BadPropfind):
        parse_request(body)


def test_propfind_rendering():
    moment = datetime(2024, 5, 1, 14, 0, 0, 750000, tzinfo=timezone.utc)
    file = blob(mtime=moment, ctime=moment, path="/d/a b&c.nwb")
    folder = Entry("/d", EntryKind.FOLDER)
    request = parse_request(
        b"<propfind xmlns='DAV:' xmlns:A='urn:x'><prop><getetag/><getcontentlength/>"
        b"<getlastmodified/><creationdate/><resourcetype/><A:custom/></prop></propfind>"
    )
    text = propfind_render("", [("/d", folder), ("/d/a b&c.nwb", file)], request).decode()
    assert "<D:href>/d/</D:href>" in text
    assert "<D:href>/d/a%20b&amp;c.nwb</D:href>" in text
    assert f'<D:getetag>"{file.etag}"</D:getetag>' in text
    assert "<D:getcontentlength>10</D:getcontentlength>" in text
    assert "<D:getlastmodified>Wed, 01 May 2024 14:00:00 GMT</D:getlastmodified>" in text
    assert "<D:creationdate>2024-05-01T14:00:00Z</D:creationdate>" in text
    assert "<D:resourcetype><D:collection/></D:resourcetype>" in text
    assert 'xmlns:ns0="urn:x"' in text and "<ns0:custom/>" in text
    assert text.count("HTTP/1.1 404 Not Found") == 2  # the custom property, for each
    allprop = propfind_render("/mnt", [("/d/a b&c.nwb", file)], PropfindRequest("allprop")).decode()
    assert "<D:href>/mnt/d/a%20b&amp;c.nwb</D:href>" in allprop and "404" not in allprop


def test_immutable_entries_are_kept_per_caller():
    cache = ImmutableEntries(capacity=2)
    published = blob(immutable=True)
    draft = blob(immutable=False)
    cache.remember(None, "/p", published)
    cache.remember(None, "/d", draft)
    assert cache.get(None, "/p") is published
    assert cache.get(None, "/d") is None  # drafts change: always asked of the core
    assert cache.get("token", "/p") is None  # another caller's view is its own
    cache.remember("token", "/q", published)
    cache.remember("token", "/r", published)
    assert cache.get(None, "/p") is None  # bounded: the oldest went first


# -- writes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, writable",
    [
        ("/dandisets/000001/draft/a.nwb", True),
        ("/dandisets/000001/draft/sub/x.zarr/0/0", True),
        ("/dandisets/000001/draft/dandiset.yaml", False),
        ("/dandisets/000001/draft", False),
        ("/dandisets/000001/latest/a.nwb", False),
        ("/dandisets/000001/0.240101.1200/a.nwb", False),
        ("/dandisets/000001/releases/0.240101.1200/a.nwb", False),
        ("/dandisets/", False),
        ("/.metadata/dandisets/000001/draft/a.nwb", False),
    ],
)
def test_which_paths_may_be_written(path, writable):
    from dandifs.namespace.writable import read_only_reason

    reason = read_only_reason(path)
    assert (reason is None) == writable
    if not writable:
        assert path.rstrip("/") in reason or "/.metadata" in reason or "nothing is at" in reason


def test_class_2_is_for_drafts_only():
    from dandifs.namespace.writable import is_in_draft as in_draft

    assert in_draft("/dandisets/000001/draft/") and in_draft("/dandisets/000001/draft/a/b")
    assert not in_draft("/dandisets/000001/latest/") and not in_draft("/dandisets/000001/")
    assert not in_draft("/dandisets/000001/releases/0.240101.1200/")


def test_destination_and_times():
    from dandifs.webdav.writes import destination_path, mtime_from

    assert destination_path({"HTTP_DESTINATION": "http://h:1/dandisets/000001/draft/a%20b?q"}) == (
        "/dandisets/000001/draft/a b"
    )
    assert destination_path({"HTTP_DESTINATION": "/x/y"}) == "/x/y"
    assert destination_path({}) is None
    moment = datetime(2024, 1, 1, 10, 0, tzinfo=timezone.utc)
    assert mtime_from("Mon, 01 Jan 2024 10:00:00 GMT") == moment
    assert mtime_from(str(int(moment.timestamp()))) == moment
    assert mtime_from(int(moment.timestamp())) == moment
    with pytest.raises(Exception) as refused:
        mtime_from("yesterday")
    assert refused.value.value == 400


def test_upload_state_and_extra_properties_render():
    from dandifs.upload.state import Phase, UploadState
    from dandifs.webdav.propfind import DANDI, validation_element

    pending = blob(upload=UploadState(Phase.UPLOADING, parts_done=3, parts_total=16), etag=None)
    allprop = propfind_render("", [(pending.path, pending)], PropfindRequest("allprop")).decode()
    assert "<dandi:upload>uploading 3/16 parts</dandi:upload>" in allprop
    assert f'xmlns:dandi="{DANDI}"' in allprop
    dead = {("urn:x", "colour"): '<z:colour xmlns:z="urn:x">blue</z:colour>'}
    asked = PropfindRequest("prop", ((DANDI, "validation"), ("urn:x", "colour"), ("urn:x", "size")))
    extras = {pending.path: {**dead, **validation_element(["path: bad & wrong"])}}
    text = propfind_render("", [(pending.path, pending)], asked, extras).decode()
    assert "<dandi:error>path: bad &amp; wrong</dandi:error>" in text
    assert '<z:colour xmlns:z="urn:x">blue</z:colour>' in text
    assert "<ns0:size/>" in text and text.count("404 Not Found") == 1
    names = propfind_render("", [(pending.path, pending)], PropfindRequest("propname"), {pending.path: dead}).decode()
    assert "<dandi:upload/>" in names and '<x:colour xmlns:x="urn:x"/>' in names
