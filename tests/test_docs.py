"""Every code block in the README and docs runs, against a loopback server.

Python blocks of one page run in order in one namespace, like cells of a notebook
(top-level ``await`` included), with ``PLUGZ_*`` pointing at the test server; a block
written as a script (``asyncio.run(...)`` at its top level) runs as one, in a thread. A
``print(...)  # text`` line must print exactly that text. Shell blocks must name
nox sessions that exist. Docstring examples run as doctests.
"""

from __future__ import annotations

import ast
import asyncio
import doctest
import importlib
import io
import re
import shlex
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from helpers import CLIENT_TOKEN, INSTANCE_TOKEN, a_person, blocks

from plugz_async.cli import build_parser
from plugz_async.sandbox import Sandbox, scenario_table

ROOT = Path(__file__).parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXPECT = re.compile(r"^(\s*)print\((.*)\)\s+# (.+)$")
# The optional extras a page's examples use, found by what they call.
EXTRAS = {
    "pandas": re.compile(r"\bto_dataframe\(|^\s*(?:import|from) pandas\b", re.M),
    "matplotlib": re.compile(r"\.plot\(|^\s*(?:import|from) matplotlib\b", re.M),
    "saq": re.compile(r"^\s*(?:import|from) plugz_async\.queue\b", re.M),
}
# A page whose examples use the durable queue runs them against the suite's redis-server.
QUEUE = EXTRAS["saq"]


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


# A block written as a script: it runs its own event loop.
SCRIPT = re.compile(r"^asyncio\.run\(", re.M)


