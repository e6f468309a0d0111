"""The disk store on a real filesystem: persistence, record integrity after crashes,
several processes at once, and eviction."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dandifs.cache import ObjectRef
from dandifs.cache.disk import DiskStore
from dandifs.cache.record import BlockBitmap, BlockRecord, encode

BLOCK = 64 << 10


def content(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def blocks_of(data: bytes) -> dict[int, bytes]:
    return {i // BLOCK: data[i : i + BLOCK] for i in range(0, len(data), BLOCK)}


def store_at(path: Path, capacity: int = 1 << 30) -> DiskStore:
    return DiskStore(path, block_size=BLOCK, capacity=capacity)


def put(store: DiskStore, ref: ObjectRef, data: bytes, indices) -> None:
    obj = store.object(ref)
    for index in indices:
        obj.add(index, blocks_of(data)[index])


def test_blocks_survive_into_a_new_store(tmp_path):
    data = content(1, 10 * BLOCK + 123)
    ref = ObjectRef("https://s3/blobs/a", len(data), "etag-a")
    first = store_at(tmp_path)
    put(first, ref, data, [0, 3, 10])
    assert first.object(ref).read([0, 3, 10]) == {i: blocks_of(data)[i] for i in (0, 3, 10)}
    assert store_at(tmp_path).object(ref).read([0, 3, 10]) == {}  # not flushed: not shared yet
    first.close()

    again = store_at(tmp_path).object(ref)
    assert again.read(range(11)) == {i: blocks_of(data)[i] for i in (0, 3, 10)}
    assert again.has(3) and not again.has(4)


def test_a_changed_etag_never_sees_old_blocks(tmp_path):
    data = content(2, 4 * BLOCK)
    store = store_at(tmp_path)
    put(store, ObjectRef("https://s3/x", len(data), "v1"), data, range(4))
    store.flush()
    assert store.object(ObjectRef("https://s3/x", len(data), "v2")).read(range(4)) == {}


def test_an_unusable_directory_is_refused_with_a_clear_message(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(OSError, match="cannot keep cached blocks in .*file: Not a directory"):
        store_at(tmp_path / "file")


def test_blocks_of_the_wrong_length_are_refused(tmp_path):
    obj = store_at(tmp_path).object(ObjectRef("u", 3 * BLOCK, "e"))
    with pytest.raises(ValueError, match="has 10 bytes"):
        obj.add(0, b"x" * 10)


# -- record integrity ------------------------------------------------------------------------


def test_bytes_without_a_record_claim_are_not_trusted(tmp_path):
    """What a crash between writing data and claiming it leaves: data, no claim."""
    data = content(3, 4 * BLOCK)
    ref = ObjectRef("https://s3/y", len(data), "e")
    store = store_at(tmp_path)
    put(store, ref, data, [0])
    store.flush()
    obj = store.object(ref)
    with open(obj.data_path, "r+b") as f:  # block 1 written (half of it), never claimed
        f.seek(BLOCK)
        f.write(data[BLOCK : BLOCK + BLOCK // 2])
    assert store_at(tmp_path).object(ref).read(range(4)) == {0: blocks_of(data)[0]}


def test_a_damaged_record_claims_nothing_and_is_rewritten(tmp_path):
    data = content(4, 4 * BLOCK)
    ref = ObjectRef("https://s3/z", len(data), "e")
    store = store_at(tmp_path)
    put(store, ref, data, range(4))
    store.close()
    record_path = store.object(ref).record_path
    record_path.write_bytes(record_path.read_bytes()[:-3])

    fresh = store_at(tmp_path)
    obj = fresh.object(ref)
    assert obj.read(range(4)) == {}
    put(fresh, ref, data, [2])
    fresh.flush()
    assert store_at(tmp_path).object(ref).read(range(4)) == {2: blocks_of(data)[2]}


def test_a_record_does_not_vouch_for_a_recreated_data_file(tmp_path):
    data = content(5, 2 * BLOCK)
    ref = ObjectRef("https://s3/w", len(data), "e")
    store = store_at(tmp_path)
    put(store, ref, data, range(2))
    store.close()
    obj = store.object(ref)
    replacement = obj.data_path.with_name("replacement")
    replacement.write_bytes(b"\0" * len(data))  # a new inode while the old one still exists
    os.replace(replacement, obj.data_path)
    assert store_at(tmp_path).object(ref).read(range(2)) == {}


def test_a_record_for_another_object_is_ignored(tmp_path):
    ref = ObjectRef("https://s3/v", 2 * BLOCK, "e")
    store = store_at(tmp_path)
    obj = store.object(ref)
    obj.data_path.parent.mkdir(parents=True)
    obj.data_path.write_bytes(b"\1" * (2 * BLOCK))
    present = BlockBitmap(2)
    present.update([0, 1])
    inode = os.stat(obj.data_path).st_ino
    record = BlockRecord("someone else\ne", BLOCK, 2 * BLOCK, inode, present)
    obj.record_path.write_bytes(encode(record))
    assert obj.read(range(2)) == {}


def test_scan_removes_stale_temporaries_and_orphan_records(tmp_path):
    store = store_at(tmp_path)
    shard = store.root / "ab"
    shard.mkdir()
    stale, recent = shard / "k.blocks.1.aa.tmp", shard / "k.blocks.1.bb.tmp"
    orphan = shard / "o.blocks"
    for path in (stale, recent, orphan):
        path.write_bytes(b"x")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    list(store.scan())
    assert not stale.exists() and recent.exists() and not orphan.exists()


CRASHING_WRITER = textwrap.dedent(
    """
    import itertools, random, sys
    from dandifs.cache import ObjectRef
    from dandifs.cache.disk import DiskStore
    directory, block = sys.argv[1], int(sys.argv[2])
    store = DiskStore(directory, block_size=block, capacity=1 << 30)
    print("ready", flush=True)
    for n in itertools.count():
        data = random.Random(n).randbytes(64 * block)
        obj = store.object(ObjectRef(f"https://s3/crash/{n}", len(data), "e"))
        order = list(range(64))
        random.Random(-n).shuffle(order)
        for index in order:
            obj.add(index, data[index * block : (index + 1) * block])
            store.flush()
    """
)


@pytest.mark.parametrize("delay", [0.1, 0.2, 0.4])
def test_a_writer_killed_mid_flush_leaves_only_true_claims(tmp_path, delay):
    """kill -9 at an arbitrary point: every claimed block holds exactly its bytes.

    The writer flushes each block on its own, object after object, until it is killed.
    """
    block = 16 << 10
    child = subprocess.Popen(
        [sys.executable, "-c", CRASHING_WRITER, str(tmp_path), str(block)], stdout=subprocess.PIPE
    )
    assert child.stdout is not None and child.stdout.readline() == b"ready\n"
    time.sleep(delay)
    child.send_signal(signal.SIGKILL)
    child.wait()
    store = DiskStore(tmp_path, block_size=block, capacity=1 << 30)
    claimed = 0
    for n in range(10_000):
        data = random.Random(n).randbytes(64 * block)
        obj = store.object(ObjectRef(f"https://s3/crash/{n}", len(data), "e"))
        if not obj.data_path.exists():
            break
        found = obj.read(range(64))
        assert all(found[i] == data[i * block : (i + 1) * block] for i in found)
        claimed += len(found)
    assert claimed > 0


CONCURRENT_WRITER = textwrap.dedent(
    """
    import random, sys
    from dandifs.cache import ObjectRef
    from dandifs.cache.disk import DiskStore
    directory, (first, step, block) = sys.argv[1], map(int, sys.argv[2:5])
    data = random.Random(11).randbytes(48 * block)
    ref = ObjectRef("https://s3/shared", len(data), "e")
    store = DiskStore(directory, block_size=block, capacity=1 << 30)
    obj = store.object(ref)
    for index in range(first, 48, step):
        obj.add(index, data[index * block : (index + 1) * block])
        if index % 4 == 0:
            store.flush()
    store.close()
    """
)


def test_two_processes_writing_one_object_merge_their_claims(tmp_path):
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT_WRITER, str(tmp_path), *map(str, (first, step, BLOCK))]
        )
        for first, step in ((0, 2), (1, 2), (0, 3))
    ]
    assert [writer.wait(timeout=60) for writer in writers] == [0, 0, 0]
    data = content(11, 48 * BLOCK)
    shared = store_at(tmp_path).object(ObjectRef("https://s3/shared", len(data), "e"))
    found = shared.read(range(48))
    assert found == blocks_of(data)


# -- eviction --------------------------------------------------------------------------------


def test_eviction_removes_least_recently_used_objects_down_to_the_low_water_mark(tmp_path):
    capacity = 20 * BLOCK
    store = store_at(tmp_path, capacity)
    refs = [ObjectRef(f"https://s3/o{i}", 8 * BLOCK, "e") for i in range(3)]
    for age, ref in zip((300, 200, 100), refs):
        data = content(20 + age, ref.size)
        put(store, ref, data, range(8))
        store.flush()
        past = time.time() - age
        os.utime(store.object(ref).data_path, (past, past))
    assert store.over_capacity  # 24 blocks in a 20-block store
    removed = store.evict()
    assert removed == [refs[0].key]  # the oldest only: 16 blocks <= 18 (90%)
    assert not store.object(refs[0]).data_path.exists()
    assert store.usage == 16 * BLOCK and not store.over_capacity
    assert store_at(tmp_path, capacity).object(refs[2]).read(range(8)).keys() == set(range(8))


def test_a_reader_of_an_evicted_object_never_gets_wrong_bytes(tmp_path):
    data = content(30, 8 * BLOCK)
    ref = ObjectRef("https://s3/e", len(data), "e")
    writer = store_at(tmp_path, 8 * BLOCK)
    put(writer, ref, data, range(8))
    writer.flush()
    reader = store_at(tmp_path, 8 * BLOCK).object(ref)  # "another process"
    assert reader.read([0]) == {0: blocks_of(data)[0]}
    other = ObjectRef("https://s3/f", 4 * BLOCK, "e")
    put(writer, other, content(31, 4 * BLOCK), range(4))
    writer.flush()
    writer.evict()
    found = reader.read(range(8))
    assert all(found[i] == blocks_of(data)[i] for i in found)


def test_one_object_never_takes_more_than_the_low_water_share(tmp_path):
    store = store_at(tmp_path, capacity=10 * BLOCK)
    data = content(40, 20 * BLOCK)
    ref = ObjectRef("https://s3/big", len(data), "e")
    put(store, ref, data, range(20))
    store.flush()
    kept = store_at(tmp_path, 10 * BLOCK).object(ref).read(range(20))
    assert sorted(kept) == list(range(9))  # its first 9 blocks: 90% of 10
    assert not store.over_capacity
