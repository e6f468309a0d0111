"""A fresh in-process local archive API for tests that change state.

The app (with its own SQLite database) runs in the test process behind Starlette's TestClient,
while its bytes go to the session archive's real S3 (SeaweedFS behind the S3 proxy), under
keys no other test uses.  Two users: the owner (`OWNER_TOKEN`) and an approved non-owner
(`OTHER_TOKEN`).
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from starlette.testclient import TestClient

from dandifs.localarchive.app import create_app
from dandifs.localarchive.objectstore import ObjectStore
from dandifs.localarchive.settings import ArchiveSettings, ArchiveUser

OWNER_TOKEN = "1" * 40
OTHER_TOKEN = "2" * 40
ADMIN_TOKEN = "3" * 40
OWNER = {"Authorization": f"token {OWNER_TOKEN}"}
OTHER = {"Authorization": f"token {OTHER_TOKEN}"}
ADMIN = {"Authorization": f"token {ADMIN_TOKEN}"}
BAD = {"Authorization": "token " + "0" * 40}
API = "http://testserver/api"

PUBLISHABLE_METADATA = {
    "description": "A test Dandiset",
    "license": ["spdx:CC0-1.0"],
    "contributor": [{
        "schemaKey": "Person",
        "name": "Tests, DANDI-Cli",
        "email": "nemo@example.com",
        "roleName": ["dcite:Author", "dcite:ContactPerson"],
    }],
}


def start_app(local_archive: Any, state_dir: Path, **overrides: Any) -> Iterator[TestClient]:
    store = ObjectStore(local_archive.s3_url, local_archive.s3_url)
    settings = ArchiveSettings(
        api_url=API,
        data_dir=state_dir,
        db_path=state_dir / "archive.sqlite3",
        demo_token=OWNER_TOKEN,
        demo_username="owner@example.com",
        demo_first_name="Olive",
        demo_last_name="Owner",
        extra_users=(
            ArchiveUser("other@example.com", "other@example.com", "Otto", "Other", OTHER_TOKEN),
            ArchiveUser("admin@example.com", "admin@example.com", "Ada", "Admin", ADMIN_TOKEN,
                        admin=True),
        ),
        **overrides,
    )
    with TestClient(create_app(settings, store), base_url="http://testserver") as client:
        yield client


# --- flows a client performs -----------------------------------------------------------------


def create_dandiset(client: TestClient, name: str = "Test dandiset",
                    metadata: dict | None = None) -> str:
    response = client.post("/api/dandisets/", headers=OWNER,
                           json={"name": name, "metadata": metadata or PUBLISHABLE_METADATA})
    assert response.status_code == 200, response.text
    return response.json()["identifier"]


def upload_blob(client: TestClient, dandiset: str, data: bytes) -> str:
    """initialize, PUT parts to S3, complete, POST the XML to S3, validate: the blob id."""
    from dandischema.digests.dandietag import DandiETag

    etag = DandiETag(len(data))
    for part in etag.get_parts():
        etag.update(data[part.offset: part.offset + part.size], part)
    response = client.post("/api/uploads/initialize/", headers=OWNER, json={
        "contentSize": len(data),
        "digest": {"algorithm": "dandi:dandi-etag", "value": etag.as_str()},
        "dandiset": dandiset,
    })
    if response.status_code == 409:
        return response.headers["Location"]
    assert response.status_code == 200, response.text
    upload = response.json()
    parts = []
    offset = 0
    for part in upload["parts"]:
        chunk = data[offset: offset + part["size"]]
        offset += part["size"]
        put = httpx.put(part["upload_url"], content=chunk, timeout=30)
        assert put.status_code == 200, put.text
        parts.append({"part_number": part["part_number"], "size": part["size"],
                      "etag": put.headers["ETag"].strip('"')})
    done = client.post(f"/api/uploads/{upload['upload_id']}/complete/", headers=OWNER,
                       json={"parts": parts}).json()
    completed = httpx.post(done["complete_url"], content=done["body"], timeout=30)
    assert completed.status_code == 200, completed.text
    validated = client.post(f"/api/uploads/{upload['upload_id']}/validate/", headers=OWNER)
    assert validated.status_code == 200, validated.text
    return validated.json()["blob_id"]


def asset_metadata(path: str, **extra: Any) -> dict[str, Any]:
    return {"schemaKey": "Asset", "encodingFormat": "application/x-nwb", "path": path, **extra}


def add_asset(client: TestClient, dandiset: str, path: str, *, blob_id: str | None = None,
              zarr_id: str | None = None, headers: dict = OWNER,
              version: str = "draft") -> httpx.Response:
    body: dict[str, Any] = {"metadata": asset_metadata(path)}
    if blob_id:
        body["blob_id"] = blob_id
    if zarr_id:
        body["zarr_id"] = zarr_id
    return client.post(f"/api/dandisets/{dandiset}/versions/{version}/assets/",
                       headers=headers, json=body)


def upload_zarr(client: TestClient, dandiset: str, name: str, files: dict[str, bytes]) -> str:
    """Create a zarr, upload its files through presigned PUTs, finalize, wait for Complete."""
    zarr = client.post("/api/zarr/", headers=OWNER, json={"name": name, "dandiset": dandiset})
    assert zarr.status_code == 200, zarr.text
    zarr_id = zarr.json()["zarr_id"]
    request = [{"path": p, "base64md5": base64.b64encode(hashlib.md5(d).digest()).decode()}
               for p, d in files.items()]
    urls = client.post(f"/api/zarr/{zarr_id}/files/", headers=OWNER, json=request).json()
    for (path, data), url in zip(files.items(), urls):
        put = httpx.put(url, content=data, timeout=30,
                        headers={"Content-MD5": base64.b64encode(hashlib.md5(data).digest())
                                 .decode()})
        assert put.status_code == 200, (path, put.text)
    assert client.post(f"/api/zarr/{zarr_id}/finalize/", headers=OWNER).status_code == 204
    wait_for(lambda: client.get(f"/api/zarr/{zarr_id}/").json()["status"] == "Complete")
    return zarr_id


def wait_for(condition, timeout: float = 300.0) -> None:
    """Wait for the archive's background jobs (validation, SHA-256, Zarr ingestion).

    The bound is for liveness only, never a speed claim: beside a CPU hog (`stress-ng
    --cpu 2`) a draft's validation took more than 30 s, and a wait that short failed
    every test of a module at setup."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def wait_valid(client: TestClient, dandiset: str) -> dict[str, Any]:
    def valid() -> bool:
        info = client.get(f"/api/dandisets/{dandiset}/versions/draft/info/").json()
        return info["status"] == "Valid" and not info["asset_validation_errors"]

    wait_for(valid)
    return client.get(f"/api/dandisets/{dandiset}/versions/draft/info/").json()


@contextmanager
def sql_statements(client: TestClient) -> Iterator[list[str]]:
    """The SQL statements the app's database runs inside the block for requests and callers
    (not the background validation worker's), so a test can count work instead of timing it.
    Each execution of an `executemany` counts once per row."""
    statements: list[str] = []

    def record(statement: str) -> None:
        if threading.current_thread().name != "archive-worker":
            statements.append(statement)

    connection = client.app.state.archive.db._conn
    connection.set_trace_callback(record)
    try:
        yield statements
    finally:
        connection.set_trace_callback(None)
