"""Chunk-index nodes found in HDF5 bytes (dandifs.core.hdf5index), checked against files
written by h5py in the test and against h5py's own chunk addresses, plus hand-built nodes."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import h5py
import numpy as np
import pytest

from dandifs.core.hdf5index import (
    Regions,
    chunk_index_nodes,
    child_nodes,
    find_superblock,
    read_chunk_node,
)

UNDEFINED = 0xFFFF_FFFF_FFFF_FFFF

#: name -> (shape, chunks, dtype, compressed); roots of level 0, 1 and 2, ranks 1 to 4.
DATASETS = {
    "one_d": ((20_000,), (10,), "i4", False),  # 2,000 chunks: a level-1 root
    "two_d": ((300, 300), (10, 10), "f4", False),  # 900 chunks
    "three_d": ((40, 40, 40), (4, 4, 4), "u1", False),  # 1,000 chunks
    "four_d": ((8, 8, 8, 8), (2, 2, 2, 2), "u2", False),  # 256 chunks
    "gzip_two_d": ((200, 150), (7, 9), "i2", True),  # edge chunks, sizes vary
    "deep_one_d": ((5_000,), (1,), "u1", False),  # > 64 * 64 chunks: a level-2 root
    "few": ((10, 10), (5, 5), "f8", False),  # 4 chunks: a level-0 root
}


def write_datasets(path: Path, **file_options: object) -> dict[str, set[int]]:
    """Write DATASETS; returns each dataset's chunk addresses as h5py reports them."""
    rng = np.random.default_rng(7)
    with h5py.File(path, "w", **file_options) as handle:
        for name, (shape, chunks, dtype, compressed) in DATASETS.items():
            data = rng.integers(0, 100, size=shape).astype(dtype)
            handle.create_dataset(
                name, data=data, chunks=chunks, compression="gzip" if compressed else None
            )
    return chunk_addresses(path)


def chunk_addresses(path: Path) -> dict[str, set[int]]:
    """Each dataset's chunk addresses as h5py reports them (`get_chunk_info`, all at once)."""
    found: dict[str, set[int]] = {}
    with h5py.File(path, "r") as handle:
        for name in DATASETS:
            chunks = found[name] = set()
            handle[name].id.chunk_iter(lambda info: chunks.add(info.byte_offset))
            assert len(chunks) == handle[name].id.get_num_chunks()
    return found


def raw_nodes(data: bytes) -> dict[int, tuple[int, int, int, int]]:
    """Every "TREE" signature of type 1 in the file: position -> (level, entries, left, right),
    read with struct alone (offsets of 8 bytes), to check the module against."""
    found = {}
    position = data.find(b"TREE")
    while position >= 0:
        kind, level, entries, left, right = struct.unpack_from("<BBHQQ", data, position + 4)
        if kind == 1:
            found[position] = (level, entries, left, right)
        position = data.find(b"TREE", position + 1)
    return found


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[bytes, dict[str, set[int]]]:
    path = tmp_path_factory.mktemp("hdf5index") / "chunked.h5"
    addresses = write_datasets(path)
    return path.read_bytes(), addresses


def test_every_chunk_index_node_is_recognised_with_its_rank(written) -> None:
    data, addresses = written
    nodes = {node.position: node for node in chunk_index_nodes(Regions({0: data}), len(data))}
    assert set(nodes) == set(raw_nodes(data))
    rank_of_chunk = {
        address: len(DATASETS[name][0]) for name, chunks in addresses.items() for address in chunks
    }
    leaves = [node for node in nodes.values() if node.level == 0]
    for leaf in leaves:
        assert {rank_of_chunk[child] for child in leaf.children} == {leaf.rank}
        # h5py reads a node as one piece of 24 + 2K * (key + 8) + key bytes, K = 32
        key = 8 + 8 * (leaf.rank + 1)
        assert leaf.size == 24 + 64 * (key + 8) + key
    # the leaves' children are exactly the chunks h5py knows, each once
    children = [child for leaf in leaves for child in leaf.children]
    assert sorted(children) == sorted(rank_of_chunk)
    assert {node.level for node in nodes.values()} == {0, 1, 2}


