"""The pytest plugin, as a user's own test suite meets it.

The suite is the one docs/sandbox.md shows, run by pytester in a fresh pytest.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import blocks

DOCS = Path(__file__).parent.parent / "docs" / "sandbox.md"


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_the_documented_suite_passes_with_the_plugin(pytester: pytest.Pytester, mode: str) -> None:
    (suite,) = blocks(DOCS, "python", "pytest")
    if mode == "strict":  # pytest-asyncio's default: async tests are marked
        suite = suite.replace(
            "\nasync def test_", "\n@__import__('pytest').mark.asyncio\nasync def test_"
        )
    pytester.makepyfile(test_users_suite=suite.lstrip("\n"))
    result = pytester.runpytest_subprocess(
        "-o",
        f"asyncio_mode={mode}",
        "-o",
        "asyncio_default_fixture_loop_scope=function",
        "-W",
        "error",
    )
    result.assert_outcomes(passed=4)


def test_the_plugin_is_registered_as_an_entry_point() -> None:
    from importlib.metadata import entry_points

    (found,) = [e for e in entry_points(group="pytest11") if e.name == "plugz_async"]
    assert found.value == "plugz_async.testing.fixtures"


def test_the_testing_package_loads_its_fixtures_on_first_use() -> None:
    import plugz_async.testing as testing
    from plugz_async.testing import fixtures, plugz_sandbox

    assert plugz_sandbox is fixtures.plugz_sandbox
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = testing.nope


def test_the_package_named_as_a_plugin_brings_its_fixtures(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With plugin autoloading off, ``-p plugz_async.testing`` (the name a conftest's
    ``pytest_plugins`` would give) registers the fixtures."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makepyfile(
        test_named="""
def test_the_sandbox_is_there(plugz_sandbox):
    assert plugz_sandbox.base_url.startswith("http://127.0.0.1:")
"""
    )
    result = pytester.runpytest_subprocess("-p", "plugz_async.testing", "-W", "error")
    result.assert_outcomes(passed=1)


# The last test of a suite collects what the others left: a socket or transport still open
# warns there (an error under -W error).
LEFT_OPEN = """

def test_zz_nothing_was_left_open():
    import gc

    gc.collect()
"""


def run_with_warnings_as_errors(pytester: pytest.Pytester) -> pytest.RunResult:
    """The suite written by the test, in a process of its own, warnings as errors."""
    return pytester.runpytest_subprocess(
        "-o",
        "asyncio_mode=auto",
        "-o",
        "asyncio_default_fixture_loop_scope=function",
        "-W",
        "error",
    )


def test_the_sandbox_client_serves_each_async_test_and_leaks_nothing(
    pytester: pytest.Pytester,
) -> None:
    """``plugz_sandbox.client`` in async tests: each test's loop closes before the sandbox
    stops (pytest-asyncio closes it first); nothing of that loop's is left open, in a
    test's own loop or in one the module shares (at rest when the sandbox stops)."""
    pytester.makepyfile(
        test_client_per_test="""
import pytest


async def test_one(plugz_sandbox):
    assert (await plugz_sandbox.client.check_availability("+55 11 90000-0001")).available


async def test_two(plugz_sandbox):
    assert (await plugz_sandbox.client.check_availability("+55 11 90000-0002")).available


@pytest.mark.asyncio(loop_scope="module")
async def test_in_the_modules_loop(plugz_sandbox):
    assert (await plugz_sandbox.client.check_availability("+55 11 90000-0001")).available


@pytest.mark.asyncio(loop_scope="module")
async def test_in_the_modules_loop_again(plugz_sandbox):
    assert (await plugz_sandbox.client.check_availability("+55 11 90000-0001")).available
"""
        + LEFT_OPEN
    )
    result = run_with_warnings_as_errors(pytester)
    result.assert_outcomes(passed=5)


def test_a_sandbox_client_shared_by_tests_says_to_take_plugz_client(
    pytester: pytest.Pytester,
) -> None:
    """A sandbox of the user's own that outlives a test: its client belongs to the first
    test's loop, and the next test is told what to use instead."""
    pytester.makepyfile(
        test_shared="""
import pytest

from plugz_async.sandbox import SandboxThread


@pytest.fixture(scope="module")
def sandbox():
    with SandboxThread() as sandbox:
        yield sandbox


async def test_first(sandbox):
    assert (await sandbox.client.check_availability("+55 11 90000-0001")).available


async def test_second(sandbox):
    await sandbox.client.check_availability("+55 11 90000-0001")
"""
        + LEFT_OPEN
    )
    result = run_with_warnings_as_errors(pytester)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        ["*WrongEventLoopError: this PlugzClient sent its first request in an event loop that*"]
    )
    assert "the plugz_client fixture" in result.stdout.str()
