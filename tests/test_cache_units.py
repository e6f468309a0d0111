"""Pure parts of the block cache: block arithmetic, LRU accounting, read-ahead decisions,
record encoding, settings and object identity, with worked vectors."""

from __future__ import annotations

import random

import pytest

from dandifs.cache import BlockLayout, CacheConfig, ObjectRef
from dandifs.cache.blocks import runs, split
from dandifs.cache.memory import MemoryStore
from dandifs.cache.readahead import ReadAheadPolicy
from dandifs.cache.record import BlockBitmap, BlockRecord, RecordError, decode, encode

KiB = 1 << 10

# -- block arithmetic ------------------------------------------------------------------------


def test_layout_counts_blocks_and_short_last_block():
    layout = BlockLayout(block_size=100, object_size=250)
    assert layout.block_count == 3
    assert [layout.bounds(i) for i in range(3)] == [(0, 100), (100, 200), (200, 250)]
    assert layout.block_length(2) == 50
    assert BlockLayout(100, 0).block_count == 0
    assert BlockLayout(100, 200).block_count == 2


@pytest.mark.parametrize(
    ("offset", "size", "expected"),
    [
        (0, 1, range(0, 1)),
        (99, 2, range(0, 2)),  # straddles a boundary
        (100, 100, range(1, 2)),  # exactly one block
        (0, 250, range(0, 3)),
        (240, 1000, range(2, 3)),  # clipped to the object's end
        (250, 10, range(0)),  # at the end: nothing
        (400, 10, range(0)),  # past the end: nothing
        (10, 0, range(0)),  # empty read
    ],
)
def test_span_maps_byte_ranges_to_blocks(offset, size, expected):
    assert BlockLayout(100, 250).span(offset, size) == expected


def test_byte_range_of_a_run_and_bad_input():
    layout = BlockLayout(100, 250)
    assert layout.byte_range(range(1, 3)) == (100, 250)
    with pytest.raises(IndexError):
        layout.bounds(3)
    with pytest.raises(ValueError, match="bad byte range"):
        layout.span(-1, 10)
    with pytest.raises(ValueError, match="block size"):
        BlockLayout(0, 10)


def test_runs_coalesce_adjacent_blocks_up_to_a_cap():
    assert list(runs([], 4)) == []
    assert list(runs([3], 4)) == [range(3, 4)]
    assert list(runs([0, 1, 2, 5, 6, 9], 4)) == [range(0, 3), range(5, 7), range(9, 10)]
    assert list(runs(range(10), 4)) == [range(0, 4), range(4, 8), range(8, 10)]
    assert list(runs([1, 2, 3, 4, 5], 1)) == [range(i, i + 1) for i in range(1, 6)]


def test_split_cuts_a_run_into_request_sized_pieces():
    assert list(split(range(3, 12), 4)) == [range(3, 7), range(7, 11), range(11, 12)]
    assert list(split(range(5, 5), 4)) == []


# -- memory LRU ------------------------------------------------------------------------------


def test_memory_store_evicts_least_recently_used_by_bytes():
    evicted = []
    store = MemoryStore(capacity=10, on_evict=evicted.append)
    store.put("a", b"1234")
    store.put("b", b"1234")
    assert store.get("a") == b"1234"  # a is now the most recent
    store.put("c", b"1234")  # 12 bytes > 10: b goes
    assert evicted == ["b"]
    assert store.bytes == 8 and len(store) == 2
    assert "a" in store and "c" in store and store.get("b") is None


def test_memory_store_replacing_and_discarding_keep_the_count_exact():
    store = MemoryStore(capacity=100)
    store.put("a", b"x" * 30)
    store.put("a", b"x" * 50)
    assert store.bytes == 50
    store.discard("a")
    store.discard("missing")
    assert store.bytes == 0 and len(store) == 0


