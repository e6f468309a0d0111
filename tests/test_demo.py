"""`dandifs demo --check`: the README's demo command starts every part and reads through both front ends."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import test_data_dir as archive_data_dir


def test_demo_starts_reads_through_webdav_and_fuse_and_stops(tmp_path: Path) -> None:
    mountpoint = tmp_path / "mnt"
    result = subprocess.run(
        [sys.executable, "-m", "dandifs", "demo", "--check", "--port", "0",
         "--data", str(archive_data_dir()), "--mountpoint", str(mountpoint)],
        capture_output=True, text=True, timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "WebDAV http://127.0.0.1:" in output and ": 200," in output
    assert "dandiset.yaml" in output and "sub-mouse01" in output, output
    assert not mountpoint.is_mount(), "the demo left its mount behind"
