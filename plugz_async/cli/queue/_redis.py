"""What every command of the durable queue shares: its options, the ``queue`` extra,
Redis, and its errors.

``--redis-url`` and ``--queue`` (`redis_options`), ``--prefer`` and ``--allow-wa-old``
(`planning_options`); the Redis URL as it may be shown, never with its password
(`mask_redis_url`, `redis_target`); a PING with a timeout before anything else (`ping`),
and Redis errors as one line with their exit code (`redis_errors`); a number of the
command line (`number_of`) and a registration the queue refuses (`registration_errors`)
the same way in every command. ``plugz_async.queue`` (and saq, redis-py, limits) is
imported only when a command runs (`require_queue_extra`), so ``--help`` works without
the ``queue`` extra.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import attrs

from plugz_async._errors import (
    InvalidArgument,
    MissingDependencyError,
    RegistrationStateError,
    UnknownRegistrationError,
)
from plugz_async._models import Channel
from plugz_async._phone import PhoneNumber
from plugz_async.cli._app import (
    EXIT_INCOMPLETE,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    PROG,
    App,
    CommandFailed,
    channel_list,
)

if TYPE_CHECKING:
    from plugz_async.queue import RegistrationQueue

__all__ = [
    "DEFAULT_QUEUE",
    "ENV_REDIS_URL",
    "RedisTarget",
    "mask_redis_url",
    "number_of",
    "open_queue",
    "ping",
    "planning_options",
    "redis_errors",
    "redis_options",
    "redis_target",
    "registration_errors",
    "require_queue_extra",
]

ENV_REDIS_URL = "PLUGZ_REDIS_URL"
DEFAULT_QUEUE = "plugz"

# -- options ----------------------------------------------------------------------------------


def redis_options(parser: argparse.ArgumentParser) -> None:
    """``--redis-url`` and ``--queue``: where the queue lives."""
    group = parser.add_argument_group(
        "the queue", "Where the queue lives. A password in the URL is never printed."
    )
    group.add_argument(
        "--redis-url",
        metavar="URL",
        help=f"redis://, rediss:// or unix:// (default: {ENV_REDIS_URL}; prefer the variable: "
        "flags show in ps)",
    )
    group.add_argument(
        "--queue",
        dest="queue_name",
        default=DEFAULT_QUEUE,
        metavar="NAME",
        help=f"the queue's name: producers and workers of one queue share it "
        f"(default: {DEFAULT_QUEUE})",
    )


def planning_options(parser: argparse.ArgumentParser) -> None:
    """``--prefer`` and ``--allow-wa-old`` (producers plan the first channel of a
    registration, workers the next ones: give both the same)."""
    group = parser.add_argument_group("planning")
    group.add_argument(
        "--prefer",
        type=channel_list,
        default=(Channel.SMS, Channel.VOICE),
        metavar="LIST",
        help="channels in order of preference (default: sms,voice); give workers and "
        "producers the same",
    )
    group.add_argument(
        "--allow-wa-old",
        action="store_true",
        help="also plan the in-app pop-up (needs the phone that holds the number, in hand)",
    )


# -- the extra, the Redis URL, Redis errors ---------------------------------------------------


def require_queue_extra() -> None:
    """Import ``plugz_async.queue`` (it checks saq, redis-py and limits at once); without
    the ``queue`` extra, the one line that says what to install (exit 2)."""
    try:
        import plugz_async.queue  # noqa: F401
    except MissingDependencyError as error:
        raise CommandFailed(str(error), EXIT_USAGE) from None


def mask_redis_url(url: str) -> tuple[str, list[str]]:
    """The URL as it may be shown (its password, in the authority or in a ``password``
    query parameter, as ``***``), and the secrets it holds (as written, and decoded)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "the Redis URL", [url]
    secrets: list[str] = []
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, colon, password = userinfo.partition(":")
        if colon:
            secrets += [password, unquote(password)]
            userinfo = f"{user}:***"
        elif user:  # redis://secret@host: redis-py reads it as a user name; mask it anyway
            secrets += [user, unquote(user)]
            userinfo = "***"
        netloc = f"{userinfo}@{hostport}"
    query = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name.lower() == "password" and value:
            secrets.append(value)
            value = "***"
        query.append((name, value))
    shown = f"{parts.scheme}://{netloc}{parts.path}"
    if query:
        shown += "?" + urlencode(query, safe="*/")
    return shown, [secret for secret in secrets if secret]


@attrs.frozen
class RedisTarget:
    """The Redis of a command.

    Attributes:
        url: the URL (a secret: it may hold a password).
        shown: the URL without its password, for messages.
        source: where it came from: ``--redis-url`` or ``PLUGZ_REDIS_URL``.
        queue: the queue's name.
    """

    url: str = attrs.field(repr=False)
    shown: str
    source: str
    queue: str

    @property
    def queue_flag(self) -> str:
        """`` --queue NAME`` to repeat in a hint, or nothing for the default queue."""
        return "" if self.queue == DEFAULT_QUEUE else f" --queue {shlex.quote(self.queue)}"

    def command(self, *words: str) -> str:
        """The command line of a queue command on this queue, to suggest in a hint:
        ``plugz-async queue status +5511900000001 --queue NAME``."""
        return shlex.join((PROG, *words)) + self.queue_flag


