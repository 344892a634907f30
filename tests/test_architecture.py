"""docs/architecture.md names every module, and draws the floors the linter enforces."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11 and later

ROOT = Path(__file__).parent.parent
PAGE = (ROOT / "docs" / "architecture.md").read_text()


def contracts() -> list[dict[str, Any]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    found: list[dict[str, Any]] = config["tool"]["importlinter"]["contracts"]
    return found


def floors_contract() -> dict[str, Any]:
    """The house's floors: the one layers contract over the whole package."""
    [floors] = [c for c in contracts() if c["type"] == "layers" and "containers" not in c]
    return floors


def test_every_module_is_named_on_the_architecture_page() -> None:
    package = ROOT / "plugz_async"
    modules = sorted(path.relative_to(package) for path in package.rglob("*.py"))
    assert modules
    for module in modules:
        name = str(module)
        # Named by its path (`cli/_app.py`), or, at the top, by its file name (`_bulk.py`).
        assert f"`{name}" in PAGE or f"`plugz_async/{name}`" in PAGE, name


def test_the_page_lists_the_floors_of_the_layers_contract() -> None:
    layers = floors_contract()["layers"]
    expected = [
        " | ".join(f"`{name.strip().removeprefix('plugz_async.')}`" for name in floor.split("|"))
        for floor in layers
    ]
    listed = re.findall(r"^\d+\. (.+)$", PAGE, re.M)
    assert listed[: len(expected)] == expected


def test_the_ignored_upward_imports_sit_inside_functions() -> None:
    """The layers contract lets these imports go up; only from inside a function (so that
    importing the module below never loads the one above)."""
    import ast

    ignored = floors_contract()["ignore_imports"]
    assert ignored
    for rule in ignored:
        importer, imported = (part.strip() for part in rule.split("->"))
        path = ROOT / (importer.replace(".", "/") + ".py")
        if not path.exists():  # a package: its __init__
            path = ROOT / importer.replace(".", "/") / "__init__.py"
        tree = ast.parse(path.read_text())
        target = imported.rsplit(".", 1)[-1]
        at_module_level = [
            node
            for node in tree.body
            if isinstance(node, ast.ImportFrom) and (node.module or "").endswith(target)
        ]
        assert not at_module_level, f"{importer} imports {imported} at module level"


def test_the_command_registry_and_the_parsers_say_the_same() -> None:
    import argparse

    from plugz_async.cli import COMMANDS, _command_in, build_parser

    parser = build_parser()  # every command loaded
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    helps = {action.dest: action.help for action in commands._choices_actions}
    assert helps == {name: entry.summary for name, entry in COMMANDS.items()}
    assert _command_in(["--verbose", "check", "bulk"]) == "check"
    assert _command_in(["-v", "bogus", "check"]) is None
    assert _command_in(["--version"]) is None


def test_each_package_of_its_own_floors_is_drawn_on_the_page() -> None:
    """A feature package's own layers contract is on the page too, floor by floor."""
    packages = [c for c in contracts() if c["type"] == "layers" and "containers" in c]
    assert len(packages) >= 4
    for contract in packages:
        [container] = contract["containers"]
        name = container.removeprefix("plugz_async.").replace(".", "/")
        drawn = " > ".join(
            " | ".join(f"`{module.strip()}`" for module in floor.split("|"))
            for floor in contract["layers"]
        )
        assert f"`{name}/`: {drawn}" in PAGE, (name, drawn)
