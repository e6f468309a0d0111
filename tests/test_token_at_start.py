"""A token the archive refuses stops `dandifs mount` and `dandifs serve` at start, with a
message that says the token was refused and where it came from; nothing is mounted and no
port is served."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fuse_support import is_mounted, require_fuse

WRONG_TOKEN = "0" * 40
START_LIMIT_SECONDS = 120  # only proves the command does not hang


def run_dandifs(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    inherited = {key: value for key, value in os.environ.items() if key != "DANDI_API_KEY"}
    environment = {**inherited, "DANDI_NO_ET": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "dandifs", *args],
        capture_output=True, text=True, env=environment, timeout=START_LIMIT_SECONDS,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def mountpoint(tmp_path: Path) -> Path:
    require_fuse()
    folder = tmp_path / "mnt"
    folder.mkdir()
    return folder


def test_mount_with_a_refused_token_file_stops_and_names_the_file(
    local_archive, mountpoint: Path, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(WRONG_TOKEN + "\n")
    result = run_dandifs(
        "mount", str(mountpoint), "-i", local_archive.api_url,
        "--cache-dir", str(tmp_path / "cache"), "-o", f"token_file={token_file}",
    )
    assert result.returncode == 1, result.stderr
    assert "refused the API token" in result.stderr
    assert f"token_file={token_file}" in result.stderr
    assert not is_mounted(mountpoint)


def test_mount_with_a_refused_token_in_the_environment_names_the_variable(
    local_archive, mountpoint: Path, tmp_path: Path
) -> None:
    result = run_dandifs(
        "mount", str(mountpoint), "-f", "-i", local_archive.api_url,
        "--cache-dir", str(tmp_path / "cache"),
        env={"DANDI_API_KEY": WRONG_TOKEN},
    )
    assert result.returncode == 1, result.stderr
    assert "refused the API token from the environment variable DANDI_API_KEY" in result.stderr
    assert not is_mounted(mountpoint)


def test_mount_with_the_right_token_still_mounts(local_archive, mountpoint: Path, tmp_path: Path) -> None:
    result = run_dandifs(
        "mount", str(mountpoint), "-i", local_archive.api_url,
        "--cache-dir", str(tmp_path / "cache"), env={"DANDI_API_KEY": local_archive.token},
    )
    try:
        assert result.returncode == 0, result.stderr
        assert is_mounted(mountpoint)
    finally:
        subprocess.run(["fusermount3", "-u", str(mountpoint)], check=False)


def test_serve_with_a_refused_token_stops_before_listening(local_archive) -> None:
    result = run_dandifs("serve", "-i", local_archive.api_url, "--port", "0", "--token", WRONG_TOKEN)
    assert result.returncode == 2, result.stderr
    assert "refused the API token from --token" in result.stderr
    assert " at http" not in result.stdout  # it never said where it serves
