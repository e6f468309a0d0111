"""The Neuropixels session of the `--seed big` archive, read with pynwb through the mount.

The file (000005, published) is the rich ecephys NWB the benchmarks read: the test checks
that the archive serves what labs' files hold (384 electrodes, 200 units with ragged spike
times, a gzip-compressed raw series in (30,000 x 64) chunks, LFP, behaviour, trials) and that
the metadata the archive lists for it is what dandi-cli extracts from an NWB file.
"""

from __future__ import annotations

import json
import os

import h5py
import httpx
import numpy as np
import pytest
from pynwb import NWBHDF5IO

import conftest
from dandifs.localarchive.demodata import NEUROPIXELS_PATH
from fuse_support import version_path

pytestmark = pytest.mark.slow

DANDISET = "000005"


@pytest.fixture(scope="module")
def published(big_archive) -> str:
    return conftest.published_version(big_archive["api_url"], DANDISET)


@pytest.fixture(scope="module")
def local_copy():
    """The generated file the archive was seeded with."""
    return conftest.test_data_dir() / "demo-cache" / "neuropixels" / DANDISET / NEUROPIXELS_PATH


def fetched_bytes(mount) -> int:
    return json.loads(os.getxattr(mount.mountpoint, "user.dandifs.stats"))["archive"][
        "bytes_received"
    ]


def test_pynwb_reads_the_session_through_the_mount(big_mount, published, local_copy) -> None:
    path = version_path(big_mount.mountpoint, DANDISET, published) / NEUROPIXELS_PATH
    size = path.stat().st_size
    assert size == local_copy.stat().st_size
    before = fetched_bytes(big_mount)
    with NWBHDF5IO(path, "r") as io:
        nwb = io.read()
        assert nwb.subject.subject_id == "npx01" and nwb.session_id == "20240101"
        assert len(nwb.electrodes) == 384
        assert {"location", "group", "x", "y", "rel_x", "rel_y", "filtering", "channel_name",
                "shank_electrode_number"} <= set(nwb.electrodes.colnames)
        assert set(nwb.electrodes["group_name"][:]) == {f"imec0.shank{n}" for n in range(4)}
        assert set(nwb.devices) == {"imec0", "camera0"}
        units = nwb.units
        assert len(units) == 200
        assert {"spike_times", "waveform_mean", "quality", "firing_rate",
                "spike_amplitudes"} <= set(units.colnames)
        counts = np.diff(units["spike_times"].data[:], prepend=0)
        assert counts.sum() == units["spike_times"].target.data.shape[0] and counts.min() > 0
        series = nwb.acquisition["ElectricalSeriesAP"]
        data = series.data
        assert data.shape == (1_000_000, 384) and data.dtype == np.int16
        assert data.chunks == (30_000, 64)
        assert data.compression == "gzip" and data.compression_opts == 4
        assert series.electrodes.data[:].tolist() == list(range(384))
        chunk = data[60_000:90_000, 128:192]
        lfp = nwb.processing["ecephys"]["LFP"]["ElectricalSeriesLF"]
        assert lfp.data.shape == (83_334, 384) and lfp.rate == 2500.0
        assert nwb.processing["behavior"]["Position"]["nose"].data.shape[1] == 2
        assert len(nwb.processing["behavior"]["licks"]) > 0
        assert len(nwb.trials) > 10 and "contrast" in nwb.trials.colnames
        spike_times = units.get_unit_spike_times(7)
    with h5py.File(local_copy, "r") as original:
        assert np.array_equal(chunk, original["acquisition/ElectricalSeriesAP/data"][
            60_000:90_000, 128:192])
        index = original["units/spike_times_index"][6:8]
        assert np.array_equal(spike_times, original["units/spike_times"][index[0]:index[1]])
    # Opening, the tables' columns and one chunk are a small part of the file.
    assert fetched_bytes(big_mount) - before < size // 10


def test_the_assets_metadata_is_what_dandi_cli_extracts(big_archive, published) -> None:
    page = httpx.get(
        f"{big_archive['api_url']}/dandisets/{DANDISET}/versions/{published}/assets/",
        params={"path": NEUROPIXELS_PATH, "metadata": "true"}, timeout=30,
    ).json()
    [asset] = page["results"]
    metadata = asset["metadata"]
    assert metadata["encodingFormat"] == "application/x-nwb"
    [participant] = metadata["wasAttributedTo"]
    assert participant["identifier"] == "npx01"
    assert participant["species"]["name"].startswith("Mus musculus")
    approaches = {item["name"] for item in metadata["approach"]}
    assert {"electrophysiological approach", "behavioral approach"} <= approaches
    techniques = {item["name"] for item in metadata["measurementTechnique"]}
    assert "spike sorting technique" in techniques
    measured = {item["value"] for item in metadata["variableMeasured"]}
    assert {"ElectricalSeries", "LFP", "Units", "SpatialSeries"} <= measured
    session = next(item for item in metadata["wasGeneratedBy"] if item["schemaKey"] == "Session")
    assert session["identifier"] == "20240101"
