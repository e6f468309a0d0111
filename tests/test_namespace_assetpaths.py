"""The archive's asset path rules as dandifs checks them before any upload.

The examples are those of dandi-api.md §6.3; each one is also sent to the local archive,
whose answers are checked against the real archive's recordings, and a property test
compares the two checks on paths built from the characters that matter.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from localarchive_app import OWNER, add_asset, create_dandiset, start_app, upload_blob
from starlette.testclient import TestClient

from dandifs.errors import NameRefused
from dandifs.localarchive.problems import ApiError
from dandifs.localarchive.services.assets import check_path
from dandifs.namespace.assetpaths import MAX_ASSET_PATH_CHARS, check_asset_path

ACCEPTED = [
    "sub-01/sub-01_ses-1_behavior+ecephys.nwb",
    "foo.tar.gz",
    ".hidden",
    "dir/.x",
    "space-Unified mouse brain atlas (Kim lab)/a,b&c#d~e=f.tsv",
    "odd[1]^`\\_.txt",
    "tab\tand\u3000ideographic space.txt",  # the archive's whitespace is Unicode's
    "x" * MAX_ASSET_PATH_CHARS,
    "a/" * 255 + "bc",
]

REFUSED = [
    ("", "empty"),
    ("/sub-01/x.nwb", "must not begin with '/'"),
    ("sub-01/", "must not end with '/'"),
    ("a//b", "empty"),
    (".", "'.' cannot be"),
    ("..", "'..' cannot be"),
    ("./a", "'.' cannot be"),
    ("a/./b", "'.' cannot be"),
    ("a/../b", "'..' cannot be"),
    ("a..b", "two dots"),
    ("a.", "ends with '.'"),
    ("sub-01./x", "ends with '.'"),
    ("a:b.nwb", "':' (U+003A)"),
    ("what?.nwb", "'?' (U+003F)"),
    ("caf\u00e9.nwb", "U+00E9"),
    ("nul\x00.nwb", "U+0000"),
    ("bell\x07.nwb", "U+0007"),
    ("del\x7f.nwb", "U+007F"),
    ("x" * (MAX_ASSET_PATH_CHARS + 1), "513 characters"),
]


@pytest.mark.parametrize("path", ACCEPTED, ids=repr)
def test_accepted(path: str) -> None:
    check_asset_path(path)


@pytest.mark.parametrize("path, says", REFUSED, ids=lambda v: repr(v)[:40])
def test_refused_with_a_reason(path: str, says: str) -> None:
    with pytest.raises(NameRefused) as refused:
        check_asset_path(path)
    assert says in str(refused.value)


def local_archive_accepts(path: str) -> bool:
    try:
        check_path(path)
    except ApiError:
        return False
    return True


@settings(max_examples=2000, deadline=None)
@given(st.text(alphabet="a./ \t\x00\x85@\u00e9\\-", max_size=12))
def test_the_same_rule_as_the_local_archive(path: str) -> None:
    try:
        check_asset_path(path)
    except NameRefused:
        accepted = False
    else:
        accepted = True
    assert accepted == local_archive_accepts(path)


@pytest.fixture(scope="module")
def archive(local_archive, tmp_path_factory) -> Iterator[tuple[TestClient, str, str]]:
    for client in start_app(local_archive, tmp_path_factory.mktemp("paths-archive")):
        dandiset = create_dandiset(client, "Asset path rules")
        yield client, dandiset, upload_blob(client, dandiset, b"path rules")


@pytest.mark.parametrize("path", ACCEPTED, ids=repr)
def test_the_archive_takes_an_accepted_path(archive, path: str) -> None:
    client, dandiset, blob = archive
    response = add_asset(client, dandiset, path, blob_id=blob)
    assert response.status_code == 200, response.text
    client.delete(f"/api/dandisets/{dandiset}/versions/draft/assets/"
                  f"{response.json()['asset_id']}/", headers=OWNER)


@pytest.mark.parametrize("path, says", REFUSED, ids=lambda v: repr(v)[:40])
def test_the_archive_refuses_a_refused_path(archive, path: str, says: str) -> None:
    client, dandiset, blob = archive
    response = add_asset(client, dandiset, path, blob_id=blob)
    assert response.status_code == 400, response.text
