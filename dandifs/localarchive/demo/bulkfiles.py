"""Plain files for listing and throughput benchmarks: pseudo-random bytes, written fast."""

from __future__ import annotations

from pathlib import Path

import numpy as np

_BLOCK_BYTES = 64 * 1024 * 1024


def write_random_bytes(path: Path, size: int, seed: int) -> None:
    """`size` bytes of the PCG64 stream for `seed`, generated and written 64 MiB at a time.

    The raw bit-generator stream (not a distribution method) is used because NumPy keeps it
    identical across versions, so the file's checksum does not depend on the NumPy release.
    """
    bits = np.random.PCG64(seed)
    with path.open("wb") as out:
        remaining = size
        while remaining:
            block = min(remaining, _BLOCK_BYTES)
            words = bits.random_raw(-(-block // 8)).astype("<u8", copy=False)
            out.write(memoryview(words).cast("B")[:block])
            remaining -= block
