"""PhoneNumber: parsing every common form, refusing what cannot be a number."""

from __future__ import annotations

import phonenumbers
import pytest
from helpers import fuzz
from hypothesis import given
from hypothesis import strategies as st

import plugz_async as pz
from plugz_async._phone import MAX_INPUT_LENGTH


@pytest.mark.parametrize(
    ("text", "ddi", "phone"),
    [
        ("+5544999999999", "55", "44999999999"),  # E.164
        ("+55 (44) 99999-9999", "55", "44999999999"),
        ("5544999999999", "55", "44999999999"),  # digits, country code first
        ("+55 44 9999-9999", "55", "4499999999"),  # the API's own 10-digit example
        ("  +55 44 99999 9999  ", "55", "44999999999"),
        ("+1 (202) 555-0123", "1", "2025550123"),  # one-digit country code
        ("12025550123", "1", "2025550123"),
        ("+44 20 7946 0000", "44", "2079460000"),  # two digits
        ("0044 20 7946 0000", "44", "2079460000"),  # the 00 international prefix
        ("00442079460000", "44", "2079460000"),
        ("+598 94 123 456", "598", "94123456"),  # three digits
        ("+39 06 1234 5678", "39", "0612345678"),  # Italy keeps its leading zero
        ("390612345678", "39", "0612345678"),
        ("+55.44.99999.9999", "55", "44999999999"),
        ("+44 020 7946 0000", "44", "2079460000"),  # a trunk 0 written after the code
        ("+4402079460000", "44", "2079460000"),  # the same through the fast path
        ("+55/44/99999-9999", "55", "44999999999"),
    ],
)
def test_parse_common_forms(text: str, ddi: str, phone: str) -> None:
    number = pz.PhoneNumber.parse(text)
    assert (number.ddi, number.phone) == (ddi, phone)
    assert number.to_wire() == {"ddi": ddi, "phone": phone}
    assert str(number) == number.e164 == f"+{ddi}{phone}"


def test_parse_unicode_digits_are_read_as_digits() -> None:
    full_width = (
        "\uff0b\uff15\uff15 \uff14\uff14 \uff19\uff19\uff19\uff19\uff19-\uff19\uff19\uff19\uff19"
    )
    arabic_indic = "+\u0665\u0665\u0664\u0664\u0669\u0669\u0669\u0669\u0669\u0669\u0669\u0669\u0669"
    assert pz.PhoneNumber.parse(full_width) == pz.PhoneNumber(ddi="55", phone="44999999999")
    assert pz.PhoneNumber.parse(arabic_indic) == pz.PhoneNumber(ddi="55", phone="44999999999")


def test_parse_national_form_with_default_region() -> None:
    assert pz.PhoneNumber.parse("(44) 99999-9999", default_region="BR").e164 == "+5544999999999"
    assert pz.PhoneNumber.parse("44999999999", default_region="br").e164 == "+5544999999999"
    # An explicit + wins over the default region.
    assert pz.PhoneNumber.parse("+1 202 555 0123", default_region="BR").ddi == "1"


@pytest.mark.parametrize(
    ("text", "read_as"),
    [
        ("44 99999-9999", "+44999999999"),  # a Brazilian mobile, read as a UK number
        ("11 90000-0001", "+11900000001"),  # São Paulo, read as a North American one
        ("(44) 99999-9999", "+44999999999"),  # through the full parser
        ("55 20 9999-9999", "+552099999999"),  # possible, but no valid Brazilian number
    ],
)
def test_a_number_without_plus_that_reads_as_no_valid_number_needs_a_region(
    text: str, read_as: str
) -> None:
    with pytest.raises(pz.MissingCountryCode) as caught:
        pz.PhoneNumber.parse(text)
    error = caught.value
    assert isinstance(error, pz.InvalidPhoneNumber)  # caught where bad numbers are
    assert (error.input, error.read_as) == (text, read_as)
    assert "default_region" in str(error) and "--region" in str(error)
    assert read_as in str(error)


@pytest.mark.parametrize(
    ("text", "e164"),
    [
        ("44 99999-9999", "+5544999999999"),
        ("11 90000-0001", "+5511900000001"),
        ("55 44 99999-9999", "+5544999999999"),  # the region's own country code, first
        ("55 44 9999-9999", "+554499999999"),
        ("044 99999-9999", "+5544999999999"),  # a trunk 0
        ("+44 20 7946 0000", "+442079460000"),  # a + wins over the region
        ("0044 20 7946 0000", "+442079460000"),  # and so does 00
    ],
)
def test_a_region_reads_numbers_without_plus_in_it(text: str, e164: str) -> None:
    assert pz.PhoneNumber.parse(text, default_region="BR").e164 == e164


def test_without_a_region_a_leading_country_code_that_makes_a_valid_number_is_read() -> None:
    # Written without + but unambiguous: valid numbers of their countries.
    assert pz.PhoneNumber.parse("5544999999999").e164 == "+5544999999999"
    assert pz.PhoneNumber.parse("44 20 7946 0000").e164 == "+442079460000"
    assert pz.PhoneNumber.parse("1 202 555 0123").e164 == "+12025550123"