def test_memory_store_refuses_a_block_larger_than_its_capacity():
    store = MemoryStore(capacity=3)
    store.put("big", b"1234")
    assert store.bytes == 0 and store.get("big") is None
    assert MemoryStore(capacity=0).bytes == 0


def test_memory_store_reservations_evict_blocks_and_turn_into_blocks():
    evicted = []
    store = MemoryStore(capacity=12, on_evict=evicted.append)
    store.put("a", b"1234")
    store.put("b", b"1234")
    store.reserve(8)  # a fetch of two blocks starts: a goes to make room
    assert evicted == ["a"] and store.bytes == 4 and store.reserved == 8 and store.total == 12
    assert store.room_for(4) and not store.room_for(5)  # b can still go, nothing more
    store.put("c", b"1234", reserved=4)  # its blocks arrive, one by one
    store.put("d", b"1234", reserved=4)
    assert evicted == ["a"] and store.reserved == 0 and store.total == 12
    store.reserve(4)  # b goes for the next fetch ...
    store.release(4)  # ... which failed
    assert evicted == ["a", "b"] and store.total == 8 and store.peak == 12


def test_memory_store_counts_held_blocks_after_letting_them_go():
    store = MemoryStore(capacity=12)
    store.put("a", b"1234")
    store.hold("a", 4)  # waiting for the disk
    store.hold("a", 4)  # once only
    assert store.held_bytes == 4 and store.held_out == 0 and store.total == 4
    store.put("b", b"1234")
    store.put("c", b"1234")
    store.put("d", b"1234")  # a leaves the LRU, its bytes stay alive: b goes too
    assert "a" not in store and "b" not in store
    assert store.bytes == 8 and store.held_out == 4 and store.total == 12
    assert store.room_for(8) and not store.room_for(9)  # c and d can go; a's bytes cannot
    store.reserve(8)
    assert store.bytes == 0 and store.total == 12
    store.put("a", b"1234", reserved=4)  # read back from the disk queue: counted once
    assert store.held_out == 0 and store.total == 8
    store.unhold("a")
    store.unhold("a")
    assert store.held_bytes == 0 and store.total == 8


def test_memory_store_bound_holds_after_every_step_unless_forced():
    """Random steps that keep to `room_for` (as read-ahead does) never pass the bound; one
    that does not (a read) passes it only by what it reserved itself."""
    pick = random.Random(3)
    store: MemoryStore[int] = MemoryStore(capacity=64)
    reservations: list[int] = []
    for step in range(5000):
        action = pick.choice(["put", "reserve", "store", "fail", "hold", "unhold", "get"])
        key = pick.randrange(40)
        if action == "put":
            store.put(key, b"x" * 4)
        elif action == "reserve" and store.room_for(8):
            store.reserve(8)
            reservations.append(8)
        elif action == "store" and reservations:
            store.put(key, b"x" * 4, reserved=4)
            store.put(key + 40, b"x" * 4, reserved=reservations.pop() - 4)
        elif action == "fail" and reservations:
            store.release(reservations.pop())
        elif action == "hold" and key in store and store.held_bytes + 4 <= 32:
            store.hold(key, 4)
        elif action == "unhold":
            store.unhold(key)
        elif action == "get":
            store.get(key)
        assert store.total <= 64, step
        assert store.total == store.bytes + store.reserved + store.held_out
    pinned = store.reserved + store.held_out
    store.reserve(100)  # a read larger than the bound: it may pass, every block goes
    assert store.bytes == 0 and store.total == 100 + pinned
    store.release(100)
    assert store.total <= 64


# -- read-ahead policy -------------------------------------------------------------------------


def policy(**overrides) -> ReadAheadPolicy:
    settings = dict(initial_blocks=2, max_blocks=8, tolerance=0)
    settings.update(overrides)
    return ReadAheadPolicy(BlockLayout(100, 10_000), **settings)


def test_first_read_fetches_no_read_ahead():
    assert policy().after_read(0, 50) == range(0)