async def run_page(page: Path, namespace: dict[str, Any]) -> None:
    for code in blocks(page, "python"):
        if SCRIPT.search(code):
            # As a script runs it: ``asyncio.run`` in a thread where no loop runs yet, while
            # this loop goes on serving the test server.
            script = compile(with_checks(code), str(page), "exec")
            await asyncio.to_thread(exec, script, namespace)
            continue
        compiled = compile(
            with_checks(code), str(page), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        )
        result = eval(compiled, namespace)
        if result is not None:
            await result


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
async def test_python_blocks_run(
    page: Path, api: Sandbox, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    code = "\n".join(blocks(page, "python"))
    for module, used in EXTRAS.items():
        if used.search(code):  # without the extra (nox -s tests_minimal) the page cannot run
            pytest.importorskip(module, reason=f"the examples of {page.name} use {module}")
    for name, value in api.env().items():
        monkeypatch.setenv(name, value)
    if QUEUE.search(code):  # skips without redis-server, as the queue's own tests do
        monkeypatch.setenv("PLUGZ_REDIS_URL", request.getfixturevalue("redis_url"))
    namespace: dict[str, Any] = {"__expect__": expect, "__name__": "__docs__"}
    output = io.StringIO()
    with redirect_stdout(output):
        await run_page(page, namespace)
    if blocks(page, "python"):
        assert output.getvalue(), "the page's examples printed nothing"
    # Nothing the examples print shows a secret.
    assert INSTANCE_TOKEN not in output.getvalue() and CLIENT_TOKEN not in output.getvalue()


@pytest.mark.parametrize(
    "page", [ROOT / "README.md", ROOT / "docs" / "quickstart.md"], ids=lambda p: p.name
)
def test_the_first_example_says_how_to_run_it(page: Path) -> None:
    """Top-level ``await`` fails in a ``.py`` file: the first example says where it runs as
    it is, and the next one is the same as a script (which compiles as one)."""
    text = page.read_text()
    second = text.index("```python", text.index("```python") + 1)
    assert "python -m asyncio" in text[:second] and "notebook" in text[:second]
    script = blocks(page, "python")[1]
    assert SCRIPT.search(script) and "async def main()" in script
    compile(script, str(page), "exec")  # no top-level await: a SyntaxError otherwise


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


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_documented_commands_parse(page: Path) -> None:
    parser = build_parser()
    for code in blocks(page, "bash"):
        for line in code.strip().splitlines():
            words = shlex.split(line.split("&&")[-1])
            if words[:1] == ["plugz-async"]:
                parser.parse_args(words[1:])
            elif words[:3] == ["python3", "-m", "plugz_async"]:
                parser.parse_args(words[3:])


def test_readme_first_screen_has_the_two_commands_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    first_screen = "\n".join(readme.splitlines()[:40])
    commands = [c.strip() for c in blocks(ROOT / "README.md", "bash")[:2]]
    assert len(commands) == 2
    assert "demo" in commands[0] and "nox -s tests" in commands[1]
    ci = (ROOT / ".ci" / "run").read_text()
    for command in commands:
        assert command in first_screen
        assert command in ci


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_console_transcripts_match(page: Path, tmp_path: Path) -> None:
    """A ``console`` block is a transcript: each ``$`` line runs (in a folder holding a
    ``numbers.txt`` of 2,000 numbers, against the sandbox standing in for the real host),
    and what it prints, stdout and stderr together, must be the lines below it."""
    import os
    import subprocess
    import sys

    from plugz_async.sandbox import SandboxThread

    transcripts = blocks(page, "console")
    if not transcripts:
        return
    (tmp_path / "numbers.txt").write_text(
        "".join(f"+55 31 9{i:04d}-{i:04d}\n" for i in range(2000))
    )
    with SandboxThread() as sandbox:
        env = {**os.environ, **sandbox.env()}
        host = sandbox.base_url.removeprefix("http://")
        for transcript in transcripts:
            steps: list[tuple[str, list[str]]] = []
            for line in transcript.strip().splitlines():
                if line.startswith("$ "):
                    steps.append((line[2:], []))
                else:
                    steps[-1][1].append(line)
            script = f'plugz-async() {{ "{sys.executable}" -m plugz_async "$@"; }}\n'
            for command, expected in steps:
                script += command + "\n"
                done = subprocess.run(
                    ["bash", "-c", script],
                    cwd=tmp_path,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    timeout=60,
                )
                printed = done.stdout.replace(host, "api.plugzapi.com.br").splitlines()
                assert printed[-len(expected) :] == expected if expected else True, printed
                script += "\n"


def test_sandbox_page_shows_the_real_test_number_table() -> None:
    assert scenario_table() in (ROOT / "docs" / "sandbox.md").read_text()


MODULES = ["_clock", "_phone", "_redact", "_retry", "_planner", "_bulk._items"]


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples(module: str) -> None:
    # Public names report ``plugz_async`` as their module, so doctest's own search (which
    # goes by ``__module__``) would pass them over: take the examples written in the file.
    found = importlib.import_module(f"plugz_async.{module}")
    source = ast.parse(Path(found.__file__ or "").read_text())
    defined = {
        node.name
        for node in source.body
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
    }
    runner = doctest.DocTestRunner()
    for test in doctest.DocTestFinder().find(found, module=False, globs=vars(found).copy()):
        top = test.name.removeprefix(f"{found.__name__}.").split(".")[0]
        if test.examples and (top in defined or test.name == found.__name__):
            runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0 and result.failed == 0


def test_the_retry_table_matches_the_routes() -> None:
    import plugz_async as pz

    text = (ROOT / "docs" / "client.md").read_text()
    rows = re.findall(r"^\| `((?:mobile/)?[\w-]+)` \| (GET|POST) \| (\w+) \|", text, re.M)
    assert rows == [(r.path, r.method, r.safety.value) for r in pz.ROUTES]


def diagram_routes() -> list[str]:
    (diagram,) = blocks(ROOT / "docs" / "flow.md", "mermaid")
    return re.findall(r"SDK->>API: (?:GET|POST) /(?:mobile/)?([\w-]+)", diagram)


@pytest.mark.parametrize(
    "number", ["+55 11 90000-0001", "+55 11 90000-0008", "+55 11 90000-0009", "+55 11 90000-0010"]
)
async def test_the_flow_follows_the_sequence_diagram(api: Sandbox, number: str) -> None:
    import plugz_async as pz
    from plugz_async.sandbox import CONFIRMATION_CODE

    async with api.new_client(clock=pz.FakeClock(on_advance=api.advance)) as client:
        result = await client.registration(number).run(**a_person(CONFIRMATION_CODE))
    assert result.connected
    sent = [entry["route"] for entry in api.requests()]
    order = diagram_routes()
    # Each request is a step of the diagram, in the diagram's order (a step may repeat).
    positions = [order.index(route) for route in sent]
    assert positions == sorted(positions)
    assert sent[0] == "registration-available" and "confirm-registration-code" in sent
    assert sent[-1] == "status"  # the instance said it was connected: the result follows


def test_the_queue_diagram_has_every_step_and_ending() -> None:
    import plugz_async as pz

    (diagram,) = blocks(ROOT / "docs" / "scale.md", "mermaid")
    drawn = set(re.findall(r"^\s*(\w+) --> \w+", diagram, re.M))
    drawn |= set(re.findall(r"--> (\w+)", diagram)) | set(re.findall(r"^\s*(\w+):", diagram, re.M))
    steps = {step.value for step in pz.RegistrationStep} - {"done"}  # done: the outcomes
    assert drawn == steps | {outcome.value for outcome in pz.RegistrationOutcome} | {"failed"}


def test_notebooks_are_kept_without_outputs() -> None:
    import json

    for path in (ROOT / "docs" / "notebooks").glob("*.ipynb"):
        notebook = json.loads(path.read_text())
        for cell in notebook["cells"]:
            if cell["cell_type"] == "code":
                assert cell["outputs"] == [] and cell["execution_count"] is None, path.name
