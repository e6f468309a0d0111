"""The mount and the WebDAV server's stream mode open files through the same core: the
first read of an NWB file costs the same S3 requests through either (its ends and its
chunk-index nodes, fetched by the one HDF5-aware opener), counted at the local archive's S3.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from fuse_support import MountProcess, require_fuse, version_path
from test_fuse_index_prefetch import NWB, s3_requests_once_quiet
from test_webdav_clients import start_server, stop_server

HEADER_BYTES = 8  # the HDF5 signature: the first thing any HDF5 reader asks for


@pytest.fixture(scope="module")
def published(local_archive) -> str:
    record = httpx.get(f"{local_archive.api_url}/dandisets/000001/", timeout=30).json()
    return record["most_recent_published_version"]["version"]


def first_read_through_the_mount(local_archive, published: str, base: Path) -> tuple[int, bytes]:
    with MountProcess(base / "mnt", local_archive.api_url, base / "cache").start() as mount:
        path = version_path(mount.mountpoint, "000001", published) / NWB
        path.stat()  # resolve the path first: API requests, not S3 ones
        before = s3_requests_once_quiet(local_archive)
        handle = os.open(path, os.O_RDONLY)
        try:
            # No kernel read-ahead: the core sees the one small read the WebDAV GET makes.
            os.posix_fadvise(handle, 0, 0, os.POSIX_FADV_RANDOM)
            header = os.pread(handle, HEADER_BYTES, 0)
        finally:
            os.close(handle)
        return s3_requests_once_quiet(local_archive) - before, header


def first_read_through_webdav(local_archive, published: str, base: Path) -> tuple[int, bytes]:
    base.mkdir(parents=True, exist_ok=True)
    server = start_server(base, local_archive.api_url, "--redirect", "stream")
    try:
        url = f"{server.url}dandisets/000001/{published}/{NWB}"
        assert httpx.head(url, timeout=30).status_code == 200  # resolve the path first
        before = s3_requests_once_quiet(local_archive)
        response = httpx.get(url, headers={"Range": f"bytes=0-{HEADER_BYTES - 1}"}, timeout=60)
        assert response.status_code == 206
        return s3_requests_once_quiet(local_archive) - before, response.content
    finally:
        stop_server(server)


def test_an_nwb_open_costs_the_same_s3_requests_through_the_mount_and_webdav(
    local_archive, published, tmp_path: Path
) -> None:
    require_fuse()
    through_mount, mount_header = first_read_through_the_mount(
        local_archive, published, tmp_path / "fuse"
    )
    through_webdav, webdav_header = first_read_through_webdav(
        local_archive, published, tmp_path / "webdav"
    )
    assert mount_header == webdav_header == b"\x89HDF\r\n\x1a\n"
    # Both ends and the chunk-index nodes: more than the one GET a plain reader would make.
    assert through_mount >= 2
    assert through_webdav == through_mount
