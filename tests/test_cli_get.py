"""`dandifs get`: a published version downloaded through the cache equals `dandi download` of
it, byte for byte; a second `get` of it (elsewhere) moves no bytes from S3; an interrupted
file resumes from its part file; a download that cannot fit refuses to start."""

from __future__ import annotations

import filecmp
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fuse_support import dandi_download


def dandifs_get(local_archive, source: str, dest: Path, cache: Path) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "dandifs", "get", "-i", local_archive.api_url,
         "--cache-dir", str(cache), "--json", source, str(dest)],
        capture_output=True, text=True, timeout=600,
        env={key: value for key, value in os.environ.items() if key != "DANDI_API_KEY"},
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def same_tree(left: Path, right: Path) -> list[str]:
    """Paths that differ in name or content between two trees (empty: identical)."""
    differences: list[str] = []
    pending = [filecmp.dircmp(left, right)]
    while pending:
        compared = pending.pop()
        differences += compared.left_only + compared.right_only + compared.funny_files
        _, mismatch, errors = filecmp.cmpfiles(
            compared.left, compared.right, compared.common_files, shallow=False
        )
        differences += mismatch + errors
        pending += compared.subdirs.values()
    return differences


@pytest.fixture(scope="module")
def downloaded(local_archive, published, tmp_path_factory) -> Path:
    return dandi_download(
        local_archive.api_url, "000001", published, tmp_path_factory.mktemp("dandi"), {}
    )


def test_get_of_a_version_equals_dandi_download_and_the_second_moves_nothing_from_s3(
    local_archive, published, downloaded, tmp_path
) -> None:
    source = f"/dandisets/000001/{published}"
    first = dandifs_get(local_archive, source, tmp_path / "first", tmp_path / "cache")
    assert first["files"] == first["fetched_files"] > 2
    assert same_tree(tmp_path / "first", downloaded) == []

    local_archive.reset_s3_stats()
    second = dandifs_get(local_archive, source, tmp_path / "second", tmp_path / "cache")
    assert second["fetched_bytes"] == first["fetched_bytes"] == first["bytes"]
    assert local_archive.s3_stats()["bytes_sent"] == 0
    assert same_tree(tmp_path / "second", downloaded) == []

    again = dandifs_get(local_archive, source, tmp_path / "second", tmp_path / "cache")
    assert again["kept_files"] == again["files"] and again["fetched_bytes"] == 0


def test_an_interrupted_file_resumes_from_its_part_file(
    local_archive, published, downloaded, tmp_path
) -> None:
    name = max(downloaded.rglob("*.nwb"), key=lambda path: path.stat().st_size)
    relative = name.relative_to(downloaded)
    dest = tmp_path / "one.nwb"
    part = dest.with_name(dest.name + ".dandifs-part")
    half = name.stat().st_size // 2
    part.write_bytes(name.read_bytes()[:half])
    result = dandifs_get(
        local_archive, f"/dandisets/000001/{published}/{relative}", dest, tmp_path / "cache"
    )
    assert result["fetched_bytes"] == name.stat().st_size - half
    assert dest.read_bytes() == name.read_bytes() and not part.exists()


def test_a_part_file_with_wrong_bytes_fails_the_digest_and_is_dropped(
    local_archive, published, downloaded, tmp_path
) -> None:
    name = max(downloaded.rglob("*.nwb"), key=lambda path: path.stat().st_size)
    dest = tmp_path / "one.nwb"
    part = dest.with_name(dest.name + ".dandifs-part")
    part.write_bytes(b"\0" * 1000)
    result = subprocess.run(
        [sys.executable, "-m", "dandifs", "get", "-i", local_archive.api_url,
         "--cache-dir", str(tmp_path / "cache"), "--json",
         f"/dandisets/000001/{published}/{name.relative_to(downloaded)}", str(dest)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 1 and "digest" in result.stderr
    assert not dest.exists() and not part.exists()


def dandifs_cache(action: str, cache: Path) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "dandifs", "cache", action, "--cache-dir", str(cache), "--json"],
        capture_output=True, text=True, timeout=120, check=True,
    )
    return json.loads(result.stdout)


def test_cache_stats_counts_what_get_left_and_clear_empties_it(
    local_archive, published, tmp_path
) -> None:
    cache = tmp_path / "cache"
    got = dandifs_get(local_archive, f"/dandisets/000001/{published}", tmp_path / "one", cache)
    blobs = got["files"] - 1  # dandiset.yaml is rendered, not fetched
    stats = dandifs_cache("stats", cache)
    assert stats["objects"] == blobs and stats["block_bytes"] >= got["bytes"] // 2
    cleared = dandifs_cache("clear", cache)
    assert cleared["objects"] == blobs
    assert dandifs_cache("stats", cache) | {"cache_dir": None} == {
        "cache_dir": None, "objects": 0, "block_bytes": 0, "metadata_bytes": 0}
    local_archive.reset_s3_stats()
    dandifs_get(local_archive, f"/dandisets/000001/{published}", tmp_path / "two", cache)
    assert local_archive.s3_stats()["bytes_sent"] >= got["bytes"] // 2  # fetched anew
