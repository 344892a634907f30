"""Secrets out of every string that leaves the library.

The instance token travels in the URL path and the Client-Token in a header; the
server even echoes a refused Client-Token in its error text. Every message, log
record, ``repr`` and excerpt the SDK builds passes through a `Redactor`
first.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

import attrs

__all__ = ["MASK", "Redactor", "redact_url"]

MASK = "***"

# Whatever sits after /token/ in a URL path is an instance token, configured or not.
_TOKEN_IN_PATH = re.compile(r"(/token/)[^/?#\s]+", re.IGNORECASE)


def _forms(secret: str) -> set[str]:
    """The ways a secret can appear in text: as is, URL-encoded, and escaped inside a JSON
    string (``\\/`` for ``/`` too, as PHP's ``json_encode`` writes it)."""
    escaped = json.dumps(secret)[1:-1]
    return {
        secret,
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
        escaped,
        escaped.replace("/", "\\/"),
        json.dumps(secret, ensure_ascii=False)[1:-1],
    }


@attrs.frozen
class Redactor:
    """Replaces configured secrets (and their URL-encoded forms) with ``***``.

    Example:
        >>> Redactor.of(["s3cret"]).redact("token s3cret refused")
        'token *** refused'
    """

    _pattern: re.Pattern[str] | None = attrs.field(repr=False)
    _secrets: tuple[str, ...] = attrs.field(default=(), repr=False)

    @classmethod
    def of(cls, secrets: Iterable[str]) -> Redactor:
        """Build a redactor for these secrets; empty strings are ignored."""
        kept = tuple(secret for secret in secrets if secret)
        forms: set[str] = set()
        for secret in kept:
            forms |= _forms(secret)
        if not forms:
            return cls(None)
        # Longest first, so a secret that contains another is masked whole.
        ordered = sorted(forms, key=lambda form: (-len(form), form))
        return cls(re.compile("|".join(re.escape(form) for form in ordered)), kept)

    def with_secrets(self, secrets: Iterable[str]) -> Redactor:
        """A redactor for these secrets as well as this one's."""
        return Redactor.of((*self._secrets, *secrets))

    def __repr__(self) -> str:
        return "Redactor(<secrets hidden>)"

    def redact(self, text: str) -> str:
        """Return ``text`` with every secret, and any token in a URL path, masked."""
        if self._pattern is not None:
            text = self._pattern.sub(MASK, text)
        return _TOKEN_IN_PATH.sub(rf"\g<1>{MASK}", text)

    def excerpt(self, text: str, limit: int = 200) -> str:
        """A short, single-line, redacted start of ``text`` (for error bodies)."""
        # Redact before cutting, so a secret split by the cut cannot survive in part.
        flat = " ".join(self.redact(text).split())
        return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def redact_url(url: object) -> str:
    """``url`` as text with the instance token in its path masked: for tracing that records
    URLs. ``AioHttpClientInstrumentor().instrument(url_filter=pz.redact_url)`` keeps the
    token out of OpenTelemetry's spans (docs/service.md).

    Example:
        >>> redact_url("https://api.example/instances/ID/token/S3CRET/mobile/registration-available")
        'https://api.example/instances/ID/token/***/mobile/registration-available'
    """
    return _TOKEN_IN_PATH.sub(rf"\g<1>{MASK}", str(url))
