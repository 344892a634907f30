"""The public face: exactly these names, typed, and what importing it loads."""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import inspect
import re
import sys
import types
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType

import pytest

import plugz_async as pz

PACKAGE = Path(pz.__file__).parent

PUBLIC = {
    "DEFAULT_BASE_URL",
    "ROUTES",
    "ZAPI_BASE_URL",
    "APIError",
    "Assessment",
    "AttemptMiddleware",
    "AuthenticationError",
    "Availability",
    "BadRequestError",
    "BulkItem",
    "BulkRow",
    "BulkRun",
    "BulkSummary",
    "CaptchaAnswer",
    "Channel",
    "ChannelWindow",
    "ClientClosedError",
    "Clock",
    "CodeConfirmation",
    "CodeRequest",
    "ConfigurationError",
    "Connections",
    "ConnectError",
    "DeviceTransfer",
    "EventKind",
    "FakeClock",
    "InstanceNotFoundError",
    "InstanceStatus",
    "InvalidArgument",
    "InvalidPhoneNumber",
    "MethodNotAllowedError",
    "MissingCountryCode",
    "MissingDependencyError",
    "NoChannelError",
    "OutageError",
    "PlanOutcome",
    "PhoneNumber",
    "PinConfirmation",
    "PinRecovery",
    "PlanDataError",
    "PlugzClient",
    "PlugzError",
    "RateLimitError",
    "RateSchedule",
    "Registration",
    "RegistrationEvent",
    "RegistrationOutcome",
    "RegistrationPlan",
    "RegistrationPlanner",
    "RegistrationResult",
    "RegistrationStateError",
    "RegistrationMachine",
    "RegistrationState",
    "RegistrationStep",
    "InstanceBusyError",
    "StaleWriteError",
    "UnknownRegistrationError",
    "RequestTimeout",
    "ResponseDecodeError",
    "ResultsFile",
    "RetryEvent",
    "RetryPolicy",
    "RetrySafety",
    "Route",
    "SameLine",
    "SeenLines",
    "Send",
    "ServerError",
    "SystemClock",
    "TransportError",
    "UnbanRequest",
    "UnbanStatus",
    "UnsupportedMediaTypeError",
    "WrongEventLoopError",
    "read_results",
    "redact_url",
    "to_dataframe",
    "__version__",
}


def test_all_is_exactly_the_public_names_and_sorted() -> None:
    assert set(pz.__all__) == PUBLIC
    assert len(pz.__all__) == len(PUBLIC)

    # Sorted the way ruff sorts __all__: CONSTANTS, then Classes, then the rest.
    def kind(name: str) -> int:
        return 0 if name.isupper() else 1 if name[0].isupper() else 2

    assert pz.__all__ == sorted(pz.__all__, key=lambda n: (kind(n), n))
    public_attributes = {
        n for n in dir(pz) if not n.startswith("_") and not isinstance(getattr(pz, n), ModuleType)
    }
    assert public_attributes == PUBLIC - {"__version__"}


def test_sandbox_and_testing_load_on_first_use() -> None:
    assert pz.sandbox.running is importlib.import_module("plugz_async.sandbox").running
    assert pz.testing.__name__ == "plugz_async.testing"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = pz.nope


@pytest.mark.parametrize(
    ("code", "never"),
    [
        # A service imports the SDK: no terminal UI, no server, no dataframes.
        (
            "import plugz_async",
            {"rich", "aiohttp.web", "pandas", "matplotlib", "saq", "redis", "limits"},
        ),
        # `plugz-async check` loads its own command: not the sandbox server, nor the queue's.
        (
            "from plugz_async.cli import build_parser; build_parser('check')",
            {
                "aiohttp.web",
                "plugz_async.sandbox",
                "plugz_async.cli._bulk",
                "plugz_async.cli.queue",
                "plugz_async.queue",
                "pandas",
            },
        ),
    ],
)
def test_what_an_import_loads(code: str, never: set[str]) -> None:
    import subprocess

    probe = f"import sys; {code}; print(sorted(sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    loaded = set(ast.literal_eval(done.stdout))
    assert not never & loaded, never & loaded


def test_version_matches_the_distribution_and_py_typed_ships() -> None:
    assert pz.__version__ == importlib.metadata.version("plugz-async")
    assert (PACKAGE / "py.typed").is_file()


