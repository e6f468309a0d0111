"""The local archive answers like the real DANDI Archive did in the recordings.

`reference/real-archive/recordings/` holds real responses of the reference server.  This
module rebuilds the recorded archive's history through the local archive's HTTP API (same
dandisets in the same order, uploads, renames, zarr life cycle, publish), replaying each
recorded request at the point of the history where it was recorded, with the recorded ids
translated to the ones the local archive assigned.  Each recording is then one test comparing
status, content type, the redirect/challenge headers, and the JSON shape: the set of fields
and their types (a null on either side matches any type, since it depends on timing), with
metadata objects compared on the fields the server computes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from localarchive_app import (
    BAD,
    OTHER,
    OWNER,
    add_asset,
    start_app,
    upload_blob,
    upload_zarr,
    wait_for,
)

RECORDINGS = Path(os.environ.get(
    "DANDIFS_REAL_ARCHIVE_RECORDINGS", str(Path(__file__).parent / "data" / "real-archive" / "recordings")))

NOT_REPRODUCED = {
    "dandisets_create_POST_form_encoded_500":
        "the reference crashes (HTML 500) on a body without metadata; the local archive "
        "answers 400 {'metadata': [...]} on purpose (tested in test_localarchive_api)",
    "dandisets_create_POST_metadata_not_object_500":
        "the reference crashes (HTML 500) on a non-object metadata; the local archive answers 400",
    "dandisets_create_POST_missing_metadata_500":
        "the reference crashes (HTML 500) without metadata; the local archive answers 400",
    "schemas_available_GET": "JSON-schema endpoints (/schemas/) are not part of the local archive",
    "dandi_cli_download_published_request_sequence":
        "an access-log sequence, not a request; dandi-cli itself runs in test_dandi_cli",
    "dandi_cli_download_zarr_request_sequence":
        "an access-log sequence, not a request; dandi-cli itself runs in test_dandi_cli",
    "dandi_cli_upload_dedupe_request_sequence":
        "an access-log sequence, not a request; dandi-cli itself runs in test_dandi_cli",
    "dandi_cli_upload_request_sequence":
        "an access-log sequence, not a request; dandi-cli itself runs in test_dandi_cli",
    "dandi_cli_upload_second_file_request_sequence":
        "an access-log sequence, not a request; dandi-cli itself runs in test_dandi_cli",
}

ACTORS = {"anonymous": {}, "bad token": BAD}
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Fields a server computes in asset and version metadata: these must be present in ours.
SERVER_METADATA_KEYS = {
    "Asset": {"id", "access", "path", "identifier", "contentUrl", "contentSize", "digest",
              "@context", "schemaKey", "schemaVersion", "publishedBy", "datePublished"},
    "Dandiset": {"@context", "manifestLocation", "name", "identifier", "version", "id",
                 "repository", "url", "dateCreated", "access", "assetsSummary", "citation",
                 "schemaKey", "schemaVersion", "contributor", "publishedBy", "datePublished",
                 "doi", "releaseNotes"},
}


def load(name: str) -> dict[str, Any]:
    return json.loads((RECORDINGS / f"{name}.json").read_text())


def all_names() -> list[str]:
    return sorted(p.stem for p in RECORDINGS.glob("*.json"))


# --- the history ---------------------------------------------------------------------------


@dataclass
class Replayer:
    """Replays recordings against the local archive, translating recorded ids to ours."""

    client: TestClient
    subs: dict[str, str] = field(default_factory=dict)
    responses: dict[str, httpx.Response] = field(default_factory=dict)

    def translate(self, text: str) -> str:
        for old, new in self.subs.items():
            text = text.replace(old, new)
        return text

    def replay(self, name: str, body: Any = ...) -> httpx.Response:
        recording = load(name)
        request = recording["request"]
        url = self.translate(request["url"].split("://", 1)[1].split("/", 1)[1])
        actor = request["actor"]
        headers = dict(ACTORS.get(actor, OTHER if "not owner" in actor else OWNER))
        if request["headers"].get("Content-Type"):
            headers["Content-Type"] = request["headers"]["Content-Type"]
        sent = request["body"] if body is ... else body
        content = None
        if sent is not None:
            text = sent if isinstance(sent, str) else json.dumps(sent)
            content = self.translate(text).encode()
        response = self.client.request(request["method"], "/" + url, headers=headers,
                                       content=content, follow_redirects=False)
        self.responses[name] = response
        self._learn_ids(recording["response"].get("body"), response)
        return response

    def _learn_ids(self, recorded: Any, response: httpx.Response) -> None:
        """Ids the archive assigned where the recording shows the reference's."""
        if not isinstance(recorded, dict) or "json" not in response.headers.get(
                "content-type", ""):
            return
        ours = response.json()
        if not isinstance(ours, dict):
            return
        for key in ("asset_id", "zarr_id", "upload_id", "blob_id"):
            old, new = recorded.get(key), ours.get(key)
            if isinstance(old, str) and isinstance(new, str) and old not in self.subs:
                self.subs[old] = new

    def replay_all(self, *names: str) -> None:
        for name in names:
            self.replay(name)


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def put_zarr_files(urls: list[str], files: dict[str, bytes]) -> None:
    for (path, data), url in zip(files.items(), urls):
        assert httpx.put(url, content=data, headers={"Content-MD5": md5_b64(data)},
                         timeout=30).status_code == 200, path


