"""One line, two forms: Brazil's ninth digit, read from the numbering plan's metadata."""

from __future__ import annotations

import phonenumbers
import pytest
from helpers import fuzz
from hypothesis import given
from hypothesis import strategies as st

import plugz_async as pz

# Brazil's area codes with mobiles (the numbering plan's two-digit codes, 11 to 99).
AREAS = [
    area
    for area in range(11, 100)
    if phonenumbers.is_valid_number(phonenumbers.parse(f"+55{area}991234567"))
]


def test_the_plan_has_the_area_codes_anatel_lists() -> None:
    # 67 area codes (DDDs) hold mobiles; a few well-known ones are among them.
    assert len(AREAS) == 67
    assert {11, 21, 44, 61, 71, 91} <= set(AREAS)
    assert 20 not in AREAS and 23 not in AREAS


@pytest.mark.parametrize("area", AREAS)
@pytest.mark.parametrize("first", "6789")
def test_an_old_form_mobile_is_the_same_line_as_its_ninth_digit_form(area: int, first: str) -> None:
    old = pz.PhoneNumber.parse(f"+55 {area} {first}123-4567")
    new = pz.PhoneNumber.parse(f"+55 {area} 9{first}123-4567")
    assert old.is_old_form and not new.is_old_form
    assert old.line == new.line == new
    assert old != new  # the digits differ: what is sent stays what was written
    assert old.same_line(new) and new.same_line(old)


@pytest.mark.parametrize("area", AREAS)
@pytest.mark.parametrize("first", "2345")
def test_a_landline_never_took_the_ninth_digit(area: int, first: str) -> None:
    landline = pz.PhoneNumber.parse(f"+55 {area} {first}123-4567")
    assert not landline.is_old_form
    assert landline.line is landline
    assert landline.old_form_note is None
    assert not landline.same_line(f"+55 {area} 9{first}123-4567")


@pytest.mark.parametrize("first", "01")
def test_eight_digits_that_were_never_a_mobile_are_left_as_they_are(first: str) -> None:
    number = pz.PhoneNumber.parse(f"+55 11 {first}999-8888")
    assert number.line is number and not number.is_old_form


def test_an_area_code_with_no_mobiles_is_left_as_it_is() -> None:
    number = pz.PhoneNumber(ddi="55", phone="2091234567")
    assert number.line is number


def test_the_note_names_both_forms() -> None:
    old = pz.PhoneNumber.parse("55 44 9999-9999", default_region="BR")
    assert old.old_form_note == (
        "+554499999999 is the old 8-digit form of +5544999999999 (Brazil's ninth digit):"
        " the same line"
    )
    assert old.line.old_form_note is None


def test_other_countries_have_one_form() -> None:
    # Ten digits, starting with 9, in another country: no ninth digit there.
    for text in ("+1 202 555 0123", "+44 7911 123456", "+351 912 345 678", "+91 98765 43210"):
        number = pz.PhoneNumber.parse(text)
        assert number.line is number and not number.is_old_form


def test_same_line_reads_text_and_refuses_what_is_no_number() -> None:
    number = pz.PhoneNumber.parse("+5544999999999")
    assert number.same_line("+55 (44) 9999-9999")
    with pytest.raises(pz.InvalidPhoneNumber):
        number.same_line("not a number")


@fuzz(300)
@given(area=st.sampled_from(AREAS), rest=st.integers(min_value=0, max_value=99_999_999))
def test_a_line_is_its_own_line(area: int, rest: int) -> None:
    for phone in (f"{area}{rest:08d}", f"{area}9{rest:08d}"):
        try:
            number = pz.PhoneNumber(ddi="55", phone=phone)
        except pz.InvalidPhoneNumber:
            continue
        line = number.line
        assert line.line == line
        assert not line.is_old_form
        assert number.same_line(line)
        # Only an old form has another line, and only by one 9 after the area code.
        if line != number:
            assert number.is_old_form
            assert line.phone == number.phone[:2] + "9" + number.phone[2:]


@pytest.mark.parametrize("area", AREAS)
def test_a_line_has_its_forms(area: int) -> None:
    old = pz.PhoneNumber.parse(f"+55 {area} 8765-4321")
    assert old.forms == old.line.forms == (old.line, old)
    landline = pz.PhoneNumber.parse(f"+55 {area} 3765-4321")
    assert landline.forms == (landline,)
    # A 9-digit mobile whose 8 digits would be a landline has no old form.
    mobile = pz.PhoneNumber.parse(f"+55 {area} 93765-4321")
    assert mobile.forms == (mobile,)


def test_a_number_of_another_country_has_one_form() -> None:
    number = pz.PhoneNumber.parse("+44 7911 123456")
    assert number.forms == (number,)


@pytest.mark.parametrize("text", ["5544 9999-9999", "554499999999", "0055 44 9999 9999"])
def test_an_old_form_with_its_country_code_and_no_plus_is_read_as_international(text: str) -> None:
    # Not a valid number by today's plan, but the old form of one: no region is needed.
    assert pz.PhoneNumber.parse(text).line.e164 == "+5544999999999"


def test_eight_digits_that_are_no_old_form_still_need_a_region() -> None:
    with pytest.raises(pz.MissingCountryCode):
        pz.PhoneNumber.parse("55 20 9999-9999")
