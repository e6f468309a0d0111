"""NWB files written with pynwb: small sessions and one large, chunked recording.

Every file is a function of its `Session` alone (fixed numpy seeds, fixed dates and
identifiers), so the same inputs give byte-identical files and stable checksums.  The
metadata is what DANDI reads from real data: a Subject with id, species, sex and ISO 8601
age, a session start time, institution, lab and experimenter, so that dandi-cli's metadata
extraction and nwbinspector have something real to report.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path

import h5py
import numpy as np
from hdmf.backends.hdf5 import H5DataIO
from hdmf.common import DynamicTableRegion
from hdmf.data_utils import GenericDataChunkIterator
from pynwb import NWBHDF5IO, NWBFile, TimeSeries
from pynwb.behavior import Position
from pynwb.ecephys import ElectricalSeries
from pynwb.misc import Units
from pynwb.file import Subject
from pynwb.ophys import (
    Fluorescence,
    ImageSegmentation,
    OpticalChannel,
    TwoPhotonSeries,
)

# Namespace of the UUIDs that replace pynwb's random object ids (see `_stabilize_object_ids`).
_OBJECT_ID_NAMESPACE = uuid.UUID("5b0a8f2e-7c1d-4e39-9d6a-2f4c3b1e8a70")

INSTITUTION = "Institute for Synthetic Neuroscience"
LAB = "Systems Neurophysiology Lab"
EXPERIMENTERS = ("Doe, Jane", "Roe, Richard")


@dataclass(frozen=True)
class Animal:
    subject_id: str
    species: str
    sex: str
    age: str
    strain: str
    description: str
    genotype: str | None = None
    weight: str | None = None


@dataclass(frozen=True)
class Session:
    """One recording session of one animal; `seed` drives every random number in the file."""

    animal: Animal
    session_id: str
    start: datetime
    description: str
    seed: int

    @property
    def identifier(self) -> str:
        return str(uuid.uuid5(_OBJECT_ID_NAMESPACE, f"{self.animal.subject_id}/{self.session_id}"))


def session(animal: Animal, day: str, description: str, seed: int, hour: int = 10) -> Session:
    """A session named by its date (`YYYYMMDD`), started at `hour` o'clock UTC that day."""
    start = datetime.strptime(day, "%Y%m%d").replace(hour=hour, tzinfo=timezone.utc)
    return Session(animal, day, start, description, seed)


@dataclass(frozen=True)
class Recording:
    """Shape of an extracellular recording and how it is laid out in HDF5."""

    samples: int
    channels: int
    chunk_rows: int
    rate: float = 30_000.0
    units: int = 12
    curation: str = "automatic"


def write_ecephys(path: Path, session: Session, recording: Recording) -> None:
    """An extracellular session: electrodes, a raw ElectricalSeries, a TimeSeries and units."""
    nwbfile = new_nwbfile(session, keywords=["extracellular electrophysiology", "hippocampus"])
    rng = np.random.default_rng([session.seed, 1])
    duration = recording.samples / recording.rate
    nwbfile.add_acquisition(
        ElectricalSeries(
            name="ElectricalSeries",
            description="raw broadband voltage",
            data=H5DataIO(
                synthetic_voltage(recording, seed=session.seed),
                chunks=(recording.chunk_rows, recording.channels),
            ),
            electrodes=_add_probe(nwbfile, recording.channels),
            rate=recording.rate,
            starting_time=0.0,
            conversion=0.195e-6,
        )
    )
    speed_rate = 100.0
    nwbfile.add_acquisition(
        TimeSeries(
            name="running_speed",
            description="treadmill speed from a rotary encoder",
            data=np.abs(np.cumsum(rng.normal(0.0, 0.002, int(duration * speed_rate)))).astype(
                np.float32
            ),
            unit="m/s",
            rate=speed_rate,
            starting_time=0.0,
        )
    )
    _add_units(nwbfile, recording, duration, rng)
    write_nwbfile(path, nwbfile)