def test_internal_nodes_lead_one_level_down(written) -> None:
    data, _ = written
    known = Regions({0: data})
    superblock = find_superblock(known)
    assert superblock is not None and (superblock.offset_size, superblock.chunk_k) == (8, 32)
    for node in chunk_index_nodes(known, len(data)):
        for child in node.children if node.level else ():
            below = read_chunk_node(known, child, superblock, len(data))
            assert below is not None and below.level == node.level - 1
            assert (below.rank, below.size) == (node.rank, node.size)


def test_child_nodes_of_the_roots_alone(written) -> None:
    """Given only the superblock and the roots (what the ends of a large file hold), the
    nodes one level down; walking down from them reaches every chunk h5py knows of."""
    data, addresses = written
    raw = raw_nodes(data)
    roots = [
        position
        for position, (level, _, left, right) in sorted(raw.items())
        if left == right == UNDEFINED and level >= 1
    ]
    assert sorted(raw[root][0] for root in roots) == [1, 1, 1, 1, 1, 2]  # "few": level 0
    regions = {0: data[:96]} | {root: data[root : root + 4096] for root in roots}
    found = child_nodes(regions, len(data))

    known = Regions({0: data})
    superblock = find_superblock(known)
    given = Regions(regions)
    for extent in found:
        node = read_chunk_node(known, extent.start, superblock, len(data))
        assert node is not None and len(extent) == node.size
        assert not given.covers(extent.start, 4)
    # what was found, and what the given bytes already held, leads to every chunk
    pending = [extent.start for extent in found] + [
        node.position for node in chunk_index_nodes(given, len(data)) if node.position not in roots
    ]
    chunks: set[int] = set()
    while pending:
        node = read_chunk_node(known, pending.pop(), superblock, len(data))
        assert node is not None
        (chunks.update if node.level == 0 else pending.extend)(node.children)
    assert chunks == set().union(*(addresses[name] for name in DATASETS if name != "few"))
    assert len(found) > 20


def test_nodes_already_known_are_not_named(written) -> None:
    data, _ = written
    assert child_nodes({0: data}, len(data)) == []


def test_no_superblock_no_nodes(written) -> None:
    data, _ = written
    assert child_nodes({100: data[100:]}, len(data)) == []


def test_a_node_cut_off_by_the_known_bytes_is_left_alone(written) -> None:
    data, _ = written
    root = min(
        position
        for position, (level, _, left, right) in raw_nodes(data).items()
        if level == 1 and left == right == UNDEFINED
    )
    whole = child_nodes({0: data[:96], root: data[root : root + 4096]}, len(data))
    cut = child_nodes({0: data[:96], root: data[root : root + 100]}, len(data))
    assert whole and cut == []


def test_files_of_the_latest_format_have_no_version_1_chunk_index(tmp_path) -> None:
    path = tmp_path / "latest.h5"
    addresses = write_datasets(path, libver="latest")  # fixed arrays
    with h5py.File(path, "a", libver="latest") as handle:  # the other index types
        handle.create_dataset("one_unlimited", data=np.ones(5000), maxshape=(None,), chunks=(10,))
        handle.create_dataset(
            "two_unlimited", data=np.ones((100, 100)), maxshape=(None, None), chunks=(5, 5)
        )
    data = path.read_bytes()
    assert data[8] == 3  # superblock version
    assert sum(map(len, addresses.values())) > 9000
    assert list(chunk_index_nodes(Regions({0: data}), len(data))) == []


def test_a_user_block_moves_every_address(tmp_path) -> None:
    path = tmp_path / "userblock.h5"
    addresses = write_datasets(path, userblock_size=4096)
    data = path.read_bytes()
    known = Regions({0: data})
    superblock = find_superblock(known)
    assert superblock is not None and superblock.position == 4096
    leaves = [node for node in chunk_index_nodes(known, len(data)) if node.level == 0]
    found = {child for leaf in leaves for child in leaf.children}
    assert found == set().union(*addresses.values())