def test_sequential_reads_grow_the_window_by_doubling_up_to_the_cap():
    p = policy()
    decisions = []
    windows = []
    for offset in range(0, 1600, 50):  # 50-byte reads: two per block
        decisions.append(p.after_read(offset, 50))
        windows.append(p.window)
    assert decisions[0] == range(0)
    assert decisions[1] == range(1, 3)  # second read, still block 0: initial window of 2
    assert decisions[2] == range(3, 6)  # block 1 entered: window 4, top up to block 5
    assert windows[:10] == [0, 2, 4, 4, 8, 8, 8, 8, 8, 8]  # capped at 8
    asked = [i for decision in decisions for i in decision]
    assert asked == sorted(set(asked))  # no block is asked for twice


def test_window_is_topped_up_only_after_half_of_it_was_used():
    p = policy(initial_blocks=8, max_blocks=8)
    p.after_read(0, 100)
    assert p.after_read(100, 100) == range(2, 10)  # window 8 in front of block 1
    assert p.after_read(200, 100) == range(0)  # 7 blocks still ahead: more than half
    assert p.after_read(300, 100) == range(0)
    assert p.after_read(400, 100) == range(0)  # 5 ahead
    assert p.after_read(500, 100) == range(10, 14)  # 4 ahead: refill to block 5 + 8


def test_a_wide_window_is_topped_up_one_request_at_a_time():
    p = policy(initial_blocks=8, max_blocks=8, step_blocks=2)
    p.after_read(0, 100)
    assert p.after_read(100, 100) == range(2, 10)
    assert p.after_read(200, 100) == range(0)  # one block free: less than a request
    assert p.after_read(300, 100) == range(10, 12)  # two free: one full request
    assert p.after_read(400, 100) == range(0)
    assert p.after_read(500, 100) == range(12, 14)


def test_the_first_window_covers_at_least_one_more_read_of_the_same_size():
    p = policy(initial_blocks=2, max_blocks=64)
    p.after_read(0, 500)
    assert p.after_read(500, 500) == range(10, 15)  # 5-block reads: 5 blocks ahead


def test_random_reads_never_read_ahead_and_reset_the_window():
    p = policy()
    for offset in (0, 5000, 1200, 9000, 300, 7000):
        assert p.after_read(offset, 10) == range(0)
        assert p.window == 0
    p.after_read(2000, 100)
    assert p.after_read(2100, 100) == range(22, 24)
    assert p.after_read(6000, 100) == range(0)  # a seek drops the window
    assert p.window == 0
    assert p.after_read(6100, 100) == range(62, 64)  # and it starts small again


def test_a_large_random_read_reads_ahead_by_its_own_size():
    p = policy(large_read=300)
    assert p.after_read(5000, 299) == range(0)  # small: nothing
    assert p.after_read(2000, 300) == range(23, 26)  # blocks 20-22 read, 3 more ahead
    assert p.window == 3
    assert p.after_read(2300, 100) == range(26, 30)  # a stream now: window 6 from block 24
    assert p.after_read(9900, 500) == range(0)  # nothing left past the end


def test_small_out_of_order_reads_within_tolerance_count_as_sequential():
    p = policy(tolerance=100)
    p.after_read(0, 100)
    assert p.after_read(150, 50)  # 50 bytes forward of where the last read ended
    assert p.window == 2
    p.after_read(120, 30)  # a little backward
    assert p.window == 2


def test_re_reading_the_same_bytes_is_neither_sequential_nor_a_seek():
    p = policy(tolerance=1000)
    for _ in range(5):
        assert p.after_read(100, 50) == range(0)
        assert p.window == 0
    p.after_read(150, 50)  # now it continues: sequential
    assert p.window == 2
    assert p.after_read(0, 10) == range(0)  # back to the header: the window survives
    assert p.window == 2


