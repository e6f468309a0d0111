"""The on-disk record of which blocks of a cached object are present.

A record names the object it describes (identity, block size, object size) and the data
file it belongs to (inode number), so that a record can never vouch for blocks of another
object or of a data file that was deleted and created again.  A CRC over the whole record
makes a damaged record read as "nothing present" instead of as wrong claims.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

MAGIC = b"DFSBLK1\n"
_HEADER = struct.Struct("<QQQI")  # block size, object size, data inode, identity length
_CRC = struct.Struct("<I")


class RecordError(ValueError):
    """A record that cannot be trusted: truncated, damaged, or of another format."""


class BlockBitmap:
    """One bit per block: set when the block's bytes are durably in the data file."""

    def __init__(self, block_count: int, bits: bytes | None = None) -> None:
        self.block_count = block_count
        size = -(-block_count // 8)
        if bits is None:
            self._bits = bytearray(size)
        elif len(bits) != size:
            raise RecordError(f"bitmap of {len(bits)} bytes for {block_count} blocks")
        else:
            self._bits = bytearray(bits)

    def __contains__(self, index: object) -> bool:
        if not isinstance(index, int) or not 0 <= index < self.block_count:
            return False
        return bool(self._bits[index >> 3] & (1 << (index & 7)))

    def add(self, index: int) -> None:
        if not 0 <= index < self.block_count:
            raise IndexError(f"block {index} is outside 0..{self.block_count - 1}")
        self._bits[index >> 3] |= 1 << (index & 7)

    def update(self, indices: Iterable[int]) -> None:
        for index in indices:
            self.add(index)

    def __iter__(self) -> Iterator[int]:
        for byte_index, byte in enumerate(self._bits):
            if byte:
                for bit in range(8):
                    if byte & (1 << bit):
                        yield byte_index * 8 + bit

    def __len__(self) -> int:
        return sum(bin(byte).count("1") for byte in self._bits)

    def to_bytes(self) -> bytes:
        return bytes(self._bits)

    def copy(self) -> BlockBitmap:
        return BlockBitmap(self.block_count, bytes(self._bits))


@dataclass(frozen=True)
class BlockRecord:
    identity: str
    block_size: int
    object_size: int
    data_inode: int
    present: BlockBitmap

    def describes(self, identity: str, block_size: int, object_size: int) -> bool:
        return (self.identity, self.block_size, self.object_size) == (
            identity,
            block_size,
            object_size,
        )


def encode(record: BlockRecord) -> bytes:
    identity = record.identity.encode()
    body = b"".join(
        [
            MAGIC,
            _HEADER.pack(record.block_size, record.object_size, record.data_inode, len(identity)),
            identity,
            record.present.to_bytes(),
        ]
    )
    return body + _CRC.pack(zlib.crc32(body))


def decode(data: bytes) -> BlockRecord:
    if len(data) < len(MAGIC) + _HEADER.size + _CRC.size or not data.startswith(MAGIC):
        raise RecordError("not a block record")
    body, (crc,) = data[: -_CRC.size], _CRC.unpack(data[-_CRC.size :])
    if zlib.crc32(body) != crc:
        raise RecordError("block record checksum mismatch")
    block_size, object_size, data_inode, identity_length = _HEADER.unpack_from(body, len(MAGIC))
    if block_size <= 0:
        raise RecordError("block record with a zero block size")
    offset = len(MAGIC) + _HEADER.size
    try:
        identity = body[offset : offset + identity_length].decode()
    except UnicodeDecodeError as exc:
        raise RecordError("block record identity is not UTF-8") from exc
    bits = body[offset + identity_length :]
    block_count = -(-object_size // block_size)
    present = BlockBitmap(block_count, bits)
    return BlockRecord(identity, block_size, object_size, data_inode, present)
