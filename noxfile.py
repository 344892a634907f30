"""The one entry point for tests, lint and type checks: ``nox -s tests lint typecheck``."""

from __future__ import annotations

import glob
import os
import shutil

import nox

# The Pythons the package supports (pyproject's requires-python, and the classifiers).
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]


def _find_pythons() -> None:
    """Put pyenv's interpreters on PATH for the versions not there already (this project's
    machines have them under ~/.pyenv/versions), so that nox finds every one of PYTHONS."""
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    for version in PYTHONS:
        if shutil.which(f"python{version}") and not shutil.which("pyenv"):
            continue
        found = sorted(glob.glob(os.path.join(root, "versions", f"{version}.*", "bin")))
        if found:
            os.environ["PATH"] = found[-1] + os.pathsep + os.environ["PATH"]


_find_pythons()

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite, warnings as errors, with coverage of plugz_async (at least 90%).

    The tests that wait for real (kills, signals, Redis restarts) are the ``chaos``
    session's: pyproject.toml's ``-m "not chaos"`` leaves them out here.
    """
    session.install(".[test]")
    # coverage starts before pytest, so the package's pytest plugin (loaded at start-up
    # through its entry point) is measured from its first line.
    session.run("coverage", "run", "-m", "pytest", "-W", "error", *session.posargs)
    session.run("coverage", "report", "--fail-under=90")


# What the `test` extra installs only for the tests of optional features: the package's extras
# (pandas; matplotlib, of `notebook`; saq, redis and limits, of `queue`) and the FastAPI
# example's web stack.
OPTIONAL = ("pandas", "matplotlib", "fastapi", "httpx", "saq", "redis", "limits", "playwright")

# Fails the session if one of them is there after all (left in a reused virtualenv).
_ABSENT = """
import importlib.util, sys
found = [name for name in sys.argv[1:] if importlib.util.find_spec(name)]
if found:
    sys.exit(f"installed: {', '.join(found)}; run nox -s tests_minimal --reuse-venv=no")
