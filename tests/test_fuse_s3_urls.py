"""Where the mount's reads go, against the real local archive: straight to S3 whatever
spelling of the instance it was given, and through the archive's download redirect (once
per file, not once per block) only where it must (embargoed data, with the token).

The archive calls itself `http://127.0.0.1:PORT/api` in every `contentUrl`; the mount is
given `http://localhost:PORT/api/`.  API requests are counted in the archive's access log,
S3 requests at its S3 proxy.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from fuse_support import MountProcess, require_fuse

pytestmark = pytest.mark.fuse

DOWNLOAD = re.compile(r'"GET /api/assets/[0-9a-f-]+/download/ HTTP')


def api_downloads(local_archive) -> int:
    """Download requests the archive answered so far (its access log)."""
    return len(DOWNLOAD.findall(local_archive.log_path.read_text(errors="replace")))


def other_spelling(api_url: str) -> str:
    assert "//127.0.0.1:" in api_url
    return api_url.replace("//127.0.0.1:", "//localhost:") + "/"


def settled_downloads(local_archive, at_least: int = 0) -> int:
    """The download count once the access log has caught up (it is written as answers go)."""
    deadline = time.monotonic() + 5
    count = api_downloads(local_archive)
    while count < at_least and time.monotonic() < deadline:
        time.sleep(0.05)
        count = api_downloads(local_archive)
    return count


@pytest.fixture
def places(tmp_path: Path):
    require_fuse()
    return tmp_path / "mnt", tmp_path / "cache"


def read_whole(path: Path) -> int:
    size = 0
    with open(path, "rb", buffering=0) as handle:
        while chunk := handle.read(256 * 1024):
            size += len(chunk)
    return size


def test_open_data_is_read_from_s3_under_another_spelling_of_the_instance(
    local_archive, places
) -> None:
    mountpoint, cache = places
    with MountProcess(mountpoint, other_spelling(local_archive.api_url), cache,
                      env={"DANDI_API_KEY": ""}):
        draft = mountpoint / "dandisets" / "000001" / "draft"
        # The largest ecephys file under 8 MiB: several GETs, quickly read.
        nwb = max((p for p in draft.rglob("*ecephys.nwb") if p.stat().st_size < 8 << 20),
                  key=lambda p: p.stat().st_size)
        s3_url = os.getxattr(nwb, "user.dandi.s3_url").decode()
        assert "/download/" not in s3_url and s3_url.startswith(local_archive.s3_url)
        assert re.search(r"/blobs/[0-9a-f]{3}/[0-9a-f]{3}/[0-9a-f-]{36}$", s3_url)
        downloads = settled_downloads(local_archive)
        local_archive.reset_s3_stats()
        assert read_whole(nwb) == nwb.stat().st_size
        stats = local_archive.s3_stats()
        assert stats["requests"].get("GET", 0) >= 2  # parallel ranged GETs, straight to S3
        assert stats["bytes_sent"] >= nwb.stat().st_size
        assert settled_downloads(local_archive) == downloads


def test_an_embargoed_file_asks_the_download_redirect_once(local_archive, places, tmp_path) -> None:
    mountpoint, cache = places
    token_file = tmp_path / "token"
    token_file.write_text(local_archive.token + "\n")
    with MountProcess(mountpoint, other_spelling(local_archive.api_url), cache,
                      options=[f"token_file={token_file}"], env={"DANDI_API_KEY": ""}):
        draft = mountpoint / "dandisets" / "000003" / "draft"
        nwb = max(draft.rglob("*.nwb"), key=lambda p: p.stat().st_size)
        assert nwb.stat().st_size > 2 << 20  # more than one GET's worth at the start
        downloads = settled_downloads(local_archive)
        local_archive.reset_s3_stats()
        assert read_whole(nwb) == nwb.stat().st_size
        gets = local_archive.s3_stats()["requests"].get("GET", 0)
        assert gets >= 2
        assert settled_downloads(local_archive, downloads + 1) == downloads + 1