def zarr_status(client: TestClient, zarr_id: str) -> str:
    return client.get(f"/api/zarr/{zarr_id}/").json()["status"]


NWB_ONE = b"\x89HDF\r\n\x1a\n" + b"first nwb stand-in " * 500
NWB_TWO = b"\x89HDF\r\n\x1a\n" + b"second nwb stand-in " * 600
NWB_FIVE = b"\x89HDF\r\n\x1a\n" + b"fifth nwb stand-in " * 550
IMAGE_ZARR = {
    ".zattrs": b'{"name": "image"}', ".zgroup": b'{"zarr_format": 2}',
    "data/.zarray": b'{"chunks": [2, 2], "zarr_format": 2}', "data/0.0": b"\x00\x01" * 8,
    "data/0.1": b"\x02\x03" * 8, "data/1.0": b"\x04\x05" * 8, "data/1.1": b"\x06\x07" * 8,
}
MANUAL_ZARR = {
    ".zgroup": b'{"zarr_format": 2}', ".zattrs": b"{}",
    "arr/.zarray": b'{"chunks": [4], "zarr_format": 2}', "arr/0": b"\x01" * 16,
    "arr/1": b"\x02" * 16,
}
SECOND_ZARR = {".zgroup": b'{"zarr_format": 2}', "x/.zarray": b'{"zarr_format": 2}',
               "x/0": b"a", "x/1": b"b", "x/2": b"c"}


def asset_body(recorded: dict[str, Any], path: str | None = None) -> dict[str, Any]:
    body = json.loads(json.dumps(recorded))
    if path is not None:
        body["metadata"]["path"] = path
    return body