def test_error_tree_and_builtin_bases() -> None:
    assert issubclass(pz.InvalidPhoneNumber, ValueError)
    assert issubclass(pz.MissingCountryCode, pz.InvalidPhoneNumber)
    assert issubclass(pz.ConfigurationError, ValueError)
    assert issubclass(pz.RequestTimeout, TimeoutError)
    assert issubclass(pz.RequestTimeout, pz.TransportError)
    assert issubclass(pz.ConnectError, ConnectionError)
    assert issubclass(pz.ClientClosedError, RuntimeError)
    assert issubclass(pz.WrongEventLoopError, RuntimeError)
    assert issubclass(pz.NoChannelError, LookupError)
    assert issubclass(pz.OutageError, ConnectionError)
    assert issubclass(pz.InstanceBusyError, pz.RegistrationStateError)
    assert issubclass(pz.StaleWriteError, RuntimeError)
    assert issubclass(pz.UnknownRegistrationError, LookupError)
    for cls in (
        pz.BadRequestError,
        pz.AuthenticationError,
        pz.InstanceNotFoundError,
        pz.MethodNotAllowedError,
        pz.UnsupportedMediaTypeError,
        pz.RateLimitError,
        pz.ServerError,
    ):
        assert issubclass(cls, pz.APIError)
    exported = [getattr(pz, n) for n in pz.__all__]
    errors = [c for c in exported if isinstance(c, type) and issubclass(c, BaseException)]
    assert len(errors) == 27
    assert all(issubclass(cls, pz.PlugzError) for cls in errors)
    # The docstring's drawing names every error class.
    doc = importlib.import_module("plugz_async._errors").__doc__ or ""
    assert all(cls.__name__ in doc for cls in errors)


# Which module may import which is the layers contract of import-linter (pyproject.toml,
# `nox -s lint`); the tests check what it cannot: what an import loads at run time.


@pytest.mark.parametrize(
    "make",
    [
        lambda: pz.RegistrationPlanner(margin=-1),
        lambda: pz.RegistrationPlanner(preference=()),
        lambda: pz.RegistrationPlanner(preference=("sms", "sms")),
        lambda: pz.RegistrationPlanner(preference=("fax",)),
        lambda: pz.RetryPolicy(attempts=0),
        lambda: pz.RetryPolicy(wait_max=-1),
        lambda: pz.RetryPolicy(deadline=0),
    ],
)
def test_every_bad_argument_is_a_plugz_error(make: Callable[[], object]) -> None:
    with pytest.raises(pz.InvalidArgument):
        make()


PLAN = pz.RegistrationPlanner().plan(
    pz.Availability(
        number=pz.PhoneNumber.parse("+55 11 90000-0001"),
        available=True,
        observed_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
    )
)


@pytest.mark.parametrize(
    ("module", "call", "extra"),
    [
        ("pandas", lambda: pz.to_dataframe([]), "pandas"),
        ("matplotlib.pyplot", lambda: PLAN.plot(), "notebook"),
    ],
)
def test_a_missing_extra_is_an_import_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, module: str, call: Callable[[], object], extra: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    with pytest.raises(ImportError) as info:
        call()
    assert isinstance(info.value, pz.MissingDependencyError)
    assert f"pip install 'plugz-async[{extra}]'" in str(info.value)
    assert f"from a clone of the repository: pip install '.[{extra}]'" in str(info.value)
    assert info.value.extra == extra and info.value.name == module


def test_the_queue_without_its_extra_is_an_import_error_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [m for m in sys.modules if m.startswith("plugz_async.queue")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "saq", None)  # as if not installed
    with pytest.raises(pz.MissingDependencyError) as info:
        importlib.import_module("plugz_async.queue")
    assert "pip install 'plugz-async[queue]'" in str(info.value)
    assert info.value.extra == "queue" and info.value.name == "saq"


def test_public_names_report_the_package_as_their_module() -> None:
    for name in pz.__all__:
        value = getattr(pz, name)
        # (A type alias such as AttemptMiddleware passes for a type on Python 3.10.)
        alias = isinstance(value, types.GenericAlias)
        if (isinstance(value, type) and not alias) or inspect.isfunction(value):
            assert value.__module__ == "plugz_async", name
    assert repr(pz.RateLimitError) == "<class 'plugz_async.RateLimitError'>"


def test_the_registration_outcomes_that_are_plan_outcomes_share_their_values() -> None:
    shared = {o.name for o in pz.PlanOutcome} & {o.name for o in pz.RegistrationOutcome}
    assert shared == {"APPEAL", "BLOCKED", "BLOCKED_AT_CODE_REQUEST", "UNAVAILABLE", "NO_CHANNEL"}
    for name in shared:
        plan_outcome = pz.PlanOutcome[name]
        assert pz.RegistrationOutcome.of_plan(plan_outcome) is pz.RegistrationOutcome[name]
    assert pz.RegistrationOutcome.of_plan(pz.PlanOutcome.READY) is None
    assert pz.RegistrationOutcome.of_plan(pz.PlanOutcome.WAIT) is None


