"""A Neuropixels session written as labs (and neuroconv) write one, with pynwb.

Real DANDI ecephys files are rich: hundreds of electrodes with many columns, a ragged units
table with waveform means and quality metrics, trials, LFP and behaviour in processing
modules, and a raw series compressed in chunks.  A reader that opens such a file touches many
small objects spread over the file before it reads one sample; this file has all of them.

* `acquisition/ElectricalSeriesAP`: int16 (samples x 384) at 30 kHz in (30,000 x 64)
  chunks, gzip: band-limited noise with per-channel levels, a common-mode component and the
  spikes of the units table added with each unit's template, so it compresses as real data
  does (to about 43% of its raw size at level 4), not as zeros or white noise.
* `processing/ecephys/LFP/ElectricalSeriesLF`: the 2.5 kHz band, slow rhythms with a depth
  profile.
* `processing/behavior`: `Position` (a `SpatialSeries` with camera timestamps) and a small
  `DynamicTable` of licks.
* `electrodes` (one row per channel, four shanks), `units` (spike times, amplitudes,
  waveform means, metrics), `trials` with task columns, two devices, one electrode group per
  shank, a Subject.

Everything is drawn from generators seeded by the session's seed (block `b` of a series from
its own generator), so the same session gives the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from hdmf.backends.hdf5 import H5DataIO
from hdmf.common import DynamicTable, DynamicTableRegion, VectorData
from pynwb import NWBFile
from pynwb.behavior import Position
from pynwb.ecephys import LFP, ElectricalSeries
from pynwb.misc import Units

from .nwbfiles import RowBlocks, Session, new_nwbfile, write_nwbfile

WAVEFORM_SAMPLES = 82
"""Template length (2.7 ms at 30 kHz), the trough at sample `_TROUGH`, as Kilosort keeps it."""
_TROUGH = 30
_REFRACTORY_SECONDS = 0.001
_FOOTPRINT = 12  # channels either side of a unit's peak channel that see its spikes
CONVERSION = 0.62 / 8192 / 80
"""Volts per bit of a Neuropixels 2.0 channel: +-0.62 V over 14 bits at gain 80 (0.95 uV)."""
_REGIONS = ((180.0, "DG"), (420.0, "CA1"), (560.0, "alv"))  # upper bound of rel_y, region
_TOP_REGION = "VISa"


@dataclass(frozen=True)
class ProbeRecording:
    """Shape and storage of a Neuropixels recording."""

    samples: int = 1_000_000
    channels: int = 384
    shanks: int = 4
    chunk_rows: int = 30_000
    chunk_channels: int = 64
    rate: float = 30_000.0
    lfp_decimation: int = 12
    lfp_chunk_rows: int = 10_000
    units: int = 200
    gzip_level: int = 4
    """hdmf's default level.  On this data level 1 compresses almost as well (44% vs 43%) at
    twice the speed, 6 and 9 no better at a quarter and a tenth of it; at 4 the whole file
    takes about 40 s of CPU."""

    @property
    def duration(self) -> float:
        return self.samples / self.rate

    @property
    def lfp_rate(self) -> float:
        return self.rate / self.lfp_decimation

    @property
    def lfp_samples(self) -> int:
        return -(-self.samples // self.lfp_decimation)

    @property
    def channels_per_shank(self) -> int:
        return self.channels // self.shanks


def write_neuropixels(path: Path, session: Session, recording: ProbeRecording) -> None:
    """The whole session; memory stays near a few blocks of 30,000 x 384 samples."""
    nwbfile = new_nwbfile(
        session,
        keywords=["Neuropixels", "extracellular electrophysiology", "decision making"],
        experiment="Visual decision task in head-fixed mice recorded with a 4-shank probe.",
    )
    signals = ProbeSignals(recording, session.seed)
    groups = _add_probe(nwbfile, recording)
    everything = nwbfile.create_electrode_table_region(
        region=list(range(recording.channels)), description="all channels"
    )
    nwbfile.add_acquisition(_band(
        "ElectricalSeriesAP", "action-potential band, recorded with SpikeGLX",
        recording, everything,
        rows=recording.samples, block_rows=recording.chunk_rows, block=signals.ap_block,
        rate=recording.rate,
        filtering="0.5 Hz - 10 kHz (probe hardware), then 300 Hz high-pass (software)",
    ))
    ecephys = nwbfile.create_processing_module(name="ecephys", description="LFP band")
    ecephys.add(LFP(electrical_series=_band(
        "ElectricalSeriesLF", "local field potential band, decimated from the recording",
        recording, everything,
        rows=recording.lfp_samples, block_rows=recording.lfp_chunk_rows, block=signals.lfp_block,
        rate=recording.lfp_rate,
        filtering="0.5 Hz - 10 kHz (probe hardware), then 1 kHz low-pass (software)",
    )))
    _add_units(nwbfile, recording, signals, groups)
    _add_trials(nwbfile, recording, np.random.default_rng([session.seed, 20]))
    _add_behavior(nwbfile, recording, np.random.default_rng([session.seed, 21]))
    write_nwbfile(path, nwbfile)


def _band(
    name: str,
    description: str,
    recording: ProbeRecording,
    electrodes: DynamicTableRegion,
    *,
    rows: int,
    block_rows: int,
    block: Callable[[int], np.ndarray],
    rate: float,
    filtering: str,
) -> ElectricalSeries:
    """One band of the probe, computed `block_rows` rows at a time, gzip-compressed in
    chunks of `block_rows` x `chunk_channels`."""
    data = RowBlocks((rows, recording.channels), block_rows, block,
                     chunk_shape=(block_rows, recording.chunk_channels), buffer_blocks=1)
    return ElectricalSeries(
        name=name,
        description=description,
        data=H5DataIO(data, chunks=data.chunk_shape, compression="gzip",
                      compression_opts=recording.gzip_level),
        electrodes=electrodes,
        rate=rate,
        starting_time=0.0,
        conversion=CONVERSION,
        filtering=filtering,
    )


class ProbeSignals:
    """The recording's signal model: units with templates and spike trains, and the slow
    rhythms of the LFP band, computed once; the samples themselves block by block."""

    def __init__(self, recording: ProbeRecording, seed: int) -> None:
        self.recording = recording
        self.seed = seed
        rng = np.random.default_rng([seed, 10])
        channels, units = recording.channels, recording.units
        self.noise_sd = rng.uniform(5.0, 11.0, channels).astype(np.float32)
        self.peak_channel = np.sort(rng.integers(0, channels, units))
        self.peak_amplitude = rng.uniform(40.0, 260.0, units)  # bits at the peak channel
        self.firing_rate = np.clip(rng.lognormal(np.log(4.0), 0.9, units), 0.3, 40.0)
        self.trains = [
            _refractory(np.unique(rng.integers(_TROUGH, recording.samples - WAVEFORM_SAMPLES,
                                               rng.poisson(rate * recording.duration))),
                        int(recording.rate * _REFRACTORY_SECONDS))
            for rate in self.firing_rate
        ]
        self.scales = [rng.normal(1.0, 0.08, train.size) for train in self.trains]
        self.templates = [self._template(unit, rng) for unit in range(units)]
        order = np.argsort(np.concatenate(self.trains), kind="stable")
        self._spike_sample = np.concatenate(self.trains)[order]
        self._spike_unit = np.repeat(np.arange(units), [t.size for t in self.trains])[order]
        self._spike_scale = np.concatenate(self.scales)[order]
        knots = int(recording.duration * 100) + 2  # slow LFP components, 100 knots per s
        self._slow = np.cumsum(rng.normal(0.0, 1.0, (2, knots)), axis=1)
        self._slow -= self._slow.mean(axis=1, keepdims=True)
        depth = (np.arange(channels) % recording.channels_per_shank) / recording.channels_per_shank
        self._lfp_gain = np.stack([8.0 * (1.0 - depth), 5.0 * np.cos(np.pi * depth),
                                   30.0 * np.exp(-((depth - 0.45) / 0.15) ** 2)]).astype(np.float32)

    def footprint(self, unit: int) -> slice:
        """The channels a unit's spikes reach: near its peak channel, on the same shank."""
        per_shank = self.recording.channels_per_shank
        peak = int(self.peak_channel[unit])
        first = peak - peak % per_shank
        return slice(max(first, peak - _FOOTPRINT), min(first + per_shank, peak + _FOOTPRINT + 1))

    def _template(self, unit: int, rng: np.random.Generator) -> np.ndarray:
        """(WAVEFORM_SAMPLES, footprint channels), in bits: a trough, a slower rebound, and a
        Gaussian fall-off away from the peak channel."""
        t = np.arange(WAVEFORM_SAMPLES, dtype=np.float64) - _TROUGH
        width, delay, rebound = rng.uniform(3.0, 6.0), rng.uniform(8.0, 16.0), rng.uniform(0.2, 0.45)
        shape = -np.exp(-(t / width) ** 2) + rebound * np.exp(-((t - delay) / (2 * width)) ** 2)
        shape /= -shape[_TROUGH]  # the peak channel dips by the unit's amplitude at the spike
        reach = self.footprint(unit)
        distance = np.arange(reach.start, reach.stop) - self.peak_channel[unit]
        falloff = np.exp(-(distance / rng.uniform(2.0, 5.0)) ** 2)
        return (self.peak_amplitude[unit] * shape[:, None] * falloff[None, :]).astype(np.float32)

    def waveform_mean(self, unit: int) -> np.ndarray:
        """The unit's template over all channels, in volts (zero outside its footprint)."""
        full = np.zeros((WAVEFORM_SAMPLES, self.recording.channels), dtype=np.float32)
        full[:, self.footprint(unit)] = self.templates[unit] * np.float32(CONVERSION)
        return full

    def ap_block(self, index: int) -> np.ndarray:
        recording = self.recording
        begin = index * recording.chunk_rows
        end = min(begin + recording.chunk_rows, recording.samples)
        rows = end - begin
        rng = np.random.default_rng([self.seed, 11, index])
        white = rng.standard_normal((rows + 2, recording.channels), dtype=np.float32)
        volts = white[2:] + np.float32(0.6) * white[1:-1] - np.float32(0.9) * white[:-2]
        volts *= self.noise_sd / np.float32(1.5)
        volts += np.float32(3.0) * rng.standard_normal((rows, 1), dtype=np.float32)
        first, last = np.searchsorted(self._spike_sample,
                                      [begin - WAVEFORM_SAMPLES + _TROUGH, end + _TROUGH])
        for sample, unit, scale in zip(self._spike_sample[first:last],
                                       self._spike_unit[first:last],
                                       self._spike_scale[first:last]):
            start = sample - _TROUGH - begin  # template row 0 in block rows
            lo, hi = max(start, 0), min(start + WAVEFORM_SAMPLES, rows)
            volts[lo:hi, self.footprint(unit)] += (
                np.float32(scale) * self.templates[unit][lo - start:hi - start]
            )
        return np.rint(volts).astype(np.int16)

    def lfp_block(self, index: int) -> np.ndarray:
        recording = self.recording
        begin = index * recording.lfp_chunk_rows
        end = min(begin + recording.lfp_chunk_rows, recording.lfp_samples)
        rng = np.random.default_rng([self.seed, 12, index])
        seconds = np.arange(begin, end, dtype=np.float64) / recording.lfp_rate
        knots = np.arange(self._slow.shape[1]) / 100.0
        components = np.stack([
            np.interp(seconds, knots, self._slow[0]),
            np.interp(seconds, knots, self._slow[1]),
            np.sin(2 * np.pi * 7.5 * seconds + 0.3 * np.sin(2 * np.pi * 0.2 * seconds)),
        ], axis=1).astype(np.float32)
        volts = components @ self._lfp_gain
        volts += np.float32(3.0) * rng.standard_normal(volts.shape, dtype=np.float32)
        return np.rint(volts).astype(np.int16)


