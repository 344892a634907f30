"""What a client is configured with: the API's addresses, the ``PLUGZ_*`` variables,
the proxy, and the checks of credentials, base URLs and proxy URLs (a
`ConfigurationError` before anything)."""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import yarl

from ._errors import ConfigurationError, InvalidArgument
from ._phone import check_region

__all__ = [
    "DEFAULT_BASE_URL",
    "ENV_BASE_URL",
    "ENV_CANONICAL_NUMBERS",
    "ENV_CLIENT_TOKEN",
    "ENV_INSTANCE_ID",
    "ENV_INSTANCE_TOKEN",
    "ZAPI_BASE_URL",
    "Proxy",
    "base_url_of",
    "canonical_setting",
    "credential",
    "options_from_env",
    "proxy_from_env",
    "proxy_of",
    "region_setting",
]

DEFAULT_BASE_URL = "https://api.plugzapi.com.br"
ZAPI_BASE_URL = "https://api.z-api.io"

ENV_INSTANCE_ID = "PLUGZ_INSTANCE_ID"
ENV_INSTANCE_TOKEN = "PLUGZ_INSTANCE_TOKEN"
ENV_CLIENT_TOKEN = "PLUGZ_CLIENT_TOKEN"
ENV_BASE_URL = "PLUGZ_BASE_URL"
ENV_DEFAULT_REGION = "PLUGZ_DEFAULT_REGION"
ENV_CANONICAL_NUMBERS = "PLUGZ_CANONICAL_NUMBERS"

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


def canonical_setting(value: object, *, source: str = "canonical_numbers") -> bool:
    """A ``canonical_numbers`` setting: ``True`` or ``False``, or the text of
    `ENV_CANONICAL_NUMBERS` (``1``/``true``/``yes``/``on``, ``0``/``false``/``no``/``off``,
    in any case; empty is ``False``).

    Raises:
        ConfigurationError: anything else (``source`` names where it came from).
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ConfigurationError(
        f"{source} must be true or false (1 or 0, yes or no, on or off), not {value!r}"
    )


def region_setting(value: str | None) -> str | None:
    """A ``default_region`` setting, checked (``"br"`` is ``"BR"``).

    Raises:
        ConfigurationError: a region phonenumbers does not know.
    """
    try:
        return check_region(value)
    except InvalidArgument as exc:
        raise ConfigurationError(f"default_region: {exc}") from None


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
    """``options`` with the credentials (the base URL, the default region, whether numbers
    are sent in their canonical form) the ``PLUGZ_*`` variables give, where ``options``
    does not give them already.

    Raises:
        ConfigurationError: naming every required variable that is missing or empty; or
            `ENV_CANONICAL_NUMBERS` that is neither true nor false.
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
    if env.get(ENV_DEFAULT_REGION, "").strip():
        options.setdefault("default_region", env[ENV_DEFAULT_REGION].strip())
    if "canonical_numbers" not in options and env.get(ENV_CANONICAL_NUMBERS, "").strip():
        options["canonical_numbers"] = canonical_setting(
            env[ENV_CANONICAL_NUMBERS], source=ENV_CANONICAL_NUMBERS
        )
    return options


@attrs.frozen(repr=False)
class Proxy:
    """The proxy a client sends through: its URL, credentials included (aiohttp sends them
    as ``Proxy-Authorization``), and the password to keep out of every message."""

    url: yarl.URL

    @property
    def secrets(self) -> tuple[str, ...]:
        return () if not self.url.password else (self.url.password,)

    def __repr__(self) -> str:
        shown = self.url.with_password("***") if self.url.password else self.url
        return f"Proxy({str(shown)!r})"


def proxy_of(proxy: object, auth: object = None, *, source: str = "proxy") -> Proxy | None:
    """The `Proxy` of a ``proxy=`` URL and its ``proxy_auth=`` (a ``(login, password)``
    pair).

    Raises:
        ConfigurationError: not an http(s) URL with a host, or credentials given twice;
            the message never shows the password.
    """
    if proxy is None:
        if auth is not None:
            raise ConfigurationError("proxy_auth= needs a proxy= to go with it")
        return None
    if auth is not None and not (
        isinstance(auth, tuple) and len(auth) == 2 and all(isinstance(a, str) for a in auth)
    ):
        raise ConfigurationError("proxy_auth must be a (login, password) pair of strings")
    try:
        url = yarl.URL(proxy) if isinstance(proxy, str) else None
    except ValueError:
        url = None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(
            f"{source} must be an http(s) URL with a host, such as http://proxy.example:3128"
        )
    if auth is not None:
        if url.user is not None:
            raise ConfigurationError(f"{source} has a user name already: drop proxy_auth=")
        login, password = auth
        url = url.with_user(login).with_password(password or None)
    return Proxy(url)


def proxy_from_env(base_url: str, environ: Mapping[str, str] | None = None) -> Proxy | None:
    """The proxy the environment gives for ``base_url`` (``HTTPS_PROXY`` or ``HTTP_PROXY``
    by its scheme, in upper or lower case), unless ``NO_PROXY`` names its host; as
    ``urllib`` (and so requests and httpx) reads them.

    Raises:
        ConfigurationError: the variable is set to something that is not a proxy URL.
    """
    url = yarl.URL(base_url)
    proxies = urllib.request.getproxies_environment() if environ is None else _proxies_in(environ)
    no_proxy = {"no": proxies.get("no", "")}
    if url.host is not None and _proxy_bypass(url.host, no_proxy):
        return None
    found = proxies.get(url.scheme)
    if not found:
        return None
    return proxy_of(found, source=f"the environment's {url.scheme.upper()}_PROXY")


#: urllib's reading of NO_PROXY (documented, though typeshed does not list it).
_proxy_bypass: Callable[[str, dict[str, str]], bool] = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]


def _proxies_in(environ: Mapping[str, str]) -> dict[str, str]:
    """``urllib.request.getproxies_environment()``, of a mapping: lower case wins."""
    found: dict[str, str] = {}
    for name in sorted(environ, key=lambda n: n.islower()):  # upper first, lower over it
        if name.lower().endswith("_proxy") and environ[name]:
            found[name.lower()[: -len("_proxy")]] = environ[name]
    return found