def build_history(r: Replayer) -> None:
    c = r.client
    r.replay_all(
        "info_GET", "info_GET_no_slash_301", "info_DELETE_anonymous_401",
        "info_DELETE_authenticated_405", "server_info_GET_404", "unknown_api_path_GET_404",
        "auth_token_GET", "auth_token_GET_anonymous_401", "auth_token_GET_bad_token_401",
        "auth_token_GET_no_slash_301", "users_me_GET", "users_me_GET_anonymous_401",
        "dandisets_create_POST_anonymous_401", "dandisets_create_POST_bad_token_401",
        "dandisets_create_POST_malformed_json_400", "dandisets_create_POST_no_slash_301",
        "dandisets_create_POST_identifier_non_admin_400",
        # 000001 .. 000004 in the recorded order
        "dandisets_create_POST", "dandisets_create_second", "dandisets_create_POST_third",
        "dandisets_create_POST_publishable",
        "dandisets_list_GET", "dandisets_list_GET_authenticated", "dandisets_list_GET_bad_bool_400",
        "dandisets_list_GET_bad_token_401", "dandisets_list_GET_draft_false",
        "dandisets_list_GET_embargoed_anonymous_401", "dandisets_list_GET_page_size_1",
        "dandisets_list_GET_page_2_size_1", "dandisets_list_GET_page_99_404",
        "dandisets_list_GET_ordering_minus_id", "dandisets_list_GET_search",
        "dandisets_list_GET_user_me", "dandiset_GET_no_slash_301", "dandiset_GET_non_numeric_404",
        "dandiset_GET_unknown_404", "dandiset_GET_bad_token_401", "dandiset_PATCH_405",
        "versions_list_GET", "versions_list_GET_unknown_dandiset_404", "version_GET_unknown_404",
        "version_GET_unknown_dandiset_404", "version_draft_PATCH_405",
        "assets_list_GET_empty_dandiset", "assets_paths_GET_root_empty_dandiset",
        "dandiset_users_GET", "dandiset_users_GET_authenticated", "dandiset_uploads_GET",
    )
    wait_for(lambda: c.get("/api/dandisets/000002/versions/draft/info/").json()["status"]
             == "Invalid")
    r.replay_all("version_draft_info_GET_empty_dandiset", "version_publish_POST_empty_dandiset")
    # 000001: a zarr and an NWB file "uploaded by dandi-cli"
    image = upload_zarr(c, "000001", "sub-mouse01/sub-mouse01_ses-s1_image.zarr", IMAGE_ZARR)
    r.subs["32aeb5e0-9aea-45ea-ada2-293496a62c15"] = image
    zarr_asset = add_asset(c, "000001", "sub-mouse01/sub-mouse01_ses-s1_image.zarr",
                           zarr_id=image).json()
    r.subs["dd4270cb-2df4-4a84-a69f-e58f2c53decb"] = zarr_asset["asset_id"]
    blob_one = upload_blob(c, "000001", NWB_ONE)
    first = add_asset(c, "000001", "sub-mouse01/sub-mouse01_ses-s1.nwb", blob_id=blob_one).json()
    r.subs["0c73e290-ad5f-4622-ae5a-ca0ca9224d5b"] = first["asset_id"]
    wait_for(lambda: sha256_known(c, NWB_ONE))
    wait_for(lambda: c.get("/api/dandisets/000001/versions/draft/info/").json()["status"]
             == "Valid")
    r.replay_all(
        "assets_list_GET", "assets_list_GET_bad_order_400", "assets_list_GET_bad_token_401",
        "assets_list_GET_glob", "assets_list_GET_glob_dir", "assets_list_GET_metadata_true",
        "assets_list_GET_order_minus_path", "assets_list_GET_order_path",
        "assets_list_GET_page_2_size_1", "assets_list_GET_page_size_1",
        "assets_list_GET_path_exact", "assets_list_GET_path_nomatch",
        "assets_list_GET_path_prefix", "assets_list_GET_unknown_dandiset_404",
        "assets_list_GET_unknown_version_404", "assets_list_GET_zarr_true",
        "assets_paths_GET_root", "assets_paths_GET_folder",
        "assets_paths_GET_folder_trailing_slash",
        "assets_paths_GET_file_path", "assets_paths_GET_missing_404",
        "dandisets_list_GET_empty_false", "version_draft_GET_metadata", "version_draft_info_GET",
        "dandiset_GET",
    )
    # the raw upload protocol for a second NWB file
    r.subs.update({"f2982ebd2cfe2e5ac993d8f846a68cf9-1": _etag(NWB_TWO),
                   "182616": str(len(NWB_TWO)),
                   "c7d2e9090d70618bebef6a79dbb48b74": hashlib.md5(NWB_TWO).hexdigest()})
    started = r.replay("uploads_initialize_POST").json()
    r.replay_all("uploads_validate_POST_before_data_400", "dandiset_uploads_GET_with_active_upload",
                 "version_draft_info_GET_with_active_upload",
                 "uploads_complete_POST_empty_parts_400")
    part = httpx.put(started["parts"][0]["upload_url"], content=NWB_TWO, timeout=30)
    assert part.status_code == 200
    completion = r.replay("uploads_complete_POST").json()
    assert httpx.post(completion["complete_url"], content=completion["body"],
                      timeout=30).status_code == 200
    r.replay("uploads_validate_POST")
    wait_for(lambda: sha256_known(c, NWB_TWO))
    r.replay_all(
        "uploads_validate_POST_again_404",
        "uploads_complete_POST_unknown_404", "uploads_initialize_POST_existing_blob_409",
        "uploads_initialize_POST_anonymous_401", "uploads_initialize_POST_bad_algorithm_400",
        "uploads_initialize_POST_bad_token_401", "uploads_initialize_POST_malformed_json_400",
        "uploads_initialize_POST_missing_fields_400", "uploads_initialize_POST_not_owner_403",
        "uploads_initialize_POST_unknown_dandiset_404", "uploads_initialize_POST_zero_size_400",
    )
    # assets: add, refusals, unchanged PUT, rename, copy and delete
    r.replay_all(
        "asset_POST_anonymous_401", "asset_POST_not_owner_403", "asset_POST_malformed_json_400",
        "asset_POST_no_blob_400", "asset_POST_no_path_400", "asset_POST_bad_path_400",
        "asset_POST_unknown_blob_404", "asset_POST_no_slash_301", "asset_POST",
        "asset_POST_duplicate_path_409", "asset_POST_path_conflict_file_as_folder_409",
        "asset_PUT_unchanged", "asset_PUT_not_owner_403", "asset_PUT_rename",
        "asset_GET_old_id_after_rename", "asset_nested_GET_old_id_after_rename_200",
        "asset_POST_second_copy", "asset_PUT_rename_to_existing_409",
        "asset_DELETE_anonymous_401", "asset_DELETE_not_owner_403",
        "asset_DELETE", "asset_DELETE_again_404", "assets_paths_GET_deleted_folder_404",
        "asset_PUT_malformed_400",
    )
    # the zarr life cycle
    r.replay_all(
        "zarr_POST_anonymous_401", "zarr_POST_not_owner_403", "zarr_POST_missing_name_400",
        "zarr_POST_unknown_dandiset_400", "zarr_POST", "zarr_POST_duplicate_name_400",
        "zarr_GET_pending_empty", "zarr_files_GET_empty", "asset_POST_zarr",
        "asset_POST_zarr_and_blob_400",
    )
    manual = r.subs["70a4e909-71ef-4ad4-9091-17e95a8c34c9"]
    urls = r.replay("zarr_files_POST_upload_urls",
                    body=[{"path": p, "base64md5": md5_b64(d)} for p, d in MANUAL_ZARR.items()])
    put_zarr_files(urls.json(), MANUAL_ZARR)
    r.replay_all("zarr_files_GET_after_upload", "zarr_GET_before_finalize",
                 "zarr_finalize_POST_not_owner_403", "zarr_finalize_POST",
                 "zarr_GET_right_after_finalize")
    wait_for(lambda: zarr_status(c, manual) == "Complete")
    r.replay_all("zarr_files_POST_not_owner_403", "zarr_files_DELETE", "zarr_GET_after_file_delete",
                 "zarr_files_GET_after_delete", "zarr_finalize_POST_after_file_delete")
    wait_for(lambda: zarr_status(c, manual) == "Complete")
    r.replay_all("zarr_GET_complete_after_refinalize",
                 "zarr_files_POST_after_ingestion_finished_200",
                 "zarr_GET_pending_after_new_upload_urls", "zarr_files_POST_leading_slash_path_200")
    r.replay("zarr_POST_second")
    second = r.subs["674afa86-2c36-48ad-8a62-e30139e5aa8f"]
    urls = c.post(f"/api/zarr/{second}/files/", headers=OWNER,
                  json=[{"path": p, "base64md5": md5_b64(d)} for p, d in SECOND_ZARR.items()])
    put_zarr_files(urls.json(), SECOND_ZARR)
    r.replay_all("zarr_finalize_POST_second", "zarr_finalize_POST_twice")
    wait_for(lambda: zarr_status(c, second) == "Complete")
    r.replay_all(
        "zarr_GET_complete", "zarr_files_GET_complete", "zarr_files_GET_prefix_dir",
        "asset_POST_zarr_second", "zarr_GET", "zarr_GET_unknown_404", "zarr_files_GET",
        "zarr_files_GET_download_302", "zarr_files_HEAD_302", "zarr_files_GET_limit_1",
        "zarr_files_GET_limit_after", "zarr_files_GET_no_slash_301", "zarr_files_GET_prefix",
        "zarr_finalize_POST_already_complete_400", "zarr_list_GET", "zarr_list_GET_dandiset_filter",
        "zarr_list_GET_name_filter",
    )
    # metadata of 000001, then the rest of its reads in its final state
    r.replay_all("version_draft_PUT_anonymous_401", "version_draft_PUT_not_owner_403",
                 "version_draft_PUT_malformed_json_400", "version_draft_PUT_missing_name_400",
                 "version_draft_PUT", "version_draft_info_GET_after_metadata_PUT")
    wait_for(lambda: c.get("/api/dandisets/000001/versions/draft/info/").json()["status"]
             == "Valid")
    r.replay_all(
        "version_draft_info_GET_valid_before_publish", "version_publish_POST_with_zarrs_400",
        "version_publish_POST_not_owner_403", "assets_list_GET_metadata_true_full_draft",
        "assets_paths_GET_root_after_changes", "assets_paths_GET_root_full_draft",
        "assets_paths_GET_root_page_size_1", "asset_GET_metadata", "asset_GET_unknown_404",
        "asset_info_GET", "asset_download_GET_302", "asset_download_HEAD_302",
        "asset_nested_GET_metadata", "asset_nested_GET_unknown_404",
        "asset_nested_GET_via_other_dandiset", "asset_nested_download_GET_302",
        "asset_nested_download_GET_inline_302", "asset_nested_info_GET",
        "asset_nested_info_GET_via_other_dandiset", "asset_nested_validation_GET",
        "asset_zarr_download_GET_400", "asset_zarr_nested_GET_metadata",
        "asset_zarr_nested_info_GET", "webdav_atpath_GET_asset", "webdav_atpath_GET_asset_metadata",
        "webdav_atpath_GET_asset_trailing_slash_404", "webdav_atpath_GET_folder",
        "webdav_atpath_GET_folder_children", "webdav_atpath_GET_missing_404",
        "webdav_atpath_GET_missing_params_400", "webdav_atpath_GET_root",
        "webdav_atpath_GET_root_children", "webdav_atpath_GET_root_empty_dandiset",
        "webdav_atpath_GET_zarr",
    )
    # 000003 is deleted
    r.replay_all("dandiset_DELETE_not_owner_403", "dandiset_DELETE", "dandiset_GET_deleted_404",
                 "dandiset_DELETE_unknown_404")
    # 000004: two NWB files (one reusing a blob), validated, published
    r.subs.update({"4824d358a853264e8479d60972903efb-1": _etag(NWB_ONE),
                   "7ede732d1a5a5e67753774c90cc85014c2bad38994074a1bb7d7367dc6b93c8c":
                       hashlib.sha256(NWB_ONE).hexdigest(),
                   "1ee92aad-eff7-40e6-8750-9520b1244f3e": blob_one})
    published_one = add_asset(c, "000004", "sub-mouse01/sub-mouse01_ses-s1.nwb",
                              blob_id=upload_blob(c, "000004", NWB_ONE)).json()
    r.subs["f9a3d979-b2f5-4283-8cf1-333a4a9e338e"] = published_one["asset_id"]
    add_asset(c, "000004", "sub-mouse05/sub-mouse05_ses-s1.nwb",
              blob_id=upload_blob(c, "000004", NWB_FIVE))
    r.replay_all("version_draft_info_GET_pending_validation", "version_publish_POST_while_pending")
    wait_for(lambda: c.get("/api/dandisets/000004/versions/draft/info/").json()["status"]
             == "Valid")
    r.replay("version_publish_POST")
    version = c.get("/api/dandisets/000004/").json()["most_recent_published_version"]["version"]
    r.subs["0.261122.0152"] = version
    r.replay_all(
        "version_draft_info_GET_right_after_publish", "version_publish_POST_again_immediately_400",
        "version_publish_POST_no_changes_400", "version_publish_POST_non_draft_path_405",
        "version_published_publish_POST_405", "version_published_PUT_405",
        "version_published_DELETE_non_admin_403", "version_draft_DELETE_403",
        "version_draft_info_GET_after_publish", "version_draft_GET_metadata_after_publish",
        "version_published_GET_metadata", "version_published_info_GET",
        "versions_list_GET_after_publish", "versions_list_GET_order_minus_created",
        "dandiset_GET_after_publish", "dandiset_DELETE_with_published_version_403",
        "dandisets_list_GET_after_publish", "dandisets_list_GET_draft_false_after_publish",
        "assets_list_GET_published", "assets_list_GET_published_metadata_true",
        "assets_paths_GET_root_published", "assets_paths_GET_folder_published",
        "asset_published_GET_metadata", "asset_published_nested_GET_metadata",
        "asset_published_nested_download_GET_302", "asset_published_nested_info_GET",
        "asset_published_nested_validation_GET", "asset_POST_published_version_405",
        "asset_PUT_published_version_405", "asset_DELETE_published_version_405",
        "webdav_atpath_GET_published_asset", "webdav_atpath_GET_published_root_children",
    )
    r.replay_all(
        "blobs_digest_POST_bad_algorithm_400", "blobs_digest_POST_etag_found",
        "blobs_digest_POST_malformed_json_400", "blobs_digest_POST_missing_fields_400",
        "blobs_digest_POST_not_found_404", "blobs_digest_POST_sha256_found",
        "dandiset_star_POST_anonymous_401", "dandiset_star_POST",
        "dandiset_GET_starred_by_requester", "dandisets_list_GET_starred", "dandiset_star_DELETE",
        "stats_GET",
    )


