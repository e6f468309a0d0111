"""An OME-NGFF image written with zarr-python in Zarr format 2, as DANDI's Zarr assets are.

The image is a synthetic fluorescence volume: a smooth field of cell-like blobs over a dim
background with shot noise.  Level 0 is `(64, 512, 512)` uint16 in `(4, 64, 64)` chunks, so it
alone has 1,024 chunk files; level 1 halves every axis.  Chunks use `/` as the dimension
separator (as NGFF 0.4 requires), which also gives the store nested directories.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numcodecs
import numpy as np
import zarr


@dataclass(frozen=True)
class Volume:
    shape: tuple[int, int, int] = (64, 512, 512)
    chunks: tuple[int, int, int] = (4, 64, 64)
    voxel_size_um: tuple[float, float, float] = (2.0, 0.5, 0.5)
    cells: int = 300
    seed: int = 2024


COMPRESSOR = numcodecs.Blosc(cname="zstd", clevel=3, shuffle=numcodecs.Blosc.BITSHUFFLE)


def write_ngff(path: Path, volume: Volume = Volume()) -> None:
    """Write `volume` as a two-level multiscale image at `path` (a directory)."""
    root = zarr.open_group(store=str(path), mode="w", zarr_format=2)
    image = _render(volume)
    levels = [image, image[::2, ::2, ::2]]
    for level, data in enumerate(levels):
        create_level(root, level, data.shape, volume.chunks)[...] = data
    root.attrs["multiscales"] = multiscales(
        "synthetic nuclear stain", volume.voxel_size_um, len(levels)
    )


def create_level(
    root: zarr.Group, level: int, shape: tuple[int, ...], chunks: tuple[int, ...]
) -> zarr.Array:
    """An empty uint16 array `<level>` in `root`, in the layout NGFF 0.4 asks for."""
    return root.create_array(
        name=str(level),
        shape=shape,
        chunks=chunks,
        dtype=np.uint16,
        compressors=COMPRESSOR,
        chunk_key_encoding={"name": "v2", "separator": "/"},
    )


def multiscales(name: str, voxel_size_um: tuple[float, ...], levels: int) -> list[dict]:
    """The `multiscales` attribute of a `zyx` image whose level n is 2^n times coarser."""
    return [
        {
            "version": "0.4",
            "name": name,
            "axes": [{"name": axis, "type": "space", "unit": "micrometer"} for axis in "zyx"],
            "datasets": [
                {
                    "path": str(level),
                    "coordinateTransformations": [
                        {"type": "scale", "scale": [um * 2**level for um in voxel_size_um]}
                    ],
                }
                for level in range(levels)
            ],
        }
    ]


def _render(volume: Volume) -> np.ndarray:
    """Blobs of fixed radius at seeded positions, plus Poisson noise; never all-zero anywhere.

    No chunk equals the fill value, so zarr-python writes every chunk file.
    """
    rng = np.random.default_rng(volume.seed)
    depth, height, width = volume.shape
    field = np.zeros(volume.shape, dtype=np.float32)
    radius = 6
    offsets = np.arange(-radius, radius + 1)
    dz, dy, dx = np.meshgrid(offsets, offsets, offsets, indexing="ij")
    blob = np.exp(-(dz**2 + dy**2 + dx**2) / (2 * (radius / 2) ** 2)).astype(np.float32)
    centres = rng.integers([radius] * 3, [depth - radius, height - radius, width - radius],
                           size=(volume.cells, 3))
    brightness = rng.uniform(800.0, 3000.0, volume.cells).astype(np.float32)
    for (z, y, x), peak in zip(centres, brightness):
        field[z - radius : z + radius + 1, y - radius : y + radius + 1,
              x - radius : x + radius + 1] += peak * blob
    return rng.poisson(field + 100.0).astype(np.uint16)
