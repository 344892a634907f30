"""What the queue reads from its settings and its environment: the Redis URL
(``PLUGZ_REDIS_URL``), and the instance tokens a worker works with (`Credentials`:
``PLUGZ_INSTANCE_ID`` and ``PLUGZ_INSTANCE_TOKEN``, ``PLUGZ_INSTANCES_FILE``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from plugz_async._config import ENV_INSTANCE_ID, ENV_INSTANCE_TOKEN
from plugz_async._errors import ConfigurationError

__all__ = [
    "ENV_INSTANCES_FILE",
    "ENV_REDIS_URL",
    "Credentials",
    "credentials_from_env",
    "read_credentials_file",
    "redis_url_of",
]

ENV_REDIS_URL = "PLUGZ_REDIS_URL"
ENV_INSTANCES_FILE = "PLUGZ_INSTANCES_FILE"

Credentials = Mapping[str, str] | Callable[[str], Awaitable[str | None]]
"""Where a worker finds an instance's token: a mapping of instance id to token, or
``await credentials(instance_id)`` (a secrets manager, say), ``None`` when unknown."""


def read_credentials_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """Instance tokens from a JSON file: ``{"instance id": "token", ...}``.

    Raises:
        ConfigurationError: the file cannot be read or is not such an object (the
            message never quotes the file's content).
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ConfigurationError(
            f"cannot read the instances file {os.fspath(path)!r}: {type(error).__name__}"
        ) from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and k and v for k, v in data.items()
    ):
        raise ConfigurationError(
            f"the instances file {os.fspath(path)!r} must hold one JSON object of"
            ' "instance id": "token" pairs'
        )
    return dict(data)


def credentials_from_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The instance tokens the environment gives: ``PLUGZ_INSTANCE_ID`` and
    ``PLUGZ_INSTANCE_TOKEN``, and every pair in the file ``PLUGZ_INSTANCES_FILE`` names."""
    env = os.environ if environ is None else environ
    found: dict[str, str] = {}
    if env.get(ENV_INSTANCES_FILE, "").strip():
        found.update(read_credentials_file(env[ENV_INSTANCES_FILE].strip()))
    instance, token = env.get(ENV_INSTANCE_ID, "").strip(), env.get(ENV_INSTANCE_TOKEN, "").strip()
    if instance and token:
        found[instance] = token
    return found


def redis_url_of(redis_url: str | None, environ: Mapping[str, str]) -> str:
    """The Redis URL given, else ``PLUGZ_REDIS_URL``.

    Raises:
        ConfigurationError: neither is set, or it is not a Redis URL.
    """
    url = (redis_url or environ.get(ENV_REDIS_URL, "")).strip()
    if not url:
        raise ConfigurationError(f"no Redis URL: pass one or set {ENV_REDIS_URL}")
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigurationError("the Redis URL must start with redis://, rediss:// or unix://")
    return url