def sha256_known(client: TestClient, data: bytes) -> bool:
    """The archive computes blob SHA-256 digests in the background, as the reference does."""
    return client.post("/api/blobs/digest/", json={
        "algorithm": "dandi:sha2-256", "value": hashlib.sha256(data).hexdigest()}
    ).status_code == 200


def _etag(data: bytes) -> str:
    from dandischema.digests.dandietag import DandiETag

    etag = DandiETag(len(data))
    for part in etag.get_parts():
        etag.update(data[part.offset: part.offset + part.size], part)
    return etag.as_str()


@pytest.fixture(scope="module")
def history(local_archive, tmp_path_factory) -> Iterator[Replayer]:
    for client in start_app(local_archive, tmp_path_factory.mktemp("recordings-archive"),
                            validation_delay=0.5, instance_name="DEV-DANDI"):
        replayer = Replayer(client)
        build_history(replayer)
        yield replayer


# --- comparison ----------------------------------------------------------------------------


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


def compare_shape(expected: Any, actual: Any, where: str = "body") -> list[str]:
    """Differences in fields and types; null matches anything (its presence is timing)."""
    if expected is None or actual is None:
        return []
    if _kind(expected) != _kind(actual):
        return [f"{where}: {_kind(expected)} expected, got {_kind(actual)} ({actual!r:.80})"]
    if isinstance(expected, list):
        if expected and actual:
            return compare_shape(expected[0], actual[0], f"{where}[0]")
        return []
    if not isinstance(expected, dict):
        return []
    schema_key = expected.get("schemaKey")
    if schema_key in SERVER_METADATA_KEYS and (
            "contentUrl" in expected or "manifestLocation" in expected):
        required = SERVER_METADATA_KEYS[schema_key] & expected.keys()
        missing = required - actual.keys()
        problems = [f"{where}: missing server-computed {sorted(missing)}"] if missing else []
        for key in sorted(required - missing):
            problems += compare_shape(expected[key], actual[key], f"{where}.{key}")
        return problems
    if schema_key is not None:
        # Other dandischema objects (assetsSummary, contributors, ...) carry what the data has.
        problems = []
        for key in sorted(expected.keys() & actual.keys()):
            problems += compare_shape(expected[key], actual[key], f"{where}.{key}")
        return problems
    problems = []
    if expected.keys() != actual.keys():
        problems.append(f"{where}: fields {sorted(expected.keys() - actual.keys())} missing, "
                        f"{sorted(actual.keys() - expected.keys())} unexpected")
    for key in sorted(expected.keys() & actual.keys()):
        problems += compare_shape(expected[key], actual[key], f"{where}.{key}")
    return problems