def test_an_unknown_region_is_refused() -> None:
    from plugz_async._phone import check_region

    assert check_region(" br ") == "BR" and check_region(None) is None
    with pytest.raises(pz.InvalidArgument, match="unknown region 'Brazil'"):
        check_region("Brazil")


def test_parse_returns_a_phone_number_as_is() -> None:
    number = pz.PhoneNumber(ddi="55", phone="44999999999")
    assert pz.PhoneNumber.parse(number) is number


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "no digits"),
        ("   ", "no digits"),
        ("+55", "not a possible"),
        ("12", "not a possible"),
        ("+55 44 9", "too short"),
        ("+55 44 99999 99999 99999", "too long"),
        ("+999 1234 5678", "unknown country code"),
        ("99912345678", "unknown country code"),
        ("1-800-FLOWERS", "unexpected character 'F'"),
        ("+55 44 99999-9999 ext. 12", "unexpected character 'e'"),
        ("+55 44 99999-9999;12", "unexpected character ';'"),
        ("+55\x0044999999999", "unexpected character"),
        ("9" * (MAX_INPUT_LENGTH + 1), "longer than"),
        ("+00442079460000", "unknown country code"),
        ("8200", "too short"),
        ("+82 00 1234 5678", "not a possible number"),
    ],
)
def test_parse_refuses_impossible_numbers(text: str, why: str) -> None:
    with pytest.raises(pz.InvalidPhoneNumber) as info:
        pz.PhoneNumber.parse(text)
    assert why in str(info.value)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, pz.PlugzError)


def test_parse_refuses_what_is_not_text() -> None:
    with pytest.raises(pz.InvalidPhoneNumber, match="must be text, not int"):
        pz.PhoneNumber.parse(5544999999999)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("ddi", "phone"),
    [
        ("55", "12"),
        ("055", "44999999999"),
        ("5a", "44999999999"),
        ("55", "4499-9999"),
        ("999", "12345678"),
        ("", "44999999999"),
    ],
)
def test_constructor_validates_too(ddi: str, phone: str) -> None:
    with pytest.raises(pz.InvalidPhoneNumber):
        pz.PhoneNumber(ddi=ddi, phone=phone)


def test_phone_number_is_a_frozen_hashable_value() -> None:
    number = pz.PhoneNumber.parse("+55 44 99999-9999")
    assert number == pz.PhoneNumber.parse("5544999999999")
    assert len({number, pz.PhoneNumber.parse("+5544999999999")}) == 1
    with pytest.raises(AttributeError):
        number.ddi = "1"  # type: ignore[misc]


# -- properties ----------------------------------------------------------------

REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)


def _examples() -> list[phonenumbers.PhoneNumber]:
    found = []
    for region in REGIONS:
        example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
        if example is not None:
            found.append(example)
    return found


EXAMPLES = _examples()


@pytest.mark.fuzz
@fuzz(300)
@given(
    st.sampled_from(EXAMPLES),
    st.sampled_from(
        [
            phonenumbers.PhoneNumberFormat.E164,
            phonenumbers.PhoneNumberFormat.INTERNATIONAL,
        ]
    ),
)
def test_every_country_splits_its_country_code(
    example: phonenumbers.PhoneNumber, form: int
) -> None:
    text = phonenumbers.format_number(example, form)
    number = pz.PhoneNumber.parse(text)
    assert number.ddi == str(example.country_code)
    assert number.phone == phonenumbers.national_significant_number(example)
    # The fast path (bare digits) agrees with the full parser.
    assert pz.PhoneNumber.parse(text.replace(" ", "").replace("-", "").lstrip("+")) == number


@pytest.mark.fuzz
@fuzz(500)
@given(st.text(max_size=80))
def test_parse_never_raises_anything_else(text: str) -> None:
    try:
        number = pz.PhoneNumber.parse(text)
    except pz.InvalidPhoneNumber as exc:
        assert str(exc)
    else:
        assert number.ddi.isdigit() and number.phone.isdigit()
        assert number.ddi.isascii() and number.phone.isascii()
        assert pz.PhoneNumber.parse(number.e164) == number


@pytest.mark.fuzz
@fuzz(500)
@given(st.from_regex(r"\+?[0-9]{4,17}", fullmatch=True))
def test_fast_path_agrees_with_phonenumbers_on_possibility(digits: str) -> None:
    try:
        number = pz.PhoneNumber.parse(digits)
    except pz.InvalidPhoneNumber:
        return
    parsed = phonenumbers.parse(number.e164)
    assert phonenumbers.is_possible_number(parsed)
    assert str(parsed.country_code) == number.ddi


@pytest.mark.fuzz
@fuzz(200)
@given(st.sampled_from(EXAMPLES))
def test_wire_json_is_the_json_of_to_wire(example: phonenumbers.PhoneNumber) -> None:
    import json

    number = pz.PhoneNumber.parse(
        phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
    )
    assert json.loads(number.wire_json()) == number.to_wire()