def _refractory(train: np.ndarray, gap: int) -> np.ndarray:
    """Spike samples without the ones closer than `gap` to the spike before them."""
    return train[np.diff(train, prepend=-gap) >= gap]


def _add_probe(nwbfile: NWBFile, recording: ProbeRecording) -> list:
    """Probe, camera, one electrode group per shank and one electrode row per channel."""
    model = nwbfile.create_device_model(
        name="Neuropixels 2.0 (4 shanks)", manufacturer="IMEC",
        description="4-shank probe, 1,280 sites per shank, 384 recorded channels",
        model_number="NP2014",
    )
    probe = nwbfile.create_device(name="imec0", description="probe in left hemisphere",
                                  serial_number="19122519012", model=model)
    camera = nwbfile.create_device_model(name="Blackfly S BFS-U3-16S2M", manufacturer="FLIR",
                                         description="monochrome USB3 camera")
    nwbfile.create_device(name="camera0", description="face and body camera, 60 Hz",
                          model=camera)
    groups = [
        nwbfile.create_electrode_group(
            name=f"imec0.shank{shank}", description=f"shank {shank} of imec0",
            location="hippocampal formation and visual cortex", device=probe,
            position=(-2.1, 1.6 + 0.25 * shank, 3.4),
        )
        for shank in range(recording.shanks)
    ]
    for name, description in (
        ("channel_name", "SpikeGLX channel name"),
        ("shank_electrode_number", "site number on its shank"),
        ("contact_id", "probe contact identifier"),
        ("inter_sample_shift", "time shift of the channel's ADC sample, in samples"),
        ("good_channel", "passed the channel quality check"),
    ):
        nwbfile.add_electrode_column(name=name, description=description)
    per_shank = recording.channels_per_shank
    for channel in range(recording.channels):
        shank, site = divmod(channel, per_shank)
        rel_y = float(site // 2) * 15.0
        nwbfile.add_electrode(
            group=groups[shank],
            location=next((name for top, name in _REGIONS if rel_y < top), _TOP_REGION),
            x=-2100.0 - rel_y, y=1600.0 + 250.0 * shank, z=3400.0 + (site % 2) * 32.0,
            rel_x=250.0 * shank + (site % 2) * 32.0, rel_y=rel_y,
            filtering="0.5 Hz - 10 kHz (probe hardware)",
            channel_name=f"AP{channel}",
            shank_electrode_number=site,
            contact_id=f"s{shank}e{site}",
            inter_sample_shift=float(channel % 12) / 13.0,
            good_channel=channel % 97 != 40,
        )
    return groups


_UNIT_COLUMNS = (
    ("quality", "curation label: good, mua or noise"),
    ("KSLabel", "Kilosort's label"),
    ("firing_rate", "spikes per second"),
    ("amplitude", "median spike amplitude at the peak channel, in volts"),
    ("depth", "distance of the peak channel from the probe tip, in um"),
    ("peak_channel", "channel with the largest template amplitude"),
    ("isi_violations_ratio", "refractory-period violations relative to chance"),
    ("presence_ratio", "fraction of the recording with spikes"),
    ("snr", "template amplitude over channel noise"),
)


def _add_units(nwbfile: NWBFile, recording: ProbeRecording, signals: ProbeSignals,
               groups: list) -> None:
    nwbfile.units = Units(name="units", description="Kilosort 4, curated in Phy",
                          resolution=1.0 / recording.rate,
                          waveform_rate=recording.rate, waveform_unit="volts")
    for name, description in _UNIT_COLUMNS:
        nwbfile.add_unit_column(name=name, description=description)
    nwbfile.add_unit_column(name="spike_amplitudes", index=True,
                            description="amplitude of each spike at the peak channel, in volts")
    per_shank = recording.channels_per_shank
    for unit in range(recording.units):
        train, scales = signals.trains[unit], signals.scales[unit]
        peak = int(signals.peak_channel[unit])
        amplitudes = scales * signals.peak_amplitude[unit] * CONVERSION
        intervals = np.diff(train) / recording.rate
        seconds_with_spikes = np.unique((train / recording.rate).astype(int)).size
        nwbfile.add_unit(
            spike_times=train / recording.rate,
            obs_intervals=[[0.0, recording.duration]],
            electrodes=[peak],
            electrode_group=groups[peak // per_shank],
            waveform_mean=signals.waveform_mean(unit),
            quality=("good", "good", "mua", "good", "noise")[unit % 5],
            KSLabel="good" if unit % 3 else "mua",
            firing_rate=train.size / recording.duration,
            amplitude=float(np.median(amplitudes)),
            depth=float(peak % per_shank // 2) * 15.0,
            peak_channel=peak,
            isi_violations_ratio=float(np.mean(intervals < 0.0015)) if intervals.size else 0.0,
            presence_ratio=min(1.0, seconds_with_spikes / recording.duration),
            snr=float(signals.peak_amplitude[unit] / signals.noise_sd[peak]),
            spike_amplitudes=amplitudes,
        )


def _add_trials(nwbfile: NWBFile, recording: ProbeRecording, rng: np.random.Generator) -> None:
    for name, description in (
        ("stimulus_onset", "time the grating appeared, in s"),
        ("go_cue", "time of the auditory go cue, in s"),
        ("contrast", "grating contrast"),
        ("side", "side the grating appeared on"),
        ("choice", "wheel turn: -1 left, 0 none, 1 right"),
        ("response_time", "time of the choice, in s"),
        ("feedback_type", "1 reward, -1 noise burst"),
        ("reward_volume", "water delivered, in ul"),
    ):
        nwbfile.add_trial_column(name=name, description=description)
    start = 0.5
    while start + 1.6 < recording.duration:
        onset = start + rng.uniform(0.1, 0.3)
        response = onset + rng.uniform(0.2, 0.9)
        side = "left" if rng.random() < 0.5 else "right"
        correct = rng.random() < 0.8
        choice = (-1 if side == "left" else 1) * (1 if correct else -1)
        stop = response + 0.4
        nwbfile.add_trial(
            start_time=start, stop_time=stop, stimulus_onset=onset, go_cue=onset + 0.01,
            contrast=float(rng.choice([0.0625, 0.125, 0.25, 1.0])), side=side, choice=choice,
            response_time=response, feedback_type=1 if correct else -1,
            reward_volume=1.5 if correct else 0.0,
        )
        start = stop + rng.uniform(0.2, 0.6)


def _add_behavior(nwbfile: NWBFile, recording: ProbeRecording, rng: np.random.Generator) -> None:
    behavior = nwbfile.create_processing_module(name="behavior", description="video tracking")
    frames = int(recording.duration * 60)
    timestamps = np.arange(frames) / 60.0 + rng.normal(0.0, 0.0005, frames)
    position = Position(name="Position")
    position.create_spatial_series(
        name="nose",
        description="nose position tracked with DeepLabCut",
        data=200.0 + np.cumsum(rng.normal(0.0, 0.8, (frames, 2)), axis=0),
        timestamps=np.sort(timestamps),
        reference_frame="top-left corner of the camera frame",
        unit="pixels",
        conversion=1.0,
    )
    behavior.add(position)
    licks = int(recording.duration * 3)
    behavior.add(DynamicTable(
        name="licks",
        description="tongue contacts with the spout",
        columns=[
            VectorData(name="time", description="contact time, in s",
                       data=np.sort(rng.uniform(0.0, recording.duration, licks))),
            VectorData(name="spout", description="spout touched",
                       data=list(rng.choice(["left", "right"], licks))),
            VectorData(name="duration", description="contact duration, in s",
                       data=rng.uniform(0.02, 0.08, licks)),
        ],
    ))

