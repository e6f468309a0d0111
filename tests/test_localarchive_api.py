"""The local archive's REST API: error matrix, pagination, folder aggregates, digests, flows.

Each module gets a fresh archive (its own SQLite) whose bytes live in the session archive's
real S3, so uploads, zarr ingestion and downloads go through SeaweedFS.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from dandischema.digests.dandietag import DandiETag, PartGenerator
from starlette.testclient import TestClient
from zarr_checksum import compute_zarr_checksum
from zarr_checksum.checksum import ZarrChecksum, ZarrChecksumManifest
from zarr_checksum.generators import ZarrArchiveFile

from dandifs.localarchive.digests import file_digests
from dandifs.localarchive.seed import seed
from dandifs.localarchive.services.assets import NewAsset, add_assets_bulk
from dandifs.localarchive.services.access import draft_of
from dandifs.localarchive.spec import DemoAsset, DemoData, DemoDandiset
from localarchive_app import (
    ADMIN,
    BAD,
    OTHER,
    OWNER,
    add_asset,
    create_dandiset,
    sql_statements,
    start_app,
    upload_blob,
    upload_zarr,
    wait_valid,
)

GiB = 1024**3
MiB = 1024**2


@pytest.fixture(scope="module")
def client(local_archive, tmp_path_factory) -> Iterator[TestClient]:
    yield from start_app(local_archive, tmp_path_factory.mktemp("api-archive"))


@pytest.fixture(scope="module")
def world(client: TestClient) -> dict[str, str]:
    """A dandiset with one blob asset in a folder, and one published dandiset."""
    dandiset = create_dandiset(client, "Error matrix")
    blob = upload_blob(client, dandiset, b"matrix contents")
    asset = add_asset(client, dandiset, "sub-1/file.nwb", blob_id=blob).json()
    published = create_dandiset(client, "Published one")
    pub_blob = upload_blob(client, published, b"published contents")
    pub_asset = add_asset(client, published, "sub-2/data.nwb", blob_id=pub_blob).json()
    wait_valid(client, published)
    assert client.post(f"/api/dandisets/{published}/versions/draft/publish/",
                       headers=OWNER).status_code == 202
    version = client.get(f"/api/dandisets/{published}/").json()[
        "most_recent_published_version"]["version"]
    return {"dandiset": dandiset, "blob": blob, "asset": asset["asset_id"],
            "published": published, "version": version, "pub_asset": pub_asset["asset_id"]}


def body(response: httpx.Response):
    return response.json() if response.content else None


# --- error matrix ----------------------------------------------------------------------------

CHALLENGE = 'Bearer realm="api"'


def test_wrong_token_is_401_even_on_reads(client, world) -> None:
    for url in ("/api/dandisets/", f"/api/dandisets/{world['dandiset']}/"):
        response = client.get(url, headers=BAD)
        assert response.status_code == 401
        assert response.json() == {"detail": "Invalid token."}
        assert response.headers["WWW-Authenticate"] == CHALLENGE
    response = client.get("/api/dandisets/", headers={"Authorization": "token"})
    assert response.json() == {"detail": "Invalid token header. No credentials provided."}
    response = client.get("/api/dandisets/", headers={"Authorization": "token a b"})
    assert response.json() == {
        "detail": "Invalid token header. Token string should not contain spaces."}


def test_anonymous_writes_are_401_before_405(client) -> None:
    response = client.post("/api/dandisets/", json={"name": "x", "metadata": {}})
    assert (response.status_code, response.json()) == (
        401, {"detail": "Authentication credentials were not provided."})
    assert response.headers["WWW-Authenticate"] == CHALLENGE
    assert client.delete("/api/info/").status_code == 401
    response = client.delete("/api/info/", headers=OWNER)
    assert (response.status_code, response.json()) == (
        405, {"detail": 'Method "DELETE" not allowed.'})


def test_unknown_ids_are_404(client, world) -> None:
    not_found = {"detail": "Not found."}
    for url in ("/api/dandisets/999999/", "/api/dandisets/999999/versions/",
                f"/api/dandisets/{world['dandiset']}/versions/0.999999.9999/",
                f"/api/dandisets/{world['dandiset']}/versions/draft/assets/{uuid.uuid4()}/",
                f"/api/assets/{uuid.uuid4()}/", f"/api/zarr/{uuid.uuid4()}/"):
        response = client.get(url)
        assert (response.status_code, response.json()) == (404, not_found), url
    for url in ("/api/dandisets/abc/", "/api/dandisets/12345/", "/api/nope/", "/server-info",
                "/api/assets/00000000-0000-0000-0000-000000000000/"):
        response = client.get(url)
        assert response.status_code == 404, url
        assert response.headers["content-type"].startswith("text/html"), url
        assert "<h1>Not Found</h1>" in response.text


def test_writes_to_a_published_version_are_405(client, world) -> None:
    base = f"/api/dandisets/{world['published']}/versions/{world['version']}"
    response = add_asset(client, world["published"], "new.nwb", blob_id=world["blob"],
                         version=world["version"])
    assert (response.status_code, response.json()) == (405, "Only draft versions can be modified.")
    response = client.put(f"{base}/", headers=OWNER, json={"name": "n", "metadata": {}})
    assert (response.status_code, response.json()) == (405, "Only draft versions can be modified.")
    response = client.delete(f"{base}/assets/{world['pub_asset']}/", headers=OWNER)
    assert (response.status_code, response.json()) == (405, "Only draft versions can be modified.")
    response = client.post(f"{base}/publish/", headers=OWNER)
    assert (response.status_code, response.json()) == (405, "Only draft versions can be published")


def test_duplicate_and_conflicting_paths_are_409(client, world) -> None:
    response = add_asset(client, world["dandiset"], "sub-1/file.nwb", blob_id=world["blob"])
    assert (response.status_code, response.json()) == (
        409, "An asset with that path already exists")
    response = add_asset(client, world["dandiset"], "sub-1/file.nwb/inner.nwb",
                         blob_id=world["blob"])
    assert response.status_code == 409
    assert response.json() == ('Path of new asset "sub-1/file.nwb/inner.nwb" conflicts with '
                               "existing assets: ['sub-1/file.nwb']")
    response = add_asset(client, world["dandiset"], "sub-1", blob_id=world["blob"])
    assert response.status_code == 409


def test_paths_over_512_characters_are_refused_when_saved(client, world) -> None:
    """The reference checks the length in the model, after the syntax and conflict checks:
    a bare-string 400, and a refused rename leaves the asset where it was."""
    url = f"/api/dandisets/{world['dandiset']}/versions/draft/assets/"
    long_path = "long/" + "a" * 504 + ".nwb"
    assert len(long_path) == 513
    accepted = add_asset(client, world["dandiset"], long_path[1:], blob_id=world["blob"])
    assert accepted.status_code == 200, accepted.text
    client.delete(f"{url}{accepted.json()['asset_id']}/", headers=OWNER)
    response = add_asset(client, world["dandiset"], long_path, blob_id=world["blob"])
    assert (response.status_code, response.json()) == (
        400, "Ensure this value has at most 512 characters (it has 513).")
    response = add_asset(client, world["dandiset"], "sub-1/file.nwb/" + "a" * 600,
                         blob_id=world["blob"])
    assert response.status_code == 409  # the layout conflict is found first
    response = client.put(f"{url}{world['asset']}/", headers=OWNER, json={
        "metadata": {"path": long_path}, "blob_id": world["blob"]})
    assert (response.status_code, response.json()) == (
        400, "Ensure this value has at most 512 characters (it has 513).")
    assert client.get(f"{url}{world['asset']}/").status_code == 200
    listed = client.get(url, params={"path": "sub-1/file.nwb"}).json()["results"]
    assert [item["asset_id"] for item in listed] == [world["asset"]]


def test_malformed_bodies_are_400(client, world) -> None:
    url = f"/api/dandisets/{world['dandiset']}/versions/draft/assets/"
    response = client.post(url, headers={**OWNER, "Content-Type": "application/json"},
                           content=b'{"metadata": ')
    assert response.status_code == 400
    assert response.json() == {
        "detail": "JSON parse error - Expecting value: line 1 column 14 (char 13)"}
    response = client.post(url, headers=OWNER, json={"metadata": {"path": "a.nwb"}})
    assert response.json() == {"blob_id": ["Exactly one of blob_id or zarr_id must be specified."]}
    response = client.post(url, headers=OWNER, json={"metadata": {}, "blob_id": world["blob"]})
    assert response.json() == {"metadata": ["No path specified in metadata."]}
    for path, text in (("/abs.nwb", "Path must not begin with /"),
                       ("a/../b", "Path improperly formatted"),
                       ("a//b", "Path improperly formatted"),
                       ("what?.nwb", "Path improperly formatted")):
        response = client.post(url, headers=OWNER, json={"metadata": {"path": path},
                                                         "blob_id": world["blob"]})
        assert (response.status_code, response.json()) == (400, {"non_field_errors": [text]}), path
    response = client.post("/api/uploads/initialize/", headers=OWNER, json={
        "contentSize": 0, "digest": {"algorithm": "dandi:dandi-etag", "value": "x-1"},
        "dandiset": world["dandiset"]})
    assert response.json() == {"contentSize": ["Ensure this value is greater than or equal to 1."]}
    response = client.get("/api/dandisets/?draft=maybe")
    assert (response.status_code, response.json()) == (400, {"draft": ["Must be a valid boolean."]})


def test_non_owners_get_the_reference_403_bodies(client, world) -> None:
    url = f"/api/dandisets/{world['dandiset']}/versions/draft/assets/"
    response = add_asset(client, world["dandiset"], "x.nwb", blob_id=world["blob"], headers=OTHER)
    assert (response.status_code, response.content) == (403, b"")
    assert response.headers["content-type"].startswith("text/html")
    response = client.delete(f"{url}{world['asset']}/", headers=OTHER)
    assert (response.status_code, response.content) == (403, b"")
    response = client.delete(f"/api/dandisets/{world['dandiset']}/", headers=OTHER)
    assert response.json() == "Cannot delete dandisets which you do not own."
    response = client.post("/api/uploads/initialize/", headers=OTHER, json={
        "contentSize": 3, "digest": {"algorithm": "dandi:dandi-etag", "value": "x-1"},
        "dandiset": world["dandiset"]})
    assert (response.status_code, response.json()) == (403, "Action not allowed")
    response = client.post("/api/zarr/", headers=OTHER,
                           json={"name": "z.zarr", "dandiset": world["dandiset"]})
    assert response.json() == {"detail": "You do not have permission to perform this action."}


def test_missing_trailing_slash_is_a_relative_301(client) -> None:
    response = client.get("/api/dandisets?page_size=1", follow_redirects=False)
    assert response.status_code == 301
    assert response.headers["Location"] == "/api/dandisets/?page_size=1"
    response = client.get("/api/auth/token", headers=OWNER, follow_redirects=False)
    assert (response.status_code, response.headers["Location"]) == (301, "/api/auth/token/")
    assert client.get("/api/auth/token/", headers=OWNER).json() == OWNER["Authorization"][6:]


def test_info_advertises_its_own_urls(client) -> None:
    info = client.get("/api/info/").json()
    assert info["services"]["api"]["url"] == "http://testserver/api"
    assert info["cli-bad-versions"] == []
    from dandi import __version__ as cli_version
    from packaging.version import Version

    assert Version(info["cli-minimal-version"]) <= Version(cli_version)
    from dandischema.consts import DANDI_SCHEMA_VERSION

    assert info["schema_version"] == DANDI_SCHEMA_VERSION


# --- pagination ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def many(client: TestClient, world) -> dict[str, str]:
    """A dandiset with 1,005 assets (one shared blob) in two folders, added in bulk."""
    ctx = client.app.state.archive
    dandiset = create_dandiset(client, "Many assets")
    blob_id = upload_blob(client, dandiset, b"0123456789")
    blob = ctx.db.one("SELECT id FROM blobs WHERE blob_id = ?", (blob_id,))
    draft = draft_of(ctx, int(dandiset))
    items = [NewAsset(f"many/f{i:05d}.dat", {"schemaKey": "Asset"}, blob["id"], None)
             for i in range(1000)]
    items += [NewAsset(f"few/g{i}.dat", {"schemaKey": "Asset"}, blob["id"], None)
              for i in range(5)]
    add_assets_bulk(ctx, draft["id"], items)
    return {"dandiset": dandiset}


def test_lazy_asset_pagination(client, many) -> None:
    url = f"/api/dandisets/{many['dandiset']}/versions/draft/assets/"
    first = client.get(url, params={"page_size": 400, "order": "path"}).json()
    assert first["count"] == 1005 and len(first["results"]) == 400
    assert first["previous"] is None
    assert parse_qs(urlsplit(first["next"]).query) == {
        "order": ["path"], "page": ["2"], "page_size": ["400"]}
    assert first["next"].startswith("http://testserver/api/dandisets/")
    second = client.get(first["next"]).json()
    assert second["count"] is None and len(second["results"]) == 400
    third = client.get(second["next"]).json()
    assert len(third["results"]) == 205 and third["next"] is None
    assert third["previous"].endswith("page=2&page_size=400")
    beyond = client.get(url, params={"page": 9, "page_size": 400}).json()
    assert beyond == {"count": None, "next": None,
                      "previous": f"http://testserver{url}?page=8&page_size=400", "results": []}
    assert client.get(url, params={"page": 0}).json() == {"detail": "Invalid page."}
    assert len(client.get(url, params={"page_size": 5000}).json()["results"]) == 1000
    assert len(client.get(url, params={"page_size": 0}).json()["results"]) == 100
    paths = [r["path"] for r in first["results"] + second["results"] + third["results"]]
    assert paths == sorted(paths)


def test_asset_filters(client, many) -> None:
    url = f"/api/dandisets/{many['dandiset']}/versions/draft/assets/"
    assert client.get(url, params={"path": "FEW/"}).json()["count"] == 5  # case-insensitive
    exact = client.get(url, params={"path": "many/f00001.dat"}).json()
    assert [r["path"] for r in exact["results"]] == ["many/f00001.dat"]
    assert client.get(url, params={"glob": "*g?.dat"}).json()["count"] == 0  # ? is literal
    assert client.get(url, params={"glob": "few/*"}).json()["count"] == 5
    assert client.get(url, params={"order": "size"}).json() == {
        "order": ["Select a valid choice. size is not one of the available choices."]}


def test_standard_pagination_of_dandisets(client, many) -> None:
    first = client.get("/api/dandisets/", params={"page_size": 1}).json()
    assert first["count"] >= 3 and first["next"].endswith("?page=2&page_size=1")
    second = client.get(first["next"]).json()
    assert second["count"] == first["count"]
    assert second["previous"] == "http://testserver/api/dandisets/?page_size=1"
    assert client.get("/api/dandisets/", params={"page": 99}).json() == {"detail": "Invalid page."}


def test_listing_1000_per_page_takes_a_few_queries_not_one_per_asset(client, many) -> None:
    url = f"/api/dandisets/{many['dandiset']}/versions/draft/assets/"
    with sql_statements(client) as listing:
        page = client.get(url, params={"page_size": 1000, "path": "many/"}).json()
    assert len(page["results"]) == 1000
    with sql_statements(client) as folder:
        paths = client.get(url + "paths/", params={"path_prefix": "many", "page_size": 1000})
    assert paths.json()["count"] == 1000
    assert len(listing) <= 10 and len(folder) <= 10


# --- folder listing --------------------------------------------------------------------------


def test_folder_listing_aggregates(client, many) -> None:
    url = f"/api/dandisets/{many['dandiset']}/versions/draft/assets/paths/"
    root = client.get(url).json()
    assert root["count"] == 2
    assert [(r["path"], r["aggregate_files"], r["aggregate_size"], r["asset"])
            for r in root["results"]] == [("few", 5, 50, None), ("many", 1000, 10000, None)]
    few = client.get(url, params={"path_prefix": "few/"}).json()["results"]
    assert [r["path"] for r in few] == [f"few/g{i}.dat" for i in range(5)]
    assert all(r["aggregate_files"] == 1 and r["aggregate_size"] == 10 for r in few)
    assert set(few[0]["asset"]) == {"asset_id", "url"}
    assert "/blobs/" in few[0]["asset"]["url"]
    assert client.get(url, params={"path_prefix": "few/g0.dat"}).json()["count"] == 0
    missing = client.get(url, params={"path_prefix": "nope"})
    assert (missing.status_code, missing.json()) == (404, {"detail": "Specified path not found."})
    info = client.get(f"/api/dandisets/{many['dandiset']}/").json()["draft_version"]
    assert (info["asset_count"], info["size"]) == (1005, 10050)


# --- digests ---------------------------------------------------------------------------------

PART_TABLE = [
    (1, 1, 1, 1),
    (5 * MiB, 1, 5 * MiB, 5 * MiB),
    (64 * MiB, 1, 64 * MiB, 64 * MiB),
    (64 * MiB + 1, 2, 64 * MiB, 1),
    (100 * MiB, 2, 64 * MiB, 37_748_736),
    (GiB, 16, 64 * MiB, 64 * MiB),
    (10 * GiB, 160, 64 * MiB, 64 * MiB),
    (100 * GiB, 1600, 64 * MiB, 64 * MiB),
    (9_999 * 64 * MiB, 9_999, 64 * MiB, 64 * MiB),
    (9_999 * 64 * MiB + 1, 10_000, 67_102_154, 67_093_291),
    (10_000 * 64 * MiB, 10_000, 64 * MiB, 64 * MiB),
    (1024 * GiB, 10_000, 109_951_163, 109_948_939),
    (5 * 1024 * GiB, 10_000, 549_755_814, 549_754_694),
]


@pytest.mark.parametrize(("size", "count", "first", "last"), PART_TABLE)
def test_dandi_etag_part_layout(size: int, count: int, first: int, last: int) -> None:
    parts = PartGenerator.for_file_size(size)
    assert (len(parts), parts[1].size, parts[len(parts)].size) == (count, first, last)


def test_dandi_etag_vector(tmp_path: Path) -> None:
    (tmp_path / "abc").write_bytes(b"abc")
    assert file_digests(tmp_path / "abc").etag == "af5da9f45af7a300e3aded972f8ff687-1"
    etag = DandiETag(3)
    etag.update(b"abc")
    assert etag.as_str() == "af5da9f45af7a300e3aded972f8ff687-1"


def test_zarr_checksum_vectors() -> None:
    files = [ZarrArchiveFile(path=Path(".zgroup"), size=2, digest=hashlib.md5(b"{}").hexdigest()),
             ZarrArchiveFile(path=Path("arr/0"), size=3, digest=hashlib.md5(b"abc").hexdigest())]
    assert str(compute_zarr_checksum(files)) == "31e2b5624190c25908ac8758f6d3ec22-2--5"
    assert str(compute_zarr_checksum([])) == "481a2f77ab786a0f45aafd5db0971caa-0--0"
    manifest = ZarrChecksumManifest(
        directories=[ZarrChecksum(digest="a7e86136543b019d72468ceebf71fb8e-1--1", name="a/b",
                                  size=1)],
        files=[ZarrChecksum(digest="92eb5ffee6ae2fec3ad71c777531578f-1--1", name="b", size=1)],
    )
    assert str(manifest.generate_digest()) == "2ed39fd5ae56fd4177c4eb503d163528-2--2"


def test_archive_reports_blob_and_zarr_digests(client, world) -> None:
    dandiset = create_dandiset(client, "Digests")
    blob_id = upload_blob(client, dandiset, b"abc")
    zarr_id = upload_zarr(client, dandiset, "z.zarr", {".zgroup": b"{}", "arr/0": b"abc"})
    zarr = client.get(f"/api/zarr/{zarr_id}/").json()
    assert (zarr["checksum"], zarr["file_count"], zarr["size"]) == (
        "31e2b5624190c25908ac8758f6d3ec22-2--5", 2, 5)
    asset = add_asset(client, dandiset, "z.zarr", zarr_id=zarr_id).json()
    assert asset["metadata"]["digest"] == {
        "dandi:dandi-zarr-checksum": "31e2b5624190c25908ac8758f6d3ec22-2--5"}
    assert asset["metadata"]["encodingFormat"] == "application/x-zarr"
    blob = client.post("/api/blobs/digest/", json={"algorithm": "dandi:dandi-etag",
                                                    "value": "af5da9f45af7a300e3aded972f8ff687-1"})
    assert blob.json()["blob_id"] == blob_id
    sha = hashlib.sha256(b"abc").hexdigest()

    def sha_known() -> bool:
        return client.post("/api/blobs/digest/", json={"algorithm": "dandi:sha2-256",
                                                        "value": sha}).status_code == 200

    from localarchive_app import wait_for

    wait_for(sha_known)
    files = client.get(f"/api/zarr/{zarr_id}/files/").json()
    assert [(f["Key"], f["ETag"], f["Size"]) for f in files["results"]] == [
        (".zgroup", hashlib.md5(b"{}").hexdigest(), 2),
        ("arr/0", hashlib.md5(b"abc").hexdigest(), 3),
    ]


# --- flows -----------------------------------------------------------------------------------


def test_existing_blob_initialize_is_409_with_location(client, world) -> None:
    response = client.post("/api/uploads/initialize/", headers=OWNER, json={
        "contentSize": 15, "digest": {"algorithm": "dandi:dandi-etag",
                                      "value": client.post("/api/blobs/digest/", json={
                                          "algorithm": "dandi:sha2-256", "value": "0" * 64})
                                      .status_code and _etag(b"matrix contents")},
        "dandiset": world["dandiset"]})
    assert (response.status_code, response.json()) == (409, "Blob already exists.")
    assert response.headers["Location"] == world["blob"]


def _etag(data: bytes) -> str:
    etag = DandiETag(len(data))
    etag.update(data)
    return etag.as_str()


def test_download_redirects_to_presigned_s3(client, world) -> None:
    response = client.get(f"/api/assets/{world['asset']}/download/", follow_redirects=False)
    assert response.status_code == 302
    location = response.headers["Location"]
    assert "response-content-disposition=attachment" in location and "file.nwb" in location
    assert httpx.get(location, timeout=30).content == b"matrix contents"
    assert client.head(f"/api/assets/{world['asset']}/download/",
                       follow_redirects=False).status_code == 302


def test_rename_gives_a_new_asset_id_and_the_old_one_still_resolves(client, world) -> None:
    dandiset = world["dandiset"]
    old = add_asset(client, dandiset, "rename/me.nwb", blob_id=world["blob"]).json()
    url = f"/api/dandisets/{dandiset}/versions/draft/assets/{old['asset_id']}/"
    same = client.put(url, headers=OWNER, json={"metadata": old["metadata"],
                                                "blob_id": world["blob"]}).json()
    assert same["asset_id"] == old["asset_id"]
    moved = client.put(url, headers=OWNER, json={
        "metadata": {**old["metadata"], "path": "rename/moved.nwb"}, "blob_id": world["blob"]})
    assert moved.status_code == 200
    assert moved.json()["asset_id"] != old["asset_id"]
    assert moved.json()["path"] == "rename/moved.nwb"
    assert client.get(f"/api/assets/{old['asset_id']}/").json()["path"] == "rename/me.nwb"
    clash = client.put(f"/api/dandisets/{dandiset}/versions/draft/assets/"
                       f"{moved.json()['asset_id']}/", headers=OWNER,
                       json={"metadata": {"path": "sub-1/file.nwb"}, "blob_id": world["blob"]})
    assert (clash.status_code, clash.json()) == (409, "An asset with that path already exists")


def test_publish_lifecycle(client, world) -> None:
    dandiset = world["published"]
    info = client.get(f"/api/dandisets/{dandiset}/versions/draft/info/").json()
    assert info["status"] == "Published"
    again = client.post(f"/api/dandisets/{dandiset}/versions/draft/publish/", headers=OWNER)
    assert (again.status_code, again.json()) == (
        400, "There have been no changes to the draft version since the last publish.")
    versions = client.get(f"/api/dandisets/{dandiset}/versions/", params={"order": "-created"})
    assert [v["version"] for v in versions.json()["results"]] == [world["version"], "draft"]
    metadata = client.get(f"/api/dandisets/{dandiset}/versions/{world['version']}/").json()
    assert metadata["version"] == world["version"]
    assert metadata["assetsSummary"]["numberOfFiles"] == 1
    assert {"publishedBy", "datePublished", "doi", "citation"} <= metadata.keys()
    asset = client.get(f"/api/assets/{world['pub_asset']}/").json()
    assert {"publishedBy", "datePublished"} <= asset.keys()
    assert asset["digest"]["dandi:sha2-256"] == hashlib.sha256(b"published contents").hexdigest()
    delete = client.delete(f"/api/dandisets/{dandiset}/", headers=OWNER)
    assert (delete.status_code, delete.json()) == (
        403, "Cannot delete dandisets with published versions.")


def test_publish_refusals(client, world) -> None:
    empty = create_dandiset(client, "Empty")
    wait_valid_or_invalid(client, empty)
    response = client.post(f"/api/dandisets/{empty}/versions/draft/publish/", headers=OWNER)
    assert (response.status_code, response.json()) == (
        400, "Dandiset metadata or asset metadata is not valid")
    response = client.post(f"/api/dandisets/{empty}/versions/draft/publish/", headers=OTHER)
    assert (response.status_code, response.content) == (403, b"")


def wait_valid_or_invalid(client: TestClient, dandiset: str) -> None:
    from localarchive_app import wait_for

    wait_for(lambda: client.get(f"/api/dandisets/{dandiset}/versions/draft/info/").json()[
        "status"] in ("Valid", "Invalid"))


def test_embargoed_dandisets_are_hidden(client) -> None:
    response = client.post("/api/dandisets/?embargo=true", headers=OWNER,
                           json={"name": "Secret", "metadata": {"description": "s"}})
    assert response.json()["embargo_status"] == "EMBARGOED"
    secret = response.json()["identifier"]
    assert client.get(f"/api/dandisets/{secret}/").status_code == 401
    assert client.get(f"/api/dandisets/{secret}/", headers=OTHER).status_code == 403
    assert client.get(f"/api/dandisets/{secret}/", headers=OWNER).status_code == 200
    listed = {d["identifier"] for d in client.get("/api/dandisets/", headers=OWNER)
              .json()["results"]}
    assert secret not in listed
    listed = {d["identifier"] for d in client.get("/api/dandisets/?embargoed=true",
                                                  headers=OWNER).json()["results"]}
    assert secret in listed
    assert client.get("/api/dandisets/?embargoed=true").json() == (
        "Authentication credentials must be provided when attempting to access embargoed "
        "dandisets")
    metadata = client.get(f"/api/dandisets/{secret}/versions/draft/", headers=OWNER).json()
    assert metadata["access"][0]["status"] == "dandi:EmbargoedAccess"
    assert client.get(f"/api/dandisets/{secret}/", headers=ADMIN).status_code == 200


# --- seeding ---------------------------------------------------------------------------------


def test_seeding_10000_assets_is_fast_and_shares_one_blob(local_archive, tmp_path) -> None:
    sources = tmp_path / "src"
    sources.mkdir()
    for i in range(10_000):
        (sources / f"file-{i:05d}.dat").write_bytes(b"the same kilobyte " * 57)
    demo = DemoData(dandisets=(DemoDandiset(
        identifier="000042", name="Bulk", description="Ten thousand files",
        draft=tuple(DemoAsset(f"bulk/file-{i:05d}.dat", sources / f"file-{i:05d}.dat")
                    for i in range(10_000)),
        extra_metadata={"contributor": [{"schemaKey": "Person", "name": "Bulk, Bo",
                                         "email": "bo@example.com",
                                         "roleName": ["dcite:ContactPerson"]}]},
    ),))
    for app_client in start_app(local_archive, tmp_path / "state"):
        with sql_statements(app_client) as seeding:
            seed(app_client.app, demo)
        ctx = app_client.app.state.archive
        assert ctx.db.scalar("SELECT COUNT(*) FROM blobs") == 1
        info = app_client.get("/api/dandisets/000042/versions/draft/info/").json()
        assert info["asset_count"] == 10_000
        assert info["status"] == "Valid", info["version_validation_errors"]
        with sql_statements(app_client) as listing:
            page = app_client.get("/api/dandisets/000042/versions/draft/assets/paths/",
                                  params={"path_prefix": "bulk", "page_size": 1000, "page": 10})
        assert len(page.json()["results"]) == 1000
        transactions = seeding.count("BEGIN IMMEDIATE")
        print(f"seeding 10,000 assets: {len(seeding)} statements in {transactions} "
              f"transactions; a folder page of 1000: {len(listing)} statements")
        assert transactions <= 10  # in bulk, not one commit per asset
        assert len(seeding) <= 5 * 10_000  # a few statements per asset, whatever the count
        assert len(listing) <= 10


def test_embargoed_demo_blobs_are_served_only_through_the_api(local_archive) -> None:
    """On the seeded archive: S3 refuses the public URL, the API redirects owners."""
    api = local_archive.api_url
    owner = {"Authorization": f"token {local_archive.token}"}
    assert httpx.get(f"{api}/dandisets/000003/", timeout=30).status_code == 401
    listing = httpx.get(f"{api}/dandisets/000003/versions/draft/assets/", headers=owner,
                        timeout=30).json()
    asset = listing["results"][0]
    metadata = httpx.get(f"{api}/assets/{asset['asset_id']}/", headers=owner, timeout=30).json()
    assert metadata["access"][0]["status"] == "dandi:EmbargoedAccess"
    assert httpx.get(metadata["contentUrl"][1], timeout=30).status_code == 403
    download = f"{api}/assets/{asset['asset_id']}/download/"
    assert httpx.get(download, timeout=30).status_code == 401
    redirect = httpx.get(download, headers=owner, timeout=30)
    assert redirect.status_code == 302
    data = httpx.get(redirect.headers["Location"], timeout=30)
    assert data.status_code == 200 and len(data.content) == asset["size"]


def test_unembargo_opens_data_and_owners_can_be_replaced(client) -> None:
    response = client.post("/api/dandisets/?embargo=true", headers=OWNER,
                           json={"name": "Soon open", "metadata": {"description": "s"}})
    dandiset = response.json()["identifier"]
    blob = upload_blob(client, dandiset, b"embargoed bytes for unembargo")
    asset = add_asset(client, dandiset, "a/b.nwb", blob_id=blob).json()
    key = f"blobs/{blob[:3]}/{blob[3:6]}/{blob}"
    store = client.app.state.archive.store
    assert store.is_private(key)
    assert client.get(f"/api/assets/{asset['asset_id']}/", headers=OTHER).status_code == 403
    assert client.post(f"/api/dandisets/{dandiset}/unembargo/", headers=OTHER).status_code == 403
    response = client.post(f"/api/dandisets/{dandiset}/unembargo/", headers=OWNER)
    assert (response.status_code, response.json()) == (200, None)
    assert not store.is_private(key)
    assert client.get(f"/api/dandisets/{dandiset}/").json()["embargo_status"] == "OPEN"
    metadata = client.get(f"/api/assets/{asset['asset_id']}/").json()
    assert metadata["access"] == [{"schemaKey": "AccessRequirements",
                                   "status": "dandi:OpenAccess"}]
    again = client.post(f"/api/dandisets/{dandiset}/unembargo/", headers=OWNER)
    assert (again.status_code, again.json()) == (400, "Dandiset not embargoed")

    url = f"/api/dandisets/{dandiset}/users/"
    assert client.put(url, headers=OTHER, json=[{"username": "other@example.com"}]).json() == (
        "Action not allowed")
    assert client.put(url, headers=OWNER, json=[]).json() == ["Cannot remove all draft owners"]
    assert client.put(url, headers=OWNER, json=[{"username": "nobody"}]).json() == [
        "User nobody not found"]
    owners = client.put(url, headers=OWNER, json=[{"username": "owner@example.com"},
                                                  {"username": "other@example.com"}]).json()
    assert [o["username"] for o in owners] == ["owner@example.com", "other@example.com"]
    assert add_asset(client, dandiset, "c.nwb", blob_id=blob, headers=OTHER).status_code == 200