"""


@nox.session(python=PYTHONS)
def tests_minimal(session: nox.Session) -> None:
    """The test suite with none of the optional extras (pandas, matplotlib, FastAPI) installed,
    on every supported Python (``nox -s tests_minimal-3.12`` for one of them).

    The calls that need an extra meet its real absence, and must name the extra to install;
    the tests of an extra skip. Coverage is reported, not enforced: the extras' own code
    cannot run here, and the threshold belongs to the full run (``nox -s tests``).
    """
    from packaging.requirements import Requirement

    test_extra = nox.project.load_toml("pyproject.toml")["project"]["optional-dependencies"]
    session.install(".", *(r for r in test_extra["test"] if Requirement(r).name not in OPTIONAL))
    session.run("python", "-c", _ABSENT, *OPTIONAL, silent=True)
    env = {"COVERAGE_FILE": ".coverage.minimal"}  # the full run's data stays in .coverage
    session.run("coverage", "run", "-m", "pytest", "-W", "error", *session.posargs, env=env)
    session.run("coverage", "report", env=env)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check, ruff format --check, and the floors of the house (import-linter's
    contracts in pyproject.toml: docs/architecture.md)."""
    session.install("ruff", "import-linter>=2.1", ".")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("lint-imports", "--no-cache")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site with MkDocs (Material, mkdocstrings), --strict, after the
    dashboard's browser test has drawn its picture (into build/img/: the tree stays clean).

    The site draws its Mermaid diagrams offline: mermaid.min.js is served from the site
    (docs/js/, kept out of git; docs/overrides/main.html puts it on the pages with a diagram),
    taken from the npm registry at a pinned version and checked against its SHA-256. With the
    script on the page, Material does not fetch its CDN copy.
    """
    import hashlib
    import tarfile
    import tempfile
    from pathlib import Path

    session.install(".[test]", "mkdocs-material>=9.5", "mkdocstrings[python]>=0.26")
    # Of the major version Material's bundle asks for (mermaid@11): tests/test_docs_offline.py
    # checks that the two agree.
    mermaid_version = "11.17.2"
    mermaid_sha256 = "581ed7d74bd9048d0e3a91363927d72ef22942d7722546b27f7cc29e35390eb8"
    script = Path("docs/js/mermaid.min.js")
    if not script.exists() or hashlib.sha256(script.read_bytes()).hexdigest() != mermaid_sha256:
        with tempfile.TemporaryDirectory() as tmp:
            session.run(
                "npm",
                "pack",
                "--silent",
                f"mermaid@{mermaid_version}",
                "--pack-destination",
                tmp,
                external=True,
            )
            (tarball,) = Path(tmp).glob("mermaid-*.tgz")
            with tarfile.open(tarball) as archive:
                member = archive.extractfile("package/dist/mermaid.min.js")
                assert member is not None
                data = member.read()
        if hashlib.sha256(data).hexdigest() != mermaid_sha256:
            session.error(f"mermaid@{mermaid_version}: dist/mermaid.min.js has another SHA-256")
        script.parent.mkdir(exist_ok=True)
        script.write_bytes(data)
    # The dashboard's picture, drawn by the browser test (headless chromium over a real
    # redis-server and the sandbox) into build/img/, never into docs/: the site takes it from
    # there (docs/hooks/fresh_pictures.py) and the working tree stays clean. Where either is
    # missing, the test skips and the site keeps the picture in git (under CI it fails: CI
    # installs both).
    session.run(
        "python",
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/test_dashboard.py",
        "-k",
        "chromium",
        env={"PLUGZ_DASHBOARD_SCREENSHOT": "build/img/dashboard.png"},
    )
    session.run("mkdocs", "build", "--strict", "--site-dir", "build/site")


@nox.session
def notebooks(session: nox.Session) -> None:
    """Execute docs/notebooks/*.ipynb with nbclient."""
    session.install(".[notebook]", "nbclient", "nbformat", "ipykernel")
    session.run("python", "docs/notebooks/run.py", env={"MPLBACKEND": "Agg"})


@nox.session
def bench(session: nox.Session) -> None:
    """The benchmarks (bench/): ratios against raw aiohttp (on asyncio's loop and on uvloop),
    httpx and requests; pacing; RSS; the planner.

    Never part of the tests. ``nox -s bench -- --quick`` for a short run.
    """
    session.install(".", "httpx", "requests", "uvloop")
    session.run("python", "bench/bench.py", *session.posargs)


@nox.session
def bench_queue(session: nox.Session) -> None:
    """The durable queue end to end: 3,000 registrations on the sandbox with 1, 2 and 4
    worker processes (registrations per second, code-request lateness, Redis memory, CPU).

    Needs ``redis-server``. Never part of the tests. ``nox -s bench_queue -- --quick`` for
    1,000 registrations, ``-- --full`` for 10,000 (about 8 minutes on 2 cores).
    """
    session.install(".[queue]")
    session.run("python", "bench/queue_bench.py", *session.posargs)


@nox.session
def chaos(session: nox.Session) -> None:
    """The tests that wait for real (``-m chaos``): worker processes killed with SIGKILL and
    stalled with SIGSTOP, Redis killed and restarted, signals, seconds of real waits.

    The README's test command (``nox -s tests``) leaves them out, so it stays fast and
    passes on a busy machine; ``.ci/run`` runs both. Their margins come from what the code
    promises, measured where the promise is kept. Needs ``redis-server``.
    """
    session.install(".[test]")
    session.run("pytest", "-W", "error", "-m", "chaos", "-p", "no:cacheprovider", *session.posargs)


@nox.session
def soak_queue(session: nox.Session) -> None:
    """The queue's exactly-once promise under random faults (bench/queue_chaos.py): a
    10-minute soak of random worker kills, stops and Redis restarts over 200 registrations
    on 2-4 workers, printing numbers, code requests, duplicates, stuck and lateness.

    Exits non-zero on a second code in a window. Needs ``redis-server``. Never part of the
    tests. ``nox -s soak_queue -- kill`` kills one worker with 40 code requests in flight
    instead; ``-- soak --minutes 2`` for a short soak; ``-- --help`` for the rest.
    """
    session.install(".[queue]")
    session.run("python", "bench/queue_chaos.py", *(session.posargs or ["soak"]))


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
    """mypy --strict on the package and the tests."""
    session.install(".[test]", "mypy")  # plugz_async.testing imports pytest
    session.run("mypy", "--strict", "plugz_async", "tests")
