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