def _media(content_type: str | None) -> str | None:
    return content_type.split(";")[0].strip() if content_type else None


REPRODUCED = [name for name in all_names() if name not in NOT_REPRODUCED]


def test_every_recording_is_replayed_or_explained(history: Replayer) -> None:
    assert set(NOT_REPRODUCED) <= set(all_names()), "an explained recording does not exist"
    assert sorted(history.responses) == REPRODUCED


def _listed(body: dict[str, Any]) -> list[Any]:
    """What identifies each item of a listing, in order (its path, id, version or name)."""
    return [history_item(item) for item in body["results"]]


def history_item(item: dict[str, Any]) -> Any:
    """An item's path, id, version or name; a WebDAV resource's path; else the whole item."""
    resource = item.get("resource") or {}
    for key in ("path", "identifier", "version", "name"):
        if key in item:
            return item[key]
    return resource.get("path", json.dumps(item, sort_keys=True))


@pytest.mark.parametrize("name", REPRODUCED)
def test_recording(name: str, history: Replayer) -> None:
    recorded = load(name)["response"]
    actual = history.responses[name]
    context = f"{name}: {actual.status_code} {actual.text[:300]}"
    assert actual.status_code == recorded["status"], context
    assert _media(actual.headers.get("content-type")) == _media(
        recorded["headers"].get("Content-Type")), context
    for header in ("WWW-Authenticate",):
        assert actual.headers.get(header) == recorded["headers"].get(header), context
    if "Location" in recorded["headers"]:
        location = actual.headers.get("Location")
        assert location, context
        if recorded["status"] in (301, 409):
            assert location == history.translate(recorded["headers"]["Location"]), context
    if recorded["body_kind"] == "json":
        assert not compare_shape(recorded["body"], actual.json()), (
            context, compare_shape(recorded["body"], actual.json()))
        if isinstance(recorded["body"], dict) and isinstance(recorded["body"].get("results"), list):
            # listings come in the recorded order (filtered ones and later pages too); items
            # the replayed history lacks or adds are left out of the comparison
            listed, expected_order = _listed(actual.json()), _listed(recorded["body"])
            assert [item for item in listed if item in expected_order] == [
                item for item in expected_order if item in listed], context
        if recorded["status"] >= 400:
            expected = json.loads(history.translate(json.dumps(recorded["body"])))
            assert actual.json() == expected, context
    elif recorded["body"] == "":
        assert actual.content == b"", context
