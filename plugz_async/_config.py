"""What a client is configured with: the API's addresses, the ``PLUGZ_*`` variables,
and the checks of credentials and base URLs (a `ConfigurationError` before anything)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import yarl

from ._errors import ConfigurationError

__all__ = [
    "DEFAULT_BASE_URL",
    "ENV_BASE_URL",
    "ENV_CLIENT_TOKEN",
    "ENV_INSTANCE_ID",
    "ENV_INSTANCE_TOKEN",
    "ZAPI_BASE_URL",
    "base_url_of",
    "credential",
    "options_from_env",
]

DEFAULT_BASE_URL = "https://api.plugzapi.com.br"
ZAPI_BASE_URL = "https://api.z-api.io"

ENV_INSTANCE_ID = "PLUGZ_INSTANCE_ID"
ENV_INSTANCE_TOKEN = "PLUGZ_INSTANCE_TOKEN"
ENV_CLIENT_TOKEN = "PLUGZ_CLIENT_TOKEN"
ENV_BASE_URL = "PLUGZ_BASE_URL"


def credential(name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"{name} must be a non-empty string")
    if value != value.strip() or any(c.isspace() or ord(c) < 32 for c in value):
        raise ConfigurationError(f"{name} must not contain spaces or control characters")
    return value


def base_url_of(value: str) -> str:
    try:
        url = yarl.URL(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"base_url {value!r} is not a URL") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(f"base_url must be an http(s) URL with a host, not {value!r}")
    if url.query_string or url.fragment:
        raise ConfigurationError("base_url must not have a query or a fragment")
    if url.user is not None or url.password is not None:
        # The API authenticates with the tokens; a password here would show in every repr.
        raise ConfigurationError("base_url must not carry a user name or a password")
    try:
        (url.raw_host or "").strip("[]").encode("idna")  # each label 1 to 63 characters
    except UnicodeError:
        raise ConfigurationError(f"base_url's host {url.host!r} is not a valid name") from None
    return str(url).rstrip("/")


def options_from_env(environ: Mapping[str, str] | None, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with the credentials (and the base URL) the ``PLUGZ_*`` variables give,
    where ``options`` does not give them already.

    Raises:
        ConfigurationError: naming every required variable that is missing or empty.
    """
    env = os.environ if environ is None else environ
    names = {
        "instance_id": ENV_INSTANCE_ID,
        "instance_token": ENV_INSTANCE_TOKEN,
        "client_token": ENV_CLIENT_TOKEN,
    }
    missing = [
        variable
        for option, variable in names.items()
        if option not in options and not env.get(variable, "").strip()
    ]
    if missing:
        raise ConfigurationError(
            "missing environment variable"
            + ("s " if len(missing) > 1 else " ")
            + ", ".join(missing)
        )
    for option, variable in names.items():
        options.setdefault(option, env.get(variable, "").strip())
    if env.get(ENV_BASE_URL, "").strip():
        options.setdefault("base_url", env[ENV_BASE_URL].strip())
    return options
