"""docs/architecture.md names every module, and draws the floors the linter enforces."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11 and later

ROOT = Path(__file__).parent.parent
PAGE = (ROOT / "docs" / "architecture.md").read_text()


def test_every_module_is_named_on_the_architecture_page() -> None:
    package = ROOT / "plugz_async"
    modules = sorted(path.relative_to(package) for path in package.rglob("*.py"))
    assert modules
    for module in modules:
        name = str(module)
        # Named by its path (`cli/_app.py`), or, at the top, by its file name (`_bulk.py`).
        assert f"`{name}" in PAGE or f"`plugz_async/{name}`" in PAGE, name


def test_the_page_lists_the_floors_of_the_layers_contract() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    [layers] = [
        contract["layers"]
        for contract in config["tool"]["importlinter"]["contracts"]
        if contract["type"] == "layers"
    ]
    expected = [
        " | ".join(f"`{name.strip().removeprefix('plugz_async.')}`" for name in floor.split("|"))
        for floor in layers
    ]
    listed = re.findall(r"^\d+\. (.+)$", PAGE, re.M)
    assert listed[: len(expected)] == expected