def test_read_ahead_stops_at_the_end_of_the_object():
    p = ReadAheadPolicy(BlockLayout(100, 450), initial_blocks=8, max_blocks=8, tolerance=0)
    p.after_read(0, 100)
    assert p.after_read(100, 100) == range(2, 5)
    assert p.after_read(200, 100) == range(0)


def test_read_ahead_disabled_by_a_zero_cap():
    p = policy(max_blocks=0)
    p.after_read(0, 100)
    assert p.after_read(100, 100) == range(0)


# -- records -----------------------------------------------------------------------------------


def test_bitmap_round_trip_and_counting():
    bitmap = BlockBitmap(20)
    bitmap.update([0, 7, 8, 19])
    assert list(bitmap) == [0, 7, 8, 19] and len(bitmap) == 4
    assert 19 in bitmap and 1 not in bitmap and 20 not in bitmap and -1 not in bitmap
    assert bitmap.to_bytes() == bytes([0b1000_0001, 0b0000_0001, 0b0000_1000])
    with pytest.raises(IndexError):
        bitmap.add(20)


def test_record_encodes_and_decodes_exactly():
    present = BlockBitmap(3)
    present.update([0, 2])
    record = BlockRecord("https://s3/blobs/abc\netag-1", 100, 250, 4242, present)
    decoded = decode(encode(record))
    assert (decoded.identity, decoded.block_size, decoded.object_size, decoded.data_inode) == (
        "https://s3/blobs/abc\netag-1",
        100,
        250,
        4242,
    )
    assert list(decoded.present) == [0, 2]
    assert decoded.describes("https://s3/blobs/abc\netag-1", 100, 250)
    assert not decoded.describes("https://s3/blobs/abc\netag-2", 100, 250)


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[:-1],  # truncated
        lambda data: data[:10],
        lambda data: b"",
        lambda data: data[:-8] + bytes([data[-8] ^ 1]) + data[-7:],  # a flipped bit
        lambda data: b"XXXXXXXX" + data[8:],  # another format
    ],
)
def test_damaged_records_are_refused(damage):
    present = BlockBitmap(30)
    present.update(range(30))
    data = encode(BlockRecord("id", 10, 300, 1, present))
    with pytest.raises(RecordError):
        decode(damage(data))


# -- settings and identity ---------------------------------------------------------------------


def test_config_derives_block_counts_and_caps_read_ahead_by_memory():
    config = CacheConfig(block_size=256 * KiB, memory_bytes=64 << 20, readahead_max_bytes=64 << 20)
    assert config.request_blocks == 32  # 8 MiB GETs
    assert config.readahead_initial_blocks == 2
    assert config.readahead_max_blocks == 64  # a quarter of 64 MiB, in 256 KiB blocks


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (dict(block_size=0), "block_size must be positive"),
        (dict(memory_bytes=-1), "memory_bytes must not be negative"),
        (dict(max_requests=0), "max_requests must be positive"),
        (dict(small_object_bytes=-5), "small_object_bytes must not be negative"),
        (dict(block_size=1 << 20, max_request_bytes=1 << 10), "smaller than one block"),
    ],
)
def test_config_refuses_bad_settings_with_a_clear_message(setting, message):
    with pytest.raises(ValueError, match=message):
        CacheConfig(**setting)


def test_object_identity_separates_etags_and_defaults_to_the_url():
    a = ObjectRef("https://s3/x", 10, "e1")
    assert a.identity == "https://s3/x"
    assert a.key == ObjectRef("https://s3/x", 10, "e1").key
    assert a.key != ObjectRef("https://s3/x", 10, "e2").key
    presigned = ObjectRef("https://s3/x?sig=1", 10, "e1", identity="blob-123")
    assert presigned.key == ObjectRef("https://s3/x?sig=2", 10, "e1", identity="blob-123").key
    assert a.persistent and not ObjectRef("https://s3/x", 10, None).persistent
    with pytest.raises(ValueError, match="negative"):
        ObjectRef("u", -1)
