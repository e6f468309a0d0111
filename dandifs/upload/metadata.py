"""Asset metadata of a written file (placeholder until the full extraction lands)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dandifs.errors import NameRefused


def check_asset_path(path: str) -> None:
    for segment in path.split("/"):
        if segment in ("", ".", "..") or "\0" in segment:
            raise NameRefused(f"{path!r}: the archive refuses this asset path")


def asset_metadata(local_file: Path, asset_path: str, *, size: int, digest: str) -> dict[str, Any]:
    return {
        "path": asset_path,
        "contentSize": size,
        "digest": {"dandi:dandi-etag": digest},
        "encodingFormat": "application/x-nwb" if asset_path.endswith(".nwb") else "application/octet-stream",
    }