def redis_target(app: App) -> RedisTarget:
    """The Redis URL the options (or ``PLUGZ_REDIS_URL``) give; its password joins the
    secrets ``app`` masks.

    Raises:
        CommandFailed: no URL, or not a Redis URL (exit 2; the URL is never quoted).
    """
    given = (app.args.redis_url or "").strip()
    source = "--redis-url" if given else ENV_REDIS_URL
    url = given or os.environ.get(ENV_REDIS_URL, "").strip()
    if not url:
        raise CommandFailed(f"no Redis URL: give --redis-url or set {ENV_REDIS_URL}", EXIT_USAGE)
    shown, secrets = mask_redis_url(url)
    app.add_secrets(*secrets)
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise CommandFailed(f"{source} must be a redis://, rediss:// or unix:// URL", EXIT_USAGE)
    queue_name = app.args.queue_name.strip()
    if not queue_name or any(c.isspace() for c in queue_name):
        raise CommandFailed("--queue must be a name without spaces", EXIT_USAGE)
    return RedisTarget(url, shown, source, queue_name)


@contextlib.contextmanager
def redis_errors(target: RedisTarget) -> Iterator[None]:
    """Redis errors as one line: unreachable (exit 4), credentials refused (exit 2)."""
    require_queue_extra()
    from redis import exceptions

    try:
        yield
    except exceptions.AuthenticationError as error:
        raise CommandFailed(
            f"Redis at {target.shown} refused the credentials ({_said(error)}); check "
            f"{target.source}",
            EXIT_USAGE,
        ) from None
    except exceptions.ResponseError as error:
        if str(error).upper().startswith(("NOAUTH", "WRONGPASS", "NOPERM")):
            raise CommandFailed(
                f"Redis at {target.shown} refused the request ({_said(error)}); check the "
                f"user and password of {target.source}",
                EXIT_USAGE,
            ) from None
        raise CommandFailed(
            f"Redis at {target.shown} answered with an error: {_said(error)}", EXIT_UNREACHABLE
        ) from None
    except (exceptions.ConnectionError, exceptions.TimeoutError, OSError) as error:
        raise CommandFailed(
            f"cannot reach Redis at {target.shown} ({_said(error)}); check {target.source} "
            "and that Redis runs",
            EXIT_UNREACHABLE,
        ) from None
    except exceptions.RedisError as error:
        raise CommandFailed(
            f"Redis at {target.shown} failed: {_said(error)}", EXIT_UNREACHABLE
        ) from None


def number_of(app: App, text: str) -> PhoneNumber:
    """A number of the command line, read as the command reads numbers.

    Raises:
        CommandFailed: it cannot be a number (exit 2: nothing written, Redis not asked).
    """
    try:
        return app.parse_number(text)
    except InvalidArgument as error:
        raise CommandFailed(str(error), EXIT_USAGE) from None


@contextlib.contextmanager
def registration_errors(target: RedisTarget, *, see: str | None = None) -> Iterator[None]:
    """A registration the queue does not have (exit 2), or that does not wait for what
    was asked (exit 7; ``see``: the command that shows where it stands)."""
    try:
        yield
    except UnknownRegistrationError as error:
        raise CommandFailed(f"{error} (queue {target.queue!r})", EXIT_USAGE) from None
    except RegistrationStateError as error:
        said = str(error) if see is None else f"{error}; see: {see}"
        raise CommandFailed(said, EXIT_INCOMPLETE) from None


def _said(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


async def ping(target: RedisTarget, timeout: float = 5.0) -> None:
    """Ask Redis for a PONG, within ``timeout`` seconds (a host that drops packets would
    otherwise keep a command waiting for minutes). Use inside `redis_errors`.

    Raises:
        CommandFailed: redis-py cannot read the URL (exit 2).
    """
    require_queue_extra()
    import redis.asyncio as aioredis

    try:
        client = aioredis.from_url(
            target.url, socket_connect_timeout=timeout, socket_timeout=timeout
        )
    except ValueError as error:  # redis-py's own URL checks
        raise CommandFailed(
            f"{target.source} is not a Redis URL redis-py can read: {error}", EXIT_USAGE
        ) from None
    try:
        await cast("Awaitable[bool]", client.ping())
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def open_queue(
    app: App, target: RedisTarget, **options: Any
) -> AsyncIterator[RegistrationQueue]:
    """The `RegistrationQueue` of ``target``, checked with a PING first."""
    require_queue_extra()
    from plugz_async.queue import RegistrationQueue

    await ping(target)
    options.setdefault("default_region", app.region)
    async with RegistrationQueue(
        target.url, queue=target.queue, environ={}, clock=app.clock, **options
    ) as opened:
        yield opened
