"""The dandi-etag of written bytes equals dandischema's `DandiETag.from_file`, whether it was
streamed while the bytes arrived in order or computed again after out-of-order writes."""

from __future__ import annotations

import os
import random

import pytest
from dandischema.digests.dandietag import DandiETag

from dandifs.upload.digest import PART_SIZE, StreamedETag, dandi_etag


def write_in_order(path, data: bytes, chunk: int) -> StreamedETag:
    streamed = StreamedETag()
    with open(path, "wb") as out:
        for offset in range(0, len(data), chunk):
            piece = data[offset : offset + chunk]
            out.write(piece)
            streamed.wrote(offset, piece)
    return streamed


@pytest.mark.parametrize(
    "size", [1, 1000, PART_SIZE - 1, PART_SIZE, PART_SIZE + 1, 2 * PART_SIZE + 12345]
)
def test_streamed_etag_equals_dandischema_across_part_boundaries(tmp_path, size) -> None:
    data = random.Random(size).randbytes(size)
    path = tmp_path / "f.nwb"
    streamed = write_in_order(path, data, chunk=3 * 1024 * 1024 + 7)
    assert streamed.in_order and streamed.value() is not None
    assert streamed.value() == DandiETag.from_file(path).as_str()
    assert dandi_etag(path, streamed) == streamed.value()


def test_out_of_order_writes_fall_back_to_one_pass_over_the_file(tmp_path) -> None:
    path = tmp_path / "f.nwb"
    streamed = StreamedETag()
    with open(path, "wb") as out:
        out.write(b"\0" * 512)
        streamed.wrote(0, b"\0" * 512)
        out.write(b"x" * 4096)
        streamed.wrote(512, b"x" * 4096)
        out.seek(0)
        out.write(b"HDF")  # h5py rewrites its superblock at close
        streamed.wrote(0, b"HDF")
    assert not streamed.in_order and streamed.value() is None
    assert dandi_etag(path, streamed) == DandiETag.from_file(path).as_str()


def test_a_truncate_breaks_the_stream_and_an_empty_file_has_no_streamed_etag(tmp_path) -> None:
    streamed = StreamedETag()
    assert streamed.value() is None  # the archive refuses empty files: no etag to give
    streamed.wrote(0, b"abc")
    streamed.truncated(3)
    assert streamed.value() is not None
    streamed.truncated(1)
    assert streamed.value() is None
    path = tmp_path / "f"
    path.write_bytes(b"a")
    assert dandi_etag(path, streamed) == DandiETag.from_file(path).as_str()
    assert os.path.getsize(path) == 1
