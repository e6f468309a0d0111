"""namespace layer: the pure path grammar, listing rules and `dandiset.yaml` rendering (no I/O)."""

from dandifs.namespace.assetpaths import MAX_ASSET_PATH_CHARS, check_asset_path
from dandifs.namespace.dandiset_yaml import render_dandiset_yaml, render_dandiset_yaml_bytes
from dandifs.namespace.names import is_zarr_name, never_exists_remotely
from dandifs.namespace.routes import (
    DandisetFolder,
    DandisetsFolder,
    DandisetYaml,
    InVersion,
    ReleasesFolder,
    Root,
    Route,
    VersionAddress,
    VersionRoot,
    join_path,
    parent_path,
    parse_path,
)

__all__ = [
    "MAX_ASSET_PATH_CHARS",
    "DandisetFolder",
    "DandisetsFolder",
    "DandisetYaml",
    "InVersion",
    "ReleasesFolder",
    "Root",
    "Route",
    "VersionAddress",
    "VersionRoot",
    "check_asset_path",
    "is_zarr_name",
    "join_path",
    "never_exists_remotely",
    "parent_path",
    "parse_path",
    "render_dandiset_yaml",
    "render_dandiset_yaml_bytes",
]
