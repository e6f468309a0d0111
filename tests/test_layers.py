"""The import directions of the design's layers (design §2), read from the source.

Each layer imports only the layers below it; the front ends import only `core/`,
`namespace/` and the leaves, never each other; nothing in the product imports the local
archive, which itself imports only the leaves.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "dandifs"

LEAVES = {"model", "errors", "concurrency", "counters", "__init__"}
"""Modules every layer may import: frozen values, the error tree, shared async patterns,
the shape of counters, and the package's own version."""

BELOW: dict[str, set[str]] = {
    "archive": set(),
    "namespace": set(),
    "upload": {"archive", "namespace"},
    "cache": {"archive", "namespace"},
    "resolve": {"archive", "namespace", "cache", "upload"},
    "core": {"archive", "namespace", "cache", "upload", "resolve"},
    "fuse": {"core", "namespace"},
    "webdav": {"core", "namespace"},
    "fsspec": {"core", "namespace"},
    "localarchive": set(),
    "cli": {"core", "fuse", "webdav", "fsspec", "localarchive", "namespace"},
}
"""What each layer may import besides the leaves and itself."""


def layer_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE).parts
    return parts[0].removesuffix(".py")


def imported_layers(path: Path) -> set[str]:
    """The top-level parts of `dandifs` that a module imports (`from dandifs import x`
    counts as importing `x`)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "dandifs":
                modules = [
                    "dandifs" if alias.name == "__version__" else f"dandifs.{alias.name}"
                    for alias in node.names
                ]
            else:
                modules = [node.module]
        else:
            continue
        for module in modules:
            parts = module.split(".")
            if parts[0] == "dandifs":
                found.add(parts[1] if len(parts) > 1 else "__init__")
    return found


MODULES = sorted(
    path for path in PACKAGE.rglob("*.py") if layer_of(path) not in {"__init__", "__main__"}
)


def test_every_layer_of_the_package_is_known() -> None:
    layers = {layer_of(path) for path in MODULES} - LEAVES
    assert layers <= set(BELOW), f"layers the design does not name: {layers - set(BELOW)}"


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(PACKAGE)))
def test_a_module_imports_only_the_layers_below_its_own(path: Path) -> None:
    layer = layer_of(path)
    allowed = LEAVES | {layer} | BELOW.get(layer, set())
    if layer in LEAVES:
        allowed = LEAVES
    wrong = imported_layers(path) - allowed
    assert not wrong, f"{path.relative_to(PACKAGE)} ({layer}/) imports {sorted(wrong)}"


def test_the_checker_sees_a_front_end_reaching_past_the_core(tmp_path: Path) -> None:
    """The check reads both import forms, so it cannot pass by missing one."""
    module = tmp_path / "m.py"
    module.write_text(
        "from dandifs.resolve.entry import Entry\nfrom dandifs import cache\nimport dandifs.core\n"
    )
    assert imported_layers(module) == {"resolve", "cache", "core"}
