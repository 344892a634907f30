"""The redactor: secrets never survive, in any form."""

from __future__ import annotations

from urllib.parse import quote, quote_plus

import pytest
from helpers import fuzz
from hypothesis import given
from hypothesis import strategies as st

from plugz_async._redact import Redactor

SECRET = "tok/SECRET+instance=42"


def test_plain_and_url_encoded_forms_are_masked() -> None:
    r = Redactor.of([SECRET, "other"])
    for form in (SECRET, quote(SECRET, safe=""), quote(SECRET), quote_plus(SECRET)):
        assert r.redact(f"a {form} b") == "a *** b"
    assert r.redact("other and other") == "*** and ***"


def test_any_token_in_a_url_path_is_masked_even_unconfigured() -> None:
    r = Redactor.of([])
    url = "https://api.plugzapi.com.br/instances/ID/token/unknown-tok/mobile/x?y=1"
    assert r.redact(url) == "https://api.plugzapi.com.br/instances/ID/token/***/mobile/x?y=1"


def test_a_secret_inside_a_longer_one_is_masked_whole() -> None:
    r = Redactor.of(["abc123", "abc123xyz789"])
    assert r.redact("[abc123xyz789]") == "[***]"


def test_empty_secrets_are_ignored_and_repr_hides_them() -> None:
    r = Redactor.of(["", SECRET])
    assert r.redact("nothing here") == "nothing here"
    assert SECRET not in repr(r) and "SECRET" not in repr(r)


def test_excerpt_is_short_single_line_and_redacted_before_cut() -> None:
    r = Redactor.of([SECRET])
    text = "<html>\n  <body>" + "x" * 190 + SECRET + "</body></html>"
    excerpt = r.excerpt(text, limit=210)
    assert "\n" not in excerpt and len(excerpt) <= 210
    assert "SECRET" not in excerpt and "tok/" not in excerpt


SECRETS = st.text(
    alphabet=st.characters(categories=["Lu", "Ll", "Nd"]) | st.sampled_from("-_.~+/=%:@"),
    min_size=6,
    max_size=40,
)


@pytest.mark.fuzz
@fuzz(400)
@given(st.lists(SECRETS, min_size=1, max_size=3), st.text(max_size=60), st.text(max_size=60))
def test_no_secret_survives_in_any_form(secrets: list[str], before: str, after: str) -> None:
    r = Redactor.of(secrets)
    for secret in secrets:
        for form in (secret, quote(secret, safe=""), quote_plus(secret)):
            out = r.redact(before + form + after)
            for s in secrets:
                assert s not in out
                assert quote(s, safe="") not in out
