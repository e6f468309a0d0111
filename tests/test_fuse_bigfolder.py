"""A folder of 10,000 assets through the mount of the `--seed big` archive (`big_mount`).

The kernel reads a big folder in many READDIR requests, each resuming at the offset the
previous one ended with; `telldir`/`seekdir` hand such offsets back later.  Both must
neither repeat nor skip a name.
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from fuse_support import MountProcess, libc_listing_with_seek

pytestmark = pytest.mark.slow

EXPECTED = {f"file-{index:05d}.dat" for index in range(10_000)}


def bulk(mount: MountProcess):
    return mount.mountpoint / "dandisets" / "000004" / "draft" / "bulk"


def test_listing_10000_assets_gives_each_name_once(big_mount) -> None:
    started = time.perf_counter()
    names = os.listdir(bulk(big_mount))
    elapsed = time.perf_counter() - started
    assert len(names) == len(EXPECTED) and set(names) == EXPECTED
    print(f"cold listdir of 10,000 assets: {elapsed:.2f} s")


def test_seekdir_back_into_a_big_folder_resumes_exactly(big_mount) -> None:
    names, rest, again = libc_listing_with_seek(bulk(big_mount), 5_000)
    names = [name for name in names if name not in (".", "..")]
    assert len(names) == len(set(names)) == 10_000
    assert again == rest and len(rest) >= 5_000


def test_ls_lR_and_find_list_every_asset(big_mount) -> None:
    listing = subprocess.run(["ls", "-l", str(bulk(big_mount))], capture_output=True,
                             text=True, check=True).stdout.splitlines()
    files = [line for line in listing if line.startswith("-")]
    assert len(files) == 10_000 and all(" 1024 " in line for line in files)
    found = subprocess.run(["find", str(bulk(big_mount)), "-type", "f"], capture_output=True,
                           text=True, check=True).stdout.split()
    assert {os.path.basename(path) for path in found} == EXPECTED
