"""The one line the command line says for each run-level error."""

from __future__ import annotations

import pytest

import plugz_async as pz
from plugz_async.cli._explain import CredentialSource, counts_line, explain, is_run_error

REAL = CredentialSource("https://api.plugzapi.com.br")
FLAGS = CredentialSource("http://127.0.0.1:8080", flags=frozenset({"client_token", "base_url"}))


def api_error(cls: type[pz.APIError], status: int, **fields: object) -> pz.APIError:
    return cls(f"mobile/registration-available: HTTP {status}", status=status, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "where", "said"),
    [
        (
            api_error(pz.AuthenticationError, 403, credential="client_token"),
            REAL,
            "PLUGZ_CLIENT_TOKEN refused: HTTP 403 from api.plugzapi.com.br",
        ),
        (
            api_error(pz.AuthenticationError, 400, credential="client_token"),
            FLAGS,
            "--client-token missing: HTTP 400 from 127.0.0.1:8080",
        ),
        (
            api_error(pz.AuthenticationError, 401),
            REAL,
            "credentials refused: HTTP 401 from api.plugzapi.com.br; check PLUGZ_INSTANCE_TOKEN "
            "and PLUGZ_CLIENT_TOKEN",
        ),
        (
            api_error(pz.InstanceNotFoundError, 200, error="NOT_FOUND"),
            REAL,
            "instance not found: HTTP 200 from api.plugzapi.com.br (NOT_FOUND); check "
            "PLUGZ_INSTANCE_ID and PLUGZ_INSTANCE_TOKEN",
        ),
        (
            pz.OutageError(
                "x", failures=30, last_error=api_error(pz.ServerError, 502, error="Bad Gateway")
            ),
            REAL,
            "stopped after 30 numbers in a row failed at api.plugzapi.com.br "
            "(the last: ServerError: HTTP 502)",
        ),
        (
            pz.OutageError("x", failures=5, last_error=pz.RequestTimeout("r: no answer")),
            REAL,
            "could not reach api.plugzapi.com.br (the last: RequestTimeout: no answer); check "
            "PLUGZ_BASE_URL",
        ),
        (
            pz.ConnectError("could not connect for r: refused"),
            FLAGS,
            "cannot connect to 127.0.0.1:8080 (refused); check --base-url and the network",
        ),
        (pz.RequestTimeout("no answer"), REAL, "api.plugzapi.com.br did not answer within 30 s"),
        (pz.TransportError("r failed: reset"), REAL, "the connection to api.plugzapi.com.br"),
        (api_error(pz.RateLimitError, 429), REAL, "asked to slow down (HTTP 429); lower --rate"),
        (api_error(pz.ServerError, 503), REAL, "api.plugzapi.com.br failed: HTTP 503"),
        (pz.ConfigurationError("PLUGZ_INSTANCE_ID is not set"), REAL, "set the PLUGZ_* variables"),
        (
            api_error(pz.InstanceNotFoundError, 404, error="Not Found"),
            REAL,
            "not found: HTTP 404 from api.plugzapi.com.br (Not Found); check PLUGZ_BASE_URL",
        ),
        (pz.InvalidArgument("odd"), REAL, "InvalidArgument: odd"),
    ],
)
def test_each_run_level_error_in_one_line(
    error: pz.PlugzError, where: CredentialSource, said: str
) -> None:
    line = explain(error, where, timeout=30.0)
    assert said in line and "\n" not in line


def test_the_sandbox_refusing_is_said_as_such() -> None:
    sandbox = CredentialSource("http://127.0.0.1:9", sandbox=True)
    line = explain(api_error(pz.AuthenticationError, 403), sandbox)
    assert line.startswith("the sandbox at 127.0.0.1:9 refused the request")


def test_hosts_and_what_is_about_the_run() -> None:
    assert CredentialSource("not a url").host == "not a url"
    assert CredentialSource("https://api.z-api.io:443").host == "api.z-api.io"
    assert is_run_error(pz.ConnectError("x")) and not is_run_error(pz.InvalidPhoneNumber("x"))
    assert not is_run_error(api_error(pz.BadRequestError, 400))
    assert counts_line({"RequestTimeout": 2, "ServerError": 3, "ConnectError": 2}) == (
        "ServerError 3, ConnectError 2, RequestTimeout 2"
    )
