"""Every code block in the README and docs runs, against a loopback server.

Python blocks of one page run in order in one namespace, like cells of a notebook
(top-level ``await`` included), with ``PLUGZ_*`` pointing at the test server. A
``print(...)  # text`` line must print exactly that text. Shell blocks must name
nox sessions that exist. Docstring examples run as doctests.
"""

from __future__ import annotations

import ast
import doctest
import importlib
import io
import re
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from fakeapi import CLIENT_TOKEN, INSTANCE_ID, INSTANCE_TOKEN, FakeAPI

ROOT = Path(__file__).parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```", re.S | re.M)
EXPECT = re.compile(r"^(\s*)print\((.*)\)\s+# (.+)$")


def blocks(page: Path, language: str) -> list[str]:
    """The page's code blocks in ``language``, each padded to start at its own line."""
    text = page.read_text()
    found = []
    for match in BLOCK.finditer(text):
        if match.group(1) == language:
            first_line = text.count("\n", 0, match.start(2))
            found.append("\n" * first_line + match.group(2))
    return found


def with_checks(code: str) -> str:
    """``print(x)  # text`` becomes a print that also checks it printed ``text``."""
    lines = []
    for line in code.split("\n"):
        match = EXPECT.match(line)
        if match:
            indent, args, expected = match.groups()
            line = f"{indent}__expect__({expected!r}, {args})"
        lines.append(line)
    return "\n".join(lines)


def expect(expected: str, *values: Any) -> None:
    printed = " ".join(str(value) for value in values)
    print(printed)
    assert printed == expected, f"the docs say {expected!r}, the code printed {printed!r}"


async def run_page(page: Path, namespace: dict[str, Any]) -> None:
    for code in blocks(page, "python"):
        compiled = compile(
            with_checks(code), str(page), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        )
        result = eval(compiled, namespace)
        if result is not None:
            await result


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
async def test_python_blocks_run(page: Path, api: FakeAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLUGZ_INSTANCE_ID", INSTANCE_ID)
    monkeypatch.setenv("PLUGZ_INSTANCE_TOKEN", INSTANCE_TOKEN)
    monkeypatch.setenv("PLUGZ_CLIENT_TOKEN", CLIENT_TOKEN)
    monkeypatch.setenv("PLUGZ_BASE_URL", api.base_url)
    namespace: dict[str, Any] = {"__expect__": expect, "__name__": "__docs__"}
    output = io.StringIO()
    with redirect_stdout(output):
        await run_page(page, namespace)
    if blocks(page, "python"):
        assert output.getvalue(), "the page's examples printed nothing"
    # Nothing the examples print shows a secret.
    assert INSTANCE_TOKEN not in output.getvalue() and CLIENT_TOKEN not in output.getvalue()


def nox_sessions() -> set[str]:
    tree = ast.parse((ROOT / "noxfile.py").read_text())
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef)
        and any("session" in ast.unparse(d) for d in node.decorator_list)
    }


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_shell_blocks_name_real_sessions(page: Path) -> None:
    sessions = nox_sessions()
    for code in blocks(page, "bash"):
        for named in re.findall(r"nox -s ([\w ]+)", code):
            assert set(named.split()) <= sessions, named


def test_readme_test_command_is_what_ci_runs() -> None:
    (command,) = [c.strip() for c in blocks(ROOT / "README.md", "bash") if "nox -s" in c]
    assert command in (ROOT / ".ci" / "run").read_text()


MODULES = ["_clock", "_phone", "_redact", "_retry", "_planner"]


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples(module: str) -> None:
    result = doctest.testmod(importlib.import_module(f"plugz_async.{module}"))
    assert result.attempted > 0 and result.failed == 0
