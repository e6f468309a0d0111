"""A spooled file takes any write pattern, reads back what was written, has the dandi-etag
dandischema gives for its bytes, and survives the process that wrote it."""

from __future__ import annotations

import random

from dandischema.digests.dandietag import DandiETag

from dandifs.upload.spool import Spool


def test_in_order_writes_are_hashed_as_they_come_and_read_back(tmp_path) -> None:
    spool = Spool(tmp_path / "uploads")
    data = random.Random(1).randbytes(5_000_000)
    spooled = spool.create("sub-01_ses-1.nwb")
    for offset in range(0, len(data), 65536):
        assert spooled.write(offset, data[offset : offset + 65536]) == len(data[offset : offset + 65536])
    spooled.commit()
    assert spooled.path.name == "sub-01_ses-1.nwb" and spooled.size == len(data)
    assert spooled.read(1234, 10) == data[1234:1244]
    assert spooled.hashed_as_written  # no second pass needed
    assert spooled.digest() == DandiETag.from_file(spooled.path).as_str()
    spooled.close()


def test_seeks_rewrites_holes_and_truncation_give_the_bytes_a_local_file_would(tmp_path) -> None:
    spool = Spool(tmp_path / "uploads")
    spooled = spool.create("x.nwb")
    local = tmp_path / "local.nwb"
    with open(local, "w+b") as reference:
        for offset, data in [(0, b"a" * 100), (4096, b"b" * 10), (50, b"HDF"), (200, b"c")]:
            spooled.write(offset, data)
            reference.seek(offset)
            reference.write(data)
        spooled.truncate(4100)
        reference.truncate(4100)
    spooled.commit()
    assert spooled.path.read_bytes() == local.read_bytes() and not spooled.hashed_as_written
    assert spooled.digest() == DandiETag.from_file(local).as_str()
    spooled.close()


def test_a_spooled_file_outlives_its_writer_and_is_discarded_whole(tmp_path) -> None:
    spooled = Spool(tmp_path / "uploads").create("a.nwb")
    spooled.write(0, b"kept")
    spooled.commit()
    spooled.close()
    later = Spool(tmp_path / "uploads")  # a new process
    again = later.reopen(spooled.path)
    assert again.read(0, 4) == b"kept"
    assert again.digest() == DandiETag.from_file(spooled.path).as_str()
    again.close()
    later.discard(spooled.path)
    assert list((tmp_path / "uploads").iterdir()) == []
