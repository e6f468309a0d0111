"""What a seeded local archive contains, as plain values.

The demo-data generator produces these (and the files they point to); the seeder turns
them into dandisets, versions and assets.  Keeping the two apart means the data can be
generated once and cached while the archive is rebuilt from scratch on every start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class DemoAsset:
    """One asset: `source` is a file (a blob asset) or a directory (a Zarr asset)."""

    path: str
    source: Path


@dataclass(frozen=True)
class DemoDandiset:
    """A dandiset: `published` (if any) is published first, then the draft is set to `draft`."""

    identifier: str
    name: str
    description: str
    draft: tuple[DemoAsset, ...]
    published: tuple[DemoAsset, ...] | None = None
    embargoed: bool = False
    extra_metadata: dict = field(default_factory=dict)


@dataclass(frozen=True)
class DemoData:
    dandisets: tuple[DemoDandiset, ...]