# -- hand-built nodes ----------------------------------------------------------------------------

FILE_SIZE = 1_000_000


def superblock_v0() -> bytes:
    """A version-0 superblock with 8-byte offsets and lengths (only its first fields matter)."""
    head = b"\x89HDF\r\n\x1a\n" + bytes([0, 0, 0, 0, 0, 8, 8, 0]) + struct.pack("<HHI", 4, 16, 0)
    return head + bytes(96 - len(head))


def chunk_node(
    level: int,
    keys: list[tuple[int, tuple[int, ...]]],
    children: list[int],
    siblings: tuple[int, int] = (UNDEFINED, UNDEFINED),
) -> bytes:
    """A type-1 node: keys are (stored size, offsets including the element's)."""
    body = b"TREE" + struct.pack("<BBHQQ", 1, level, len(children), *siblings)
    for index, (size, offsets) in enumerate(keys):
        body += struct.pack(f"<II{len(offsets)}Q", size, 0, *offsets)
        if index < len(children):
            body += struct.pack("<Q", children[index])
    return body


#: a level-1 node of a 2-D dataset (chunks of 10 x 10 float32) with three leaves
KEYS_2D = [(400, (0, 0, 0)), (400, (0, 100, 0)), (400, (100, 0, 0)), (0, (200, 200, 4))]
LEAVES = [500_000, 600_000, 700_000]
NODE_AT = 4096


def regions_with(node: bytes) -> dict[int, bytes]:
    """The superblock and the node, in the zero-filled space allocated to it."""
    return {0: superblock_v0(), NODE_AT: node + bytes(4096 - len(node))}


def test_a_hand_built_level_1_node_names_its_three_leaves() -> None:
    node = chunk_node(1, KEYS_2D, LEAVES)
    size = 24 + 64 * 40 + 32  # K = 32, keys of 32 bytes
    assert child_nodes(regions_with(node), FILE_SIZE) == [
        range(leaf, leaf + size) for leaf in LEAVES
    ]
    known = Regions(regions_with(node))
    parsed = read_chunk_node(known, NODE_AT, find_superblock(known), FILE_SIZE)
    assert parsed is not None and (parsed.level, parsed.rank, parsed.size) == (1, 2, size)
    # a node near the end of the file is cut to the file
    assert child_nodes(regions_with(chunk_node(1, KEYS_2D, [500_000, 600_000, FILE_SIZE - size])),
                       FILE_SIZE)[-1] == range(FILE_SIZE - size, FILE_SIZE)


@pytest.mark.parametrize(
    "node",
    [
        chunk_node(0, KEYS_2D, LEAVES),  # a leaf: its children are chunks, not nodes
        chunk_node(1, KEYS_2D, [500_000, 600_000, FILE_SIZE]),  # a child past the end
        chunk_node(1, KEYS_2D, [500_000, 600_000, FILE_SIZE - 100]),  # one not whole in it
        chunk_node(1, KEYS_2D, [500_000, 600_000, 40]),  # one inside the superblock
        chunk_node(1, KEYS_2D, [500_000, 500_000, 700_000]),  # one child twice
        chunk_node(1, KEYS_2D, LEAVES, siblings=(FILE_SIZE + 1, UNDEFINED)),  # bad sibling
        chunk_node(1, [KEYS_2D[0], KEYS_2D[2], KEYS_2D[1], KEYS_2D[3]], LEAVES),  # unsorted
        chunk_node(1, [(400, (0, 0, 8))] + KEYS_2D[1:], LEAVES),  # element offset not 0
        chunk_node(1, [(400, (i * 10, 0, 0)) for i in range(66)],
                   [10_000 * (i + 1) for i in range(65)]),  # more than 2K = 64 entries
        b"TREE\x00" + chunk_node(1, KEYS_2D, LEAVES)[5:],  # a group node (type 0)
        chunk_node(1, KEYS_2D, LEAVES)[:100],  # its keys zeroed
    ],
    ids=[
        "leaf", "past-end", "not-whole", "in-superblock", "twice", "sibling", "unsorted",
        "element-offset", "too-many-entries", "group-node", "zeroed-keys",
    ],
)
def test_implausible_nodes_name_nothing(node: bytes) -> None:
    assert child_nodes(regions_with(node), FILE_SIZE) == []


