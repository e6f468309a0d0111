"""The light-sheet OME-Zarr of `--seed big` (000006): its writer, and the archive serving it.

The writer's own tests use a small volume of the same kind; the slow ones read the image the
`--seed big` archive was seeded with, through the archive's zarr API and through a mount.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import numpy as np
import pytest
import zarr
from zarr_checksum import compute_zarr_checksum
from zarr_checksum.generators import yield_files_local

import conftest
from dandifs.localarchive.demo.bigzarr import LightSheet, write_light_sheet
from dandifs.localarchive.demodata import BIG_ZARR_PATH
from fuse_support import version_path

DANDISET = "000006"
SMALL = LightSheet(shape=(128, 256, 128), nuclei=300, seed=11)
METADATA_FILES = 2 + 2 * SMALL.levels  # .zgroup and .zattrs; each level's .zarray and .zattrs


def files_of(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("lightsheet") / "image.ome.zarr"
    write_light_sheet(path, SMALL)
    return path


def test_every_chunk_is_a_file_and_the_bytes_repeat(small_image: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.ome.zarr"
    write_light_sheet(again, SMALL)
    files = files_of(small_image)
    assert files == files_of(again)
    assert SMALL.chunk_files() == 4 * 8 * 4 + 2 * 4 * 2 + 1 * 2 * 1
    assert len(files) == SMALL.chunk_files() + METADATA_FILES
    assert "0/3/7/3" in files and "2/0/1/0" in files  # v2 keys, `/`-separated


def test_levels_average_the_level_above_and_are_described(small_image: Path) -> None:
    root = zarr.open_group(str(small_image), mode="r")
    [multiscale] = root.attrs["multiscales"]
    scales = [d["coordinateTransformations"][0]["scale"] for d in multiscale["datasets"]]
    assert [d["path"] for d in multiscale["datasets"]] == ["0", "1", "2"]
    assert scales == [[2.0, 1.0, 1.0], [4.0, 2.0, 2.0], [8.0, 4.0, 4.0]]
    finer = root["0"][...].astype(np.float64)
    for level in ("1", "2"):
        coarse = root[level]
        assert coarse.dtype == np.uint16 and coarse.chunks == SMALL.chunks
        z, y, x = (n // 2 for n in finer.shape)
        mean = finer.reshape(z, 2, y, 2, x, 2).mean(axis=(1, 3, 5))
        # averaged before rounding, so each level is within rounding of its finer level's mean
        assert np.abs(coarse[...] - mean).max() <= 1.0
        finer = coarse[...].astype(np.float64)
    data = root["0"][...]
    assert data.min() > 0  # no chunk equals the fill value: every chunk is written
    assert data.max() > 1000 and 95 <= np.median(data) <= 200  # nuclei over a dark field


def test_the_seeded_image_has_tens_of_thousands_of_chunk_files() -> None:
    assert LightSheet().chunk_files() == 23_360
    with pytest.raises(ValueError, match="multiple of the block"):
        LightSheet(shape=(100, 256, 256))


@pytest.fixture(scope="module")
def local_copy() -> Path:
    """The generated image the archive was seeded with."""
    return conftest.test_data_dir() / "demo-cache" / "bigzarr" / DANDISET / BIG_ZARR_PATH


@pytest.mark.slow
def test_the_archive_lists_the_image_with_its_checksum(big_archive, local_copy: Path) -> None:
    api = big_archive["api_url"]
    [asset] = httpx.get(f"{api}/dandisets/{DANDISET}/versions/draft/assets/",
                        params={"path": BIG_ZARR_PATH}, timeout=60).json()["results"]
    record = httpx.get(f"{api}/zarr/{asset['zarr']}/", timeout=60).json()
    expected = compute_zarr_checksum(yield_files_local(local_copy))
    assert record["status"] == "Complete"
    assert (record["checksum"], record["file_count"], record["size"]) == (
        str(expected), LightSheet().chunk_files() + METADATA_FILES, expected.size)


@pytest.mark.slow
def test_zarr_python_reads_the_image_through_the_mount(big_mount, local_copy: Path) -> None:
    path = version_path(big_mount.mountpoint, DANDISET, "draft") / BIG_ZARR_PATH
    mounted = zarr.open_group(str(path), mode="r")
    local = zarr.open_group(str(local_copy), mode="r")
    assert mounted.attrs.asdict() == local.attrs.asdict()
    box = (slice(300, 340), slice(480, 560), slice(500, 530))  # 2 x 3 x 2 chunks, unaligned
    assert np.array_equal(mounted["0"][box], local["0"][box])
    assert np.array_equal(mounted["2"][...], local["2"][...])
    assert sorted(os.listdir(path / "2" / "0")) == sorted(os.listdir(local_copy / "2" / "0"))
