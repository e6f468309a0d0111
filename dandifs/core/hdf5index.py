"""Where the chunk indexes of an HDF5 file lead next: the B-tree nodes a reader will want.

h5py finds a chunk of a chunked dataset through the dataset's chunk index.  In files
written with the default (earliest) format, NWB files among them, that index is a
version-1 B-tree of "TREE" nodes whose root usually sits in the metadata at the start or
end of the file, while the nodes under it were written wherever the data had grown to.  A
reader holding the root still waits a whole round trip for the node below before it can
ask for the chunk.  This module reads the nodes found in bytes already at hand (the ends of
the file) and names the nodes one level down, so that they can be fetched before the reader
asks for them.

A version-1 B-tree node (HDF5 file format specification, section III.A.1)::

    "TREE"  type u8 (1: raw-data chunks)  level u8 (0: leaf)  entries used u16
    left sibling address, right sibling address          (the superblock's offset size)
    key 0, child 0, key 1, child 1, ..., key N           (N = entries used)

and a chunk key is the chunk's stored size u32, its filter mask u32, then one u64 offset per
dimension of the dataset plus a last one for the element (0 in every key but the last).
Nodes are allocated for 2K entries, K being the superblock's "indexed storage internal node
K" (32 unless the superblock says otherwise).  The node does not record the dataset's
rank; it is inferred as the one rank under which the node is well formed: child addresses
inside the file, element offsets of 0 and keys in strictly increasing order.  A node that
fits no rank, or more than one, is left alone.

Pure: bytes in, byte ranges out.  Bad or foreign bytes never raise; what does not look like
a well-formed chunk-index node is ignored.  Only version-1 B-trees are understood: files
written with `libver="latest"` index their chunks with fixed arrays, extensible arrays or
version-2 B-trees instead, and nothing is found in them (no guess is ever returned).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

FORMAT_SIGNATURE = b"\x89HDF\r\n\x1a\n"
NODE_SIGNATURE = b"TREE"
CHUNK_NODE_TYPE = 1
DEFAULT_CHUNK_K = 32  # the library's default "indexed storage internal node K"
MAX_RANK = 32  # the most dimensions an HDF5 dataspace may have
OFFSET_SIZES = (2, 4, 8, 16, 32)
FIRST_USER_BLOCK = 512  # a superblock after a user block sits at 512, 1024, 2048, ...


@dataclass(frozen=True)
class Superblock:
    """What reading B-tree nodes needs from the superblock."""

    position: int  # where it starts; every address in the file is relative to it
    offset_size: int  # bytes of an address
    chunk_k: int  # chunk-index nodes hold up to 2K entries
    size: int  # its bytes: nothing else starts before position + size

    @property
    def undefined(self) -> int:
        """The address that means "none" (all bits set)."""
        return (1 << (8 * self.offset_size)) - 1


@dataclass(frozen=True)
class ChunkIndexNode:
    """One well-formed node of a chunk index, its addresses made absolute."""

    position: int
    level: int  # 0: its children are chunks; otherwise nodes one level down
    rank: int  # dimensions of the dataset it indexes
    size: int  # bytes allocated to each node of this index
    children: tuple[int, ...]


class Regions:
    """Known bytes of a file, given as {offset: bytes}, merged where they touch."""

    def __init__(self, regions: Mapping[int, bytes]) -> None:
        groups: list[tuple[int, list[bytes]]] = []  # runs of regions that touch or overlap
        end = -1
        for start, data in sorted(regions.items()):
            if not data:
                continue
            if groups and start <= end:
                if start + len(data) > end:
                    groups[-1][1].append(data[end - start :])
            else:
                groups.append((start, [data]))
            end = max(end, start + len(data))
        # a region standing alone is kept as given: no copy of a large tail
        self.spans: list[tuple[int, bytes]] = [
            (start, parts[0] if len(parts) == 1 else b"".join(parts)) for start, parts in groups
        ]

    def at(self, position: int, size: int) -> bytes | None:
        """Bytes `[position, position + size)`, or None unless all of them are known."""
        for start, data in self.spans:
            if start <= position and position + size <= start + len(data):
                return data[position - start : position - start + size]
        return None

    def covers(self, position: int, size: int) -> bool:
        return self.at(position, size) is not None

    def find(self, signature: bytes) -> Iterator[int]:
        """Positions in the file where `signature` starts, within known bytes."""
        for start, data in self.spans:
            index = data.find(signature)
            while index >= 0:
                yield start + index
                index = data.find(signature, index + 1)


def find_superblock(regions: Regions) -> Superblock | None:
    """The superblock at byte 0, or after a user block, if its bytes are known."""
    candidates = [0] + [FIRST_USER_BLOCK << shift for shift in range(32)]
    for position in candidates:
        head = regions.at(position, 32)
        if head is None or not head.startswith(FORMAT_SIGNATURE):
            continue
        version = head[8]
        if version in (0, 1):
            offset_size = head[13]
            chunk_k = int.from_bytes(head[24:26], "little") if version == 1 else DEFAULT_CHUNK_K
            # fixed fields, four addresses, the root group's symbol table entry
            size = 24 + 4 * (version == 1) + 4 * offset_size + 2 * offset_size + 24
        elif version in (2, 3):
            offset_size = head[9]
            chunk_k = DEFAULT_CHUNK_K  # a larger K would be in the superblock extension
            size = 12 + 4 * offset_size + 4
        else:
            return None
        if offset_size not in OFFSET_SIZES or chunk_k == 0:
            return None
        return Superblock(position, offset_size, chunk_k, size)
    return None


def read_chunk_node(
    regions: Regions, position: int, superblock: Superblock, file_size: int
) -> ChunkIndexNode | None:
    """The chunk-index node at `position`, or None unless one is there, known and well formed."""
    offset_size = superblock.offset_size
    header_size = 8 + 2 * offset_size
    header = regions.at(position, header_size)
    if header is None or header[:4] != NODE_SIGNATURE or header[4] != CHUNK_NODE_TYPE:
        return None
    level, entries = header[5], int.from_bytes(header[6:8], "little")
    if not 1 <= entries <= 2 * superblock.chunk_k:
        return None
    siblings = (
        int.from_bytes(header[8 + i * offset_size : 8 + (i + 1) * offset_size], "little")
        for i in range(2)
    )
    for sibling in siblings:
        if sibling != superblock.undefined and superblock.position + sibling >= file_size:
            return None
    fitting = [
        node
        for rank in range(1, MAX_RANK + 1)
        if (node := _as_rank(regions, position, level, entries, rank, superblock, file_size))
    ]
    return fitting[0] if len(fitting) == 1 else None


def _as_rank(
    regions: Regions,
    position: int,
    level: int,
    entries: int,
    rank: int,
    superblock: Superblock,
    file_size: int,
) -> ChunkIndexNode | None:
    """The node read as indexing a dataset of `rank` dimensions, if it is well formed so."""
    offset_size = superblock.offset_size
    key_size = 8 + 8 * (rank + 1)
    entry_size = key_size + offset_size
    header_size = 8 + 2 * offset_size
    node_size = header_size + 2 * superblock.chunk_k * entry_size + key_size
    body = regions.at(position + header_size, entries * entry_size + key_size)
    if body is None:
        return None
    key_format = struct.Struct(f"<II{rank + 1}Q")  # stored size, filter mask, offsets
    children: list[int] = []
    previous: list[int] | None = None
    for index in range(entries + 1):
        stored, _, *offsets = key_format.unpack_from(body, index * entry_size)
        if previous is not None and offsets <= previous:
            return None
        previous = offsets
        if index == entries:
            break
        if offsets[-1] != 0:
            return None
        if level == 0 and stored == 0:
            return None  # a leaf's key gives the size its chunk is stored in
        pointer_at = index * entry_size + key_size
        child = superblock.position + int.from_bytes(
            body[pointer_at : pointer_at + offset_size], "little"
        )
        extent = node_size if level > 0 else stored
        if child < superblock.position + superblock.size or child + extent > file_size:
            return None
        if child == position:
            return None
        children.append(child)
    if len(set(children)) != len(children):
        return None
    return ChunkIndexNode(position, level, rank, node_size, tuple(children))


def chunk_index_nodes(
    regions: Regions, file_size: int, *, min_level: int = 0
) -> Iterator[ChunkIndexNode]:
    """Every well-formed chunk-index node of at least `min_level` lying wholly within the
    known bytes (asking only for internal nodes skips the many leaves quickly)."""
    superblock = find_superblock(regions)
    if superblock is None:
        return
    for position in regions.find(NODE_SIGNATURE):
        level = regions.at(position + 5, 1)
        if level is None or level[0] < min_level:
            continue
        node = read_chunk_node(regions, position, superblock, file_size)
        if node is not None:
            yield node


def child_nodes(regions: Mapping[int, bytes], file_size: int) -> list[range]:
    """Byte ranges of the chunk-index nodes one level below the internal nodes (level >= 1)
    found in `regions` ({offset: bytes} of a file of `file_size` bytes), in file order of
    their parents, leaving out those the regions already hold.  Needs the superblock among
    the regions; without it, or in a file without version-1 chunk B-trees, nothing."""
    known = Regions(regions)
    found: dict[int, range] = {}
    for node in chunk_index_nodes(known, file_size, min_level=1):
        for child in node.children:
            extent = range(child, min(child + node.size, file_size))
            if child not in found and not known.covers(child, len(extent)):
                found[child] = extent
    return list(found.values())
