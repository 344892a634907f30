"""The one entry point for tests, lint and type checks: ``nox -s tests lint typecheck``."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite, warnings as errors, with coverage of plugz_async (at least 90%)."""
    session.install(".[test]")
    # coverage starts before pytest, so the package's pytest plugin (loaded at start-up
    # through its entry point) is measured from its first line.
    session.run("coverage", "run", "-m", "pytest", "-W", "error", *session.posargs)
    session.run("coverage", "report", "--fail-under=90")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site with MkDocs (Material, mkdocstrings), --strict."""
    session.install(".", "mkdocs-material>=9.5", "mkdocstrings[python]>=0.26")
    session.run("mkdocs", "build", "--strict", "--site-dir", "build/site")


@nox.session
def notebooks(session: nox.Session) -> None:
    """Execute docs/notebooks/*.ipynb with nbclient."""
    session.install(".[notebook]", "nbclient", "nbformat", "ipykernel")
    session.run("python", "docs/notebooks/run.py", env={"MPLBACKEND": "Agg"})


@nox.session
def bench(session: nox.Session) -> None:
    """The benchmarks (bench/): ratios against raw aiohttp, httpx and requests, RSS, planner.

    Never part of the tests. ``nox -s bench -- --quick`` for a short run.
    """
    session.install(".", "httpx", "requests")
    session.run("python", "bench/bench.py", *session.posargs)


@nox.session
def fuzz(session: nox.Session) -> None:
    """The property tests with hostile input, 10,000 examples each, and a 1 GB input line."""
    session.install(".[test]")
    session.run(
        "pytest",
        "-W",
        "error",
        "-m",
        "fuzz",
        "-p",
        "no:cacheprovider",
        *session.posargs,
        env={"PLUGZ_FUZZ_EXAMPLES": "10000", "PLUGZ_FUZZ_BIG": "1"},
    )


@nox.session
def soak(session: nox.Session) -> None:
    """200,000 checks with 5% faults at concurrency 256, sampling sockets, tasks and memory."""
    session.install(".")
    session.run("python", "bench/soak.py", *session.posargs)


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package."""
    session.install(".[test]", "mypy")  # plugz_async.testing imports pytest
    session.run("mypy", "--strict", "plugz_async")