@pytest.mark.parametrize(
    ("method", "cls"),
    [
        ("check_many", "plugz_async._bulk.BulkRun"),
        ("registration", "plugz_async._registration._driver.Registration"),
    ],
)
def test_the_client_factories_take_what_their_classes_take(method: str, cls: str) -> None:
    """An option added to the class is added to the factory too (and the defaults agree)."""
    module, name = cls.rsplit(".", 1)
    built = getattr(importlib.import_module(module), name)
    factory = inspect.signature(getattr(pz.PlugzClient, method))
    made = inspect.signature(built)
    skip = {"self", "client", "number", "numbers"}
    ours = {p.name: p.default for p in factory.parameters.values() if p.name not in skip}
    theirs = {p.name: p.default for p in made.parameters.values() if p.name not in skip}
    assert ours.keys() == theirs.keys()
    for option, default in theirs.items():
        if default is not inspect.Parameter.empty:
            assert ours[option] == default, option


def test_an_old_name_still_answers_and_says_its_new_one() -> None:
    with pytest.warns(
        DeprecationWarning, match="plugz_async.Outcome is now plugz_async.PlanOutcome"
    ):
        old = pz.Outcome
    assert old is pz.PlanOutcome


def test_the_command_line_without_rich_says_how_to_install_it() -> None:
    """A library install leaves rich out: the console script says so in one line, exit 2."""
    import subprocess

    hide_rich = (
        "import sys; sys.modules['rich'] = None; sys.argv = ['plugz-async', 'demo'];"
        "from plugz_async.__main__ import main; main()"
    )
    done = subprocess.run(
        [sys.executable, "-c", hide_rich], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (
        "plugz-async: the command line needs rich: pip install 'plugz-async[cli]' "
        "(from a clone of the repository: pip install '.[cli]')\n"
    )
    version = hide_rich.replace("'demo'", "'--version'")
    done = subprocess.run([sys.executable, "-c", version], capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (0, f"plugz-async {pz.__version__}\n")


def test_the_library_and_its_console_script_entry_need_no_rich() -> None:
    """`import plugz_async` and the console script's own module load without rich, and the
    metadata keeps rich out of the library's requirements (it is the cli extra's)."""
    import subprocess

    code = (
        "import sys; sys.modules['rich'] = None; import plugz_async, plugz_async.__main__;"
        "print(sorted(m for m in sys.modules if m.startswith('rich') and sys.modules[m]))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "[]\n"
    requires = importlib.metadata.requires("plugz-async") or []
    plain = [r for r in requires if "extra ==" not in r]
    assert not any(r.startswith("rich") for r in plain), plain
    assert any(r.startswith("rich") and "extra == 'cli'" in r.replace('"', "'") for r in requires)
    # The parser without its 48 MB of geocoding, carrier and time zone data.
    names = {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0] for r in plain}
    assert "phonenumberslite" in names and "phonenumbers" not in names, names
    scripts = importlib.metadata.entry_points(group="console_scripts", name="plugz-async")
    assert [e.value for e in scripts] == ["plugz_async.__main__:main"]


def test_the_wheel_and_the_sdist_hold_the_license_and_the_sdist_the_docs_config(
    tmp_path: Path,
) -> None:
    """What is shipped is what its metadata says (MIT, with the text) and what a clone
    builds its docs and runs its tests from."""
    import subprocess
    import tarfile
    import zipfile

    pytest.importorskip("hatchling")
    root = Path(__file__).parent.parent
    done = subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-d", str(tmp_path)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    (wheel,) = tmp_path.glob("*.whl")
    (sdist,) = tmp_path.glob("*.tar.gz")
    license_text = (root / "LICENSE").read_text()
    assert license_text.startswith("MIT License")
    with zipfile.ZipFile(wheel) as archive:
        (licensed,) = [n for n in archive.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
        assert archive.read(licensed).decode() == license_text
        metadata = archive.read(licensed.replace("licenses/LICENSE", "METADATA")).decode()
        assert "License-Expression: MIT" in metadata
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"LICENSE", "mkdocs.yml", "noxfile.py", ".ci/run", "README.md"} <= names
    assert "docs/js/mermaid.min.js" not in names
