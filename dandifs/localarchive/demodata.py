"""Demo data for the local archive: real NWB files (pynwb) and a real Zarr (zarr-python).

`build_demo_data(cache_dir)` generates the files once under `cache_dir` and returns the
`DemoData` the seeder turns into dandisets.  Later calls find the stamped tree and return at
once; content is deterministic (fixed seeds, dates and object ids), so checksums are stable.

Dandisets (`catalog.py` has the details):

* ``000001`` open, published + draft.  ``sub-mouse01/``, ``sub-mouse02/`` with ``_ecephys.nwb``
  and ``_behavior+ophys.nwb`` sessions.  The draft replaces
  ``sub-mouse02/sub-mouse02_ses-20240103_ecephys.nwb`` by a re-curated file of the same size
  but other bytes, and adds ``sub-mouse03/sub-mouse03_ses-20240110_behavior+ophys.nwb``.
* ``000002`` open, draft only: ``sub-mouse04/sub-mouse04_sample.ome.zarr`` (Zarr format 2,
  OME-NGFF 0.4, 1,152 chunk files) and ``sub-mouse04/sub-mouse04_ses-20240201_ophys.nwb``.
* ``000003`` embargoed, draft only: two small ``sub-rat01/..._ecephys.nwb`` files.
* ``000004`` (only with ``big=True``) open, draft only: ``bulk/file-00000.dat`` ...
  ``bulk/file-09999.dat`` (1 KiB each, all the same bytes, so one blob) and
  ``large/sequential-1GiB.bin`` (PCG64 stream, seed 4002).
* ``000005`` (only with ``big=True``) open, published (draft the same):
  ``sub-npx01/sub-npx01_ses-20240101_behavior+ecephys.nwb`` (about 390 MB), a Neuropixels
  session written as labs write one (`demo/neuropixels.py`): ``acquisition/ElectricalSeriesAP``
  int16 (1_000_000, 384) in gzip-compressed (30_000, 64) chunks, 384 electrodes, 200 units
  with ragged spike times and waveform means, trials, an LFP series and behaviour in
  processing modules.
* ``000006`` (only with ``big=True``) open, draft only:
  ``sub-mouse05/sub-mouse05_sample-brain01_stain-NeuN_SPIM.ome.zarr``, a light-sheet volume
  (Zarr format 2, OME-NGFF 0.4, three levels, level 0 ``(640, 1024, 1024)`` uint16 in ``32^3``
  chunks: 23,360 chunk files; `demo/bigzarr.py`).

The large file is ``000001`` / ``sub-mouse01/sub-mouse01_ses-20240101_ecephys.nwb`` (about
231 MB).  Its ``acquisition/ElectricalSeries/data`` is int16 of shape (1_800_000, 64),
uncompressed, in chunks of (10_000, 64) (1.28 MB each).  The canonical "one slice" for
benchmarks is ``acquisition/ElectricalSeries/data[500_000:510_000, :8]``: 160 kB of values
that lie in exactly one chunk (chunk row 50).
"""

from __future__ import annotations

from pathlib import Path

from .demo.cache import ensure_generated
from .demo.catalog import (
    BIG,
    BIG_ZARR,
    BIG_ZARR_PATH,
    DEMO,
    LARGE_BIN_PATH,
    NEUROPIXELS,
    NEUROPIXELS_PATH,
    ZARR_PATH,
)
from .spec import DemoData

__all__ = [
    "BIG_ZARR_PATH",
    "LARGE_BIN_PATH",
    "LARGE_NWB_PATH",
    "NEUROPIXELS_PATH",
    "ONE_SLICE",
    "ONE_SLICE_DATASET",
    "ZARR_PATH",
    "build_demo_data",
]

LARGE_NWB_PATH = "sub-mouse01/sub-mouse01_ses-20240101_ecephys.nwb"
ONE_SLICE_DATASET = "acquisition/ElectricalSeries/data"
ONE_SLICE = (slice(500_000, 510_000), slice(0, 8))


def build_demo_data(cache_dir: Path, *, big: bool = False) -> DemoData:
    """Generate (once) and describe the demo dandisets; `big` adds the benchmark dandisets."""
    cache_dir = Path(cache_dir)
    dandisets = []
    for part in (DEMO, BIG, NEUROPIXELS, BIG_ZARR) if big else (DEMO,):
        root = ensure_generated(cache_dir, part)
        dandisets.extend(plan.realize(root) for plan in part.dandisets)
    return DemoData(dandisets=tuple(dandisets))
