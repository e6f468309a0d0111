"""A light-sheet volume with tens of thousands of chunk files, for benchmarks of Zarr reads.

Microscopy on DANDI is OME-Zarr whose levels hold thousands to millions of small chunk
files.  This image has the shape of one cleared-tissue acquisition: an ellipsoid of tissue
(dim autofluorescence that fades with depth, dotted with labelled nuclei) in a dark field, as
an sCMOS camera records it (offset, read noise, shot noise).  Level 0 is `(640, 1024, 1024)`
uint16 in `32^3` chunks (20,480 files); levels 1 and 2 average 2x2x2 voxels of the level
above (2,560 and 320 files): 23,360 chunk files in Zarr format 2, like the demo's image.

The volume is rendered in blocks of `chunk x 2^(levels-1)` voxels (128^3), each with its own
seeded generator, so memory stays at one block, a block's chunks on every level come from
that block alone, and the bytes do not depend on the order blocks are written in.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from .zarrstore import create_level, multiscales

OFFSET = 100.0
"""The camera's dark level (counts)."""
READ_NOISE = 1.5
AUTOFLUORESCENCE = 80.0
NUCLEUS_RADIUS = 4


@dataclass(frozen=True)
class LightSheet:
    shape: tuple[int, int, int] = (640, 1024, 1024)
    chunks: tuple[int, int, int] = (32, 32, 32)
    levels: int = 3
    voxel_size_um: tuple[float, float, float] = (2.0, 1.0, 1.0)
    nuclei: int = 40_000
    seed: int = 6006

    def __post_init__(self) -> None:
        if any(size % side for size, side in zip(self.shape, self.block)):
            raise ValueError(f"shape {self.shape} is not a multiple of the block {self.block}")

    @property
    def block(self) -> tuple[int, ...]:
        return tuple(side << (self.levels - 1) for side in self.chunks)

    def level_shape(self, level: int) -> tuple[int, ...]:
        return tuple(size >> level for size in self.shape)

    def chunk_files(self) -> int:
        """Chunk files on all levels; every chunk is written (none equals the fill value)."""
        return sum(
            math.prod(-(-size // side) for size, side in zip(self.level_shape(level), self.chunks))
            for level in range(self.levels)
        )


def write_light_sheet(path: Path, volume: LightSheet = LightSheet()) -> None:
    """Write `volume` as a `volume.levels`-level multiscale image at `path` (a directory)."""
    root = zarr.open_group(store=str(path), mode="w", zarr_format=2)
    arrays = [create_level(root, level, volume.level_shape(level), volume.chunks)
              for level in range(volume.levels)]
    nuclei = _nuclei(volume)
    for index, origin in enumerate(_block_origins(volume)):
        data = _render_block(volume, nuclei, origin, np.random.default_rng([volume.seed, index]))
        for level, array in enumerate(arrays):
            if level:
                data = _halve(data)
            start = [offset >> level for offset in origin]
            box = tuple(slice(s, s + n) for s, n in zip(start, data.shape))
            array[box] = np.rint(data).clip(0, np.iinfo(np.uint16).max).astype(np.uint16)
    root.attrs["multiscales"] = multiscales(
        "synthetic nuclear stain, cleared tissue", volume.voxel_size_um, volume.levels
    )


def _block_origins(volume: LightSheet) -> Iterator[tuple[int, int, int]]:
    bz, by, bx = volume.block
    depth, height, width = volume.shape
    for z in range(0, depth, bz):
        for y in range(0, height, by):
            for x in range(0, width, bx):
                yield z, y, x


def _radius2(volume: LightSheet, z: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Squared normalised distance from the tissue's centre (1 on its surface); broadcasts."""
    return sum(((axis - size / 2) / (0.46 * size)) ** 2
               for axis, size in zip((z, y, x), volume.shape))


@dataclass(frozen=True)
class _Nuclei:
    centres: np.ndarray  # (n, 3) int
    peaks: np.ndarray  # (n,) float32
    kernel: np.ndarray  # (2r+1,)^3 float32


def _nuclei(volume: LightSheet) -> _Nuclei:
    """Seeded nucleus centres inside the tissue, and their brightness."""
    rng = np.random.default_rng(volume.seed)
    candidates = rng.integers(0, volume.shape, size=(volume.nuclei * 3, 3))
    inside = _radius2(volume, *candidates.T.astype(np.float64)) < 0.9
    centres = candidates[inside][: volume.nuclei]
    peaks = rng.uniform(300.0, 1500.0, len(centres)).astype(np.float32)
    offsets = np.arange(-NUCLEUS_RADIUS, NUCLEUS_RADIUS + 1)
    dz, dy, dx = np.meshgrid(offsets, offsets, offsets, indexing="ij")
    sigma2 = (NUCLEUS_RADIUS / 2) ** 2
    kernel = np.exp(-(dz**2 + dy**2 + dx**2) / (2 * sigma2)).astype(np.float32)
    return _Nuclei(centres, peaks, kernel)


def _render_block(
    volume: LightSheet, nuclei: _Nuclei, origin: tuple[int, int, int], rng: np.random.Generator
) -> np.ndarray:
    """Photo-electrons plus camera noise (float32) of the block at `origin`."""
    size = np.asarray(volume.block)
    low = np.asarray(origin)
    axes = [np.arange(o, o + n, dtype=np.float32) for o, n in zip(origin, volume.block)]
    grid = (axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :])
    inside = np.clip((1 - _radius2(volume, *grid)) * 8, 0, 1)
    fade = 1 - 0.4 * axes[0] / volume.shape[0]
    signal = (AUTOFLUORESCENCE * inside * fade[:, None, None]).astype(np.float32)
    r = NUCLEUS_RADIUS
    near = np.all((nuclei.centres >= low - r) & (nuclei.centres < low + size + r), axis=1)
    for centre, peak in zip(nuclei.centres[near], nuclei.peaks[near]):
        first = np.maximum(centre - r, low)
        last = np.minimum(centre + r + 1, low + size)
        target = tuple(slice(a, b) for a, b in zip(first - low, last - low))
        source = tuple(slice(a, b) for a, b in zip(first - centre + r, last - centre + r))
        signal[target] += peak * nuclei.kernel[source]
    noise = rng.standard_normal(signal.shape, dtype=np.float32)
    noise *= np.sqrt(signal + READ_NOISE**2)
    return signal + noise + np.float32(OFFSET)


def _halve(data: np.ndarray) -> np.ndarray:
    """The mean of every 2x2x2 voxels."""
    z, y, x = (n // 2 for n in data.shape)
    return data.reshape(z, 2, y, 2, x, 2).mean(axis=(1, 3, 5), dtype=np.float32)