def _add_probe(nwbfile: NWBFile, channels: int) -> DynamicTableRegion:
    """A probe with one recording site per channel in CA1; returns the region of all sites."""
    probe_model = nwbfile.create_device_model(
        name="SP-64", manufacturer="Synthetic Probes Inc.", description="64-site silicon probe"
    )
    probe = nwbfile.create_device(name="probe0", description="implanted probe", model=probe_model)
    group = nwbfile.create_electrode_group(
        name="shank0", description="recording sites", location="CA1", device=probe
    )
    for channel in range(channels):
        nwbfile.add_electrode(
            group=group,
            location="CA1",
            x=-2.0,
            y=1.5,
            z=float(channel) * 0.02,
            rel_x=float(channel % 2) * 16.0,
            rel_y=float(channel // 2) * 20.0,
        )
    return nwbfile.create_electrode_table_region(
        region=list(range(channels)), description="all electrodes"
    )


def _add_units(
    nwbfile: NWBFile, recording: Recording, duration: float, rng: np.random.Generator
) -> None:
    nwbfile.units = Units(
        name="units",
        description=f"units from {recording.curation} spike sorting",
        resolution=1.0 / recording.rate,
    )
    nwbfile.add_unit_column(name="quality", description="curation label")
    for unit in range(recording.units):
        spike_count = int(rng.integers(20, 60) * max(duration, 1.0))
        nwbfile.add_unit(
            spike_times=np.sort(rng.uniform(0.0, duration, spike_count)),
            obs_intervals=[[0.0, duration]],
            electrodes=[unit % recording.channels],
            quality=_unit_quality(unit, recording.curation),
        )


def _unit_quality(unit: int, curation: str) -> str:
    """Automatic sorting calls every unit `good`; manual curation demotes every fifth one."""
    if curation == "manual" and unit % 5 == 4:
        return "mua"
    return "good"


class RowBlocks(GenericDataChunkIterator):
    """A 2-D int16 dataset computed block by block, so a large recording never sits in memory.

    `block(b)` returns rows `b*block_rows` onwards (fewer in the last block) and must depend
    on `b` alone, so that any buffer hdmf asks for can be cut from whole blocks.
    """

    def __init__(
        self,
        shape: tuple[int, int],
        block_rows: int,
        block: Callable[[int], np.ndarray],
        chunk_shape: tuple[int, int],
        buffer_blocks: int,
    ) -> None:
        self._shape = shape
        self._block_rows = block_rows
        self._block = block
        buffer_rows = min(shape[0], block_rows * buffer_blocks)
        super().__init__(
            chunk_shape=chunk_shape,
            buffer_shape=(buffer_rows - buffer_rows % chunk_shape[0], shape[1]),
            display_progress=False,
        )

    def _get_maxshape(self) -> tuple[int, int]:
        return self._shape

    def _get_dtype(self) -> np.dtype:
        return np.dtype(np.int16)

    def _get_data(self, selection: tuple[slice, ...]) -> np.ndarray:
        rows = self._block_rows
        start, stop, _ = selection[0].indices(self._shape[0])
        first, last = start // rows, (stop - 1) // rows
        blocks = np.concatenate([self._block(b) for b in range(first, last + 1)])
        return blocks[start - first * rows : stop - first * rows][(slice(None), *selection[1:])]


def synthetic_voltage(recording: Recording, seed: int) -> RowBlocks:
    """Broadband voltage in blocks of `chunk_rows` rows, eight blocks per write."""
    return RowBlocks(
        (recording.samples, recording.channels),
        recording.chunk_rows,
        partial(_theta_block, recording, seed),
        chunk_shape=(recording.chunk_rows, recording.channels),
        buffer_blocks=8,
    )


def _theta_block(recording: Recording, seed: int, index: int) -> np.ndarray:
    """Noise from the block's own generator plus an 8 Hz theta rhythm whose amplitude varies
    across channels."""
    begin = index * recording.chunk_rows
    end = min(begin + recording.chunk_rows, recording.samples)
    rng = np.random.default_rng([seed, 2, index])
    seconds = np.arange(begin, end, dtype=np.float64) / recording.rate
    theta = np.sin(2 * np.pi * 8.0 * seconds).astype(np.float32)
    amplitude = np.linspace(400.0, 100.0, recording.channels, dtype=np.float32)
    noise = rng.standard_normal((end - begin, recording.channels), dtype=np.float32)
    volts = theta[:, None] * amplitude[None, :] + noise * np.float32(60.0)
    return np.rint(volts).astype(np.int16)


def write_ophys(path: Path, session: Session, *, with_behavior: bool) -> None:
    """A two-photon session: raw frames, ROIs and their fluorescence (plus position if asked)."""
    keywords = ["two-photon calcium imaging", "hippocampus"]
    if with_behavior:
        keywords.append("virtual navigation")
    nwbfile = new_nwbfile(session, keywords=keywords)
    rng = np.random.default_rng([session.seed, 3])
    frames, height, width, rois, rate = 120, 64, 64, 8, 30.0
    microscope = nwbfile.create_device(
        name="microscope", description="resonant-scanning two-photon microscope"
    )
    plane = nwbfile.create_imaging_plane(
        name="ImagingPlane",
        optical_channel=OpticalChannel(
            name="green", description="GCaMP emission", emission_lambda=510.0
        ),
        description="stratum pyramidale of CA1",
        device=microscope,
        excitation_lambda=920.0,
        imaging_rate=rate,
        indicator="GCaMP6f",
        location="CA1",
    )
    baseline = rng.normal(400.0, 40.0, (height, width))
    movie = baseline[None] + rng.normal(0.0, 25.0, (frames, height, width))
    nwbfile.add_acquisition(
        TwoPhotonSeries(
            name="TwoPhotonSeries",
            description="motion-corrected frames",
            data=H5DataIO(movie.clip(0, 4095).astype(np.uint16), chunks=(10, height, width)),
            imaging_plane=plane,
            rate=rate,
            unit="a.u.",
        )
    )
    ophys = nwbfile.create_processing_module(name="ophys", description="segmented cells")
    segmentation = ImageSegmentation(name="ImageSegmentation")
    ophys.add(segmentation)
    cells = segmentation.create_plane_segmentation(
        name="PlaneSegmentation", description="cells found by template matching",
        imaging_plane=plane,
    )
    yy, xx = np.mgrid[0:height, 0:width]
    for roi in range(rois):
        cy, cx = rng.uniform(8, height - 8), rng.uniform(8, width - 8)
        cells.add_roi(image_mask=((yy - cy) ** 2 + (xx - cx) ** 2 <= 16).astype(np.float32))
    fluorescence = Fluorescence(name="Fluorescence")
    ophys.add(fluorescence)
    traces = rng.gamma(1.5, 0.2, (frames, rois)).astype(np.float32)
    fluorescence.create_roi_response_series(
        name="RoiResponseSeries",
        description="dF/F",
        data=traces,
        rois=cells.create_roi_table_region(region=list(range(rois)), description="all cells"),
        unit="n.a.",
        rate=rate,
    )
    if with_behavior:
        behavior = nwbfile.create_processing_module(name="behavior", description="tracking")
        position = Position(name="Position")
        position.create_spatial_series(
            name="position",
            description="x, y on the virtual track",
            data=np.cumsum(rng.normal(0.0, 0.01, (frames, 2)), axis=0),
            reference_frame="track start",
            unit="meters",
            rate=rate,
        )
        behavior.add(position)
    write_nwbfile(path, nwbfile)


HIPPOCAMPUS_EXPERIMENT = "Hippocampal activity of head-fixed mice on a virtual track."


def new_nwbfile(
    session: Session, keywords: list[str], experiment: str = HIPPOCAMPUS_EXPERIMENT
) -> NWBFile:
    animal = session.animal
    return NWBFile(
        session_description=session.description,
        identifier=session.identifier,
        session_start_time=session.start,
        file_create_date=[session.start + timedelta(hours=6)],
        session_id=session.session_id,
        experimenter=list(EXPERIMENTERS),
        experiment_description=experiment,
        institution=INSTITUTION,
        lab=LAB,
        keywords=keywords,
        subject=Subject(
            subject_id=animal.subject_id,
            species=animal.species,
            sex=animal.sex,
            age=animal.age,
            strain=animal.strain,
            description=animal.description,
            genotype=animal.genotype,
            weight=animal.weight,
        ),
    )


def write_nwbfile(path: Path, nwbfile: NWBFile) -> None:
    with NWBHDF5IO(path, mode="w") as io:
        io.write(nwbfile)
    _stabilize_object_ids(path)


def _stabilize_object_ids(path: Path) -> None:
    """Replace pynwb's random object ids by ones derived from the file identifier and HDF5 path.

    pynwb draws a fresh UUID4 for every container and offers no way to choose it; without this
    step the same inputs would give different bytes on every run.
    """
    with h5py.File(path, "r+") as h5:
        identifier = h5["identifier"][()].decode()

        def restamp(name: str, obj: h5py.HLObject) -> None:
            if "object_id" in obj.attrs:
                stable = uuid.uuid5(_OBJECT_ID_NAMESPACE, f"{identifier}:/{name}")
                obj.attrs.modify("object_id", str(stable))

        restamp("", h5)
        h5.visititems(restamp)
