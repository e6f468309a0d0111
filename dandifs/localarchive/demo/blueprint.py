"""Plans for demo dandisets: which files to write, and which asset paths serve them.

A plan names its files relative to a generated tree, so the same plan describes the data
wherever the cache lives; `realize` turns it into the spec values with absolute paths.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..spec import DemoAsset, DemoDandiset

Writer = Callable[[Path], None]
"""Writes one file (or one Zarr directory) at the given path; its parent already exists."""


@dataclass(frozen=True)
class SourceFile:
    """One thing the generator writes: `name` is its path inside the generated tree."""

    name: str
    write: Writer = field(compare=False)


@dataclass(frozen=True)
class AssetPlan:
    path: str
    source: SourceFile


@dataclass(frozen=True)
class DandisetPlan:
    identifier: str
    name: str
    description: str
    draft: tuple[AssetPlan, ...]
    published: tuple[AssetPlan, ...] | None = None
    embargoed: bool = False
    extra_metadata: dict = field(default_factory=dict)

    def assets(self) -> Iterator[AssetPlan]:
        yield from self.published or ()
        yield from self.draft

    def realize(self, root: Path) -> DemoDandiset:
        def assets(plans: tuple[AssetPlan, ...]) -> tuple[DemoAsset, ...]:
            return tuple(DemoAsset(plan.path, root / plan.source.name) for plan in plans)

        return DemoDandiset(
            identifier=self.identifier,
            name=self.name,
            description=self.description,
            draft=assets(self.draft),
            published=None if self.published is None else assets(self.published),
            embargoed=self.embargoed,
            extra_metadata=copy.deepcopy(self.extra_metadata),  # callers may edit theirs
        )


@dataclass(frozen=True)
class Part:
    """Dandisets generated, cached and invalidated together, in the directory `name`.

    Bump `version` whenever what the writers produce changes: a cached tree stamped with
    another version is generated again.
    """

    name: str
    version: int
    dandisets: tuple[DandisetPlan, ...]

    def sources(self) -> tuple[SourceFile, ...]:
        """Every file to write, once each, even when several assets share it."""
        unique: dict[str, SourceFile] = {}
        for dandiset in self.dandisets:
            for asset in dandiset.assets():
                seen = unique.setdefault(asset.source.name, asset.source)
                if seen.write is not asset.source.write:
                    raise ValueError(f"two different writers for {asset.source.name!r}")
        return tuple(unique.values())