def test_a_superblock_of_version_1_gives_k(tmp_path) -> None:
    path = tmp_path / "k.h5"
    with h5py.File(path, "w", libver="earliest") as handle:
        handle.id.get_create_plist()  # the default: version 0, K = 32
    data = path.read_bytes()
    assert find_superblock(Regions({0: data})).chunk_k == 32
    version_1 = bytearray(superblock_v0())
    version_1[8] = 1
    version_1[24:26] = struct.pack("<H", 16)
    superblock = find_superblock(Regions({0: bytes(version_1)}))
    assert superblock is not None and superblock.chunk_k == 16
    # with K = 16 a node holds 32 entries and is smaller: 24 + 32 * 40 + 32 bytes
    node = chunk_node(1, KEYS_2D, LEAVES)
    assert child_nodes({0: bytes(version_1), NODE_AT: node}, FILE_SIZE)[0] == range(
        LEAVES[0], LEAVES[0] + 24 + 32 * 40 + 32
    )


def test_random_bytes_never_raise_and_stay_inside_the_file() -> None:
    rng = random.Random(12)
    for _ in range(200):
        noise = bytearray(rng.randbytes(8192))
        for _ in range(20):
            at = rng.randrange(0, 8000)
            noise[at : at + 6] = b"TREE" + bytes([1, rng.randrange(0, 3)])
        size = rng.randrange(10_000, 1 << 40)
        for extent in child_nodes({0: superblock_v0(), 96: bytes(noise)}, size):
            assert 96 <= extent.start < extent.stop <= size


def test_regions_merge_where_they_touch_or_overlap() -> None:
    regions = Regions({0: b"abcd", 4: b"efgh", 6: b"ghij", 20: b"xyz"})
    assert regions.spans == [(0, b"abcdefghij"), (20, b"xyz")]
    assert regions.at(3, 5) == b"defgh" and regions.at(8, 3) is None
    assert list(regions.find(b"gh")) == [6]
    assert Regions({0: b"abcdefgh", 2: b"cd", 5: b"fghijk"}).spans == [(0, b"abcdefghijk")]


def read_hand_built(node: bytes):
    known = Regions(regions_with(node))
    return read_chunk_node(known, NODE_AT, find_superblock(known), FILE_SIZE)


def test_a_node_that_fits_two_ranks_is_left_alone() -> None:
    """One chunk of a 1-D dataset (chunks of 1000 int32), then a stray byte: read as 3-D,
    the last key's size and mask (0) pass for an element offset, its first offset (1000)
    for a chunk's address, and the stray byte for the start of a larger last key."""
    leaf = chunk_node(0, [(4000, (0, 0)), (0, (1000, 4))], [5000]) + b"\x01"
    assert read_hand_built(leaf) is None
    # with chunks of 50, that "address" would lie inside the superblock: only 1-D fits
    leaf = chunk_node(0, [(200, (0, 0)), (0, (50, 4))], [5000]) + b"\x01"
    parsed = read_hand_built(leaf)
    assert parsed is not None and (parsed.rank, parsed.children) == (1, (5000,))


def test_a_leaf_key_of_a_chunk_stored_in_no_bytes_is_implausible() -> None:
    keys = [(400, (0, 0, 0)), (400, (0, 100, 0)), (0, (10, 200, 4))]
    assert read_hand_built(chunk_node(0, keys, [5000, 6000])).children == (5000, 6000)
    keys[1] = (0, (0, 100, 0))
    assert read_hand_built(chunk_node(0, keys, [5000, 6000])) is None
