"""Phone numbers as the API wants them: a country code (``ddi``) and the rest (``phone``).

``PhoneNumber.parse`` accepts E.164 (``+5544999999999``), the common human forms
(``+55 (44) 99999-9999``, ``55 44 9999-9999``) and bare digits that start with the
country code (``5544999999999``). The country code is split with the
``phonenumbers`` metadata, so it is right for every country (``1``, ``44``, ``598``).

Input with no ``+`` is read in ``default_region`` when one is given (``"BR"``: ``44
99999-9999`` is ``+55 44 99999-9999``; a number that starts with the region's own country
code, ``55 44 99999-9999``, is read the same). With no region, it is read as international
(country code first, after an optional ``00``) only if that makes a valid number, not
merely a possible one: ``44 99999-9999`` would be a UK number that does not exist, and
raises `MissingCountryCode`, which says to give a region.

Decimal digits of any script (full-width, Arabic-Indic, Devanagari...) are read as
the digits they stand for; letters (``1-800-FLOWERS``), extensions and anything
that is not a possible number for its country raise `InvalidPhoneNumber`.

One line, two forms: Brazil gave every mobile a ninth digit (a ``9`` after the area
code, completed in 2016), and the old 8-digit form still reaches the same line
(``+55 44 9999-9999`` is ``+55 44 99999-9999``). WhatsApp keeps accounts created under
the old form, and the API's own example sends it, so a number is sent as written; but
`PhoneNumber.line` is the one identity of the line, which everything that must not
register a line twice compares. Which form is old is read from the numbering plan's
metadata (``phonenumbers``), not from a digit rule of our own.
"""

from __future__ import annotations

import functools
import re
import unicodedata

import attrs
import phonenumbers

from ._errors import InvalidArgument, InvalidPhoneNumber, MissingCountryCode

__all__ = ["PhoneNumber", "check_region"]

# Longer input is refused before any parsing: no phone number needs this much text.
MAX_INPUT_LENGTH = 64

_DIGITS = re.compile(r"\+?[0-9]{4,17}")
# Separators the fast path drops; anything else goes to the full parser.
_FAST_SEPARATORS = str.maketrans("", "", " -().")
# What a written phone number may contain besides digits.
_SEPARATORS = frozenset(" +-.()/\u00a0\u2010\u2011\u2012\u2013\u2014\u2212\uff0b\uff0d")
_COUNTRY_CODES = phonenumbers.COUNTRY_CODE_TO_REGION_CODE

_REASONS = {
    phonenumbers.ValidationResult.INVALID_COUNTRY_CODE: "unknown country code",
    phonenumbers.ValidationResult.TOO_SHORT: "too short for its country",
    phonenumbers.ValidationResult.TOO_LONG: "too long for its country",
    phonenumbers.ValidationResult.INVALID_LENGTH: "not a possible length for its country",
}


def check_region(region: str | None) -> str | None:
    """``region`` as phonenumbers knows it (``"br"`` is ``"BR"``); ``None`` stays ``None``.

    Raises:
        InvalidArgument: a region phonenumbers does not know.
    """
    if region is None:
        return None
    if not isinstance(region, str) or region.strip().upper() not in _REGIONS:
        raise InvalidArgument(
            f"unknown region {region!r}: give an ISO 3166 code such as 'BR', 'PT' or 'US'"
        )
    return region.strip().upper()


_REGIONS = phonenumbers.SUPPORTED_REGIONS


def _shown(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:39] + "…")


def _invalid(text: str, why: str) -> InvalidPhoneNumber:
    return InvalidPhoneNumber(
        f"{_shown(text)} is not a possible phone number: {why}", input=text[:MAX_INPUT_LENGTH]
    )


def _possible(ddi: str, phone: str) -> str | None:
    """``None`` when ``ddi`` + ``phone`` is a possible number, else the reason it is not."""
    if not ddi.isascii() or not ddi.isdigit() or ddi.startswith("0") or len(ddi) > 3:
        return "the country code (ddi) must be 1 to 3 digits, not starting with 0"
    if not phone.isascii() or not phone.isdigit():
        return "the phone part must be digits only"
    if int(ddi) not in _COUNTRY_CODES:
        return "unknown country code"
    if phone.startswith("0"):
        # Leading zeros are kept only where a country's numbers have them (Italy);
        # let the full parser decide, and refuse what it would read differently.
        try:
            number = phonenumbers.parse(f"+{ddi}{phone}")
        except phonenumbers.NumberParseException:
            return "not a possible number"
        if phonenumbers.national_significant_number(number) != phone:
            return "not a possible number for its country"
        return _verdict(phonenumbers.is_possible_number_with_reason(number))
    return _possible_length(int(ddi), len(phone))


@functools.lru_cache(maxsize=2048)
def _possible_length(country_code: int, length: int) -> str | None:
    # Possibility is a matter of the country and the length alone (phonenumbers'
    # metadata lists the possible lengths), so a bulk run asks phonenumbers once.
    number = phonenumbers.PhoneNumber(country_code=country_code, national_number=10 ** (length - 1))
    return _verdict(phonenumbers.is_possible_number_with_reason(number))


def _verdict(result: int) -> str | None:
    if result in (
        phonenumbers.ValidationResult.IS_POSSIBLE,
        phonenumbers.ValidationResult.IS_POSSIBLE_LOCAL_ONLY,
    ):
        return None
    return _REASONS.get(result, "not a possible number")


#: Brazil's country code: the one country whose mobiles were written two ways.
_BRAZIL = "55"
#: What an old-form Brazilian mobile starts with after its area code (2 to 5: landlines,
#: which never took the ninth digit).
_OLD_MOBILE_FIRST = frozenset("6789")


@functools.lru_cache(maxsize=4096)
def _ninth_digit(phone: str) -> str | None:
    """The 11-digit form of a Brazilian national number ``phone`` written in the old
    8-digit mobile form, or ``None`` when it is not one.

    It is one when the numbering plan says so: as written it is no valid fixed line,
    and with a ``9`` after the area code it is a valid mobile.
    """
    if len(phone) != 10 or phone[2] not in _OLD_MOBILE_FIRST:
        return None
    written = phonenumbers.PhoneNumber(country_code=55, national_number=int(phone))
    if phonenumbers.number_type(written) in (
        phonenumbers.PhoneNumberType.FIXED_LINE,
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    ):
        return None
    ninth = f"{phone[:2]}9{phone[2:]}"
    current = phonenumbers.PhoneNumber(country_code=55, national_number=int(ninth))
    if phonenumbers.number_type(current) is not phonenumbers.PhoneNumberType.MOBILE:
        return None
    return ninth


def _digits_only(instance: PhoneNumber, attribute: object, value: str) -> None:
    why = _possible(instance.ddi, instance.phone)
    if why is not None:
        raise _invalid(f"+{instance.ddi} {instance.phone}", why)


def _drop_idd(text: str) -> str:
    """``0044 …`` is how much of the world dials ``+44 …``."""
    return text[2:] if text.startswith("00") else text


def _normalise(text: str) -> str:
    """ASCII digits for decimal digits of any script; refuse anything but separators."""
    out = []
    for char in text:
        if "0" <= char <= "9" or char in _SEPARATORS:
            out.append(char)
        elif char.isdecimal():
            out.append(str(unicodedata.decimal(char)))
        else:
            raise _invalid(text, f"unexpected character {char!r}")
    return "".join(out).replace("\uff0b", "+")


@attrs.frozen(order=True)
class PhoneNumber:
    """A phone number split the way the API wants it.

    Construct it from its parts, or with `parse` from text. Either way an
    impossible number raises `InvalidPhoneNumber` at once.

    Attributes:
        ddi: the country calling code, digits only (``"55"``).
        phone: the national significant number, digits only (``"44999999999"``).

    Example:
        >>> PhoneNumber.parse("+55 (44) 99999-9999")
        PhoneNumber(ddi='55', phone='44999999999')
        >>> str(PhoneNumber(ddi="1", phone="2025550123"))
        '+12025550123'
    """

    ddi: str
    phone: str = attrs.field(validator=_digits_only)

    @classmethod
    def parse(cls, text: str | PhoneNumber, *, default_region: str | None = None) -> PhoneNumber:
        """Read a phone number from text.

        Args:
            text: E.164, a common human form, or digits that start with the country
                code. A ``PhoneNumber`` is returned as it is.
            default_region: an ISO region (``"BR"``) to read numbers written without
                ``+`` in; without it, such input must start with a country code and
                make a valid number.

        Raises:
            MissingCountryCode: no region, no ``+``, and read as international the
                text is no valid number (most likely a national number).
            InvalidPhoneNumber: the text is not a possible phone number.
        """
        if isinstance(text, PhoneNumber):
            return text
        if not isinstance(text, str):
            raise InvalidPhoneNumber(
                f"a phone number must be text, not {type(text).__name__}", input=""
            )
        if len(text) > MAX_INPUT_LENGTH:
            raise _invalid(text, f"longer than {MAX_INPUT_LENGTH} characters")
        stripped = text.strip()
        # The fast path: ASCII digits written with the usual separators.
        compact = stripped.translate(_FAST_SEPARATORS)
        if _DIGITS.fullmatch(compact) and (default_region is None or compact.startswith("+")):
            if compact.startswith("+"):
                return cls._from_digits(text, compact[1:])
            if compact.startswith("00"):  # an international prefix: a country code follows
                return cls._from_digits(text, compact[2:])
            return cls._international(text, cls._from_digits(text, compact))
        normalised = _normalise(stripped)
        number = cls._from_text(text, normalised, default_region)
        if default_region is None and not normalised.startswith(("+", "00")):
            return cls._international(text, number)
        return number

    @classmethod
    def _international(cls, text: str, number: PhoneNumber) -> PhoneNumber:
        """``number``, read from digits with no ``+`` and no region, if it is a valid
        number (not merely a possible one) or the old form of one; else
        `MissingCountryCode`."""
        valid = phonenumbers.is_valid_number(phonenumbers.parse(number.e164))
        if not valid and not number.is_old_form:
            raise MissingCountryCode(
                f"{_shown(text)} has no '+' and no country code that makes a valid number "
                f"(read as {number.e164}, it is none): give a default region to read it in "
                "(default_region='BR', PLUGZ_DEFAULT_REGION, --region BR), or write it "
                "with '+' and the country code",
                input=text[:MAX_INPUT_LENGTH],
                read_as=number.e164,
            )
        return number

    @classmethod
    def _from_digits(cls, text: str, digits: str) -> PhoneNumber:
        # The fast path: country codes are prefix-free, so the first 1 to 3 digits
        # that name a known code are the code.
        for size in (1, 2, 3):
            if int(digits[:size]) in _COUNTRY_CODES:
                ddi, phone = digits[:size], digits[size:]
                if phone.startswith("0"):
                    # A trunk 0 after the country code (+44 020...) or a
                    # country that keeps it (Italy): the full parser knows which.
                    return cls._from_text(text, "+" + digits, None)
                return cls._checked(text, ddi, phone)
        raise _invalid(text, "unknown country code")

    @classmethod
    def _from_text(cls, text: str, normalised: str, default_region: str | None) -> PhoneNumber:
        if not any(c.isdigit() for c in normalised):
            raise _invalid(text, "no digits")
        region = None
        if normalised.startswith("+"):
            pass
        elif normalised.startswith("00"):  # the international prefix, in any region
            normalised = "+" + normalised[2:]
        elif default_region is not None:
            region = default_region.upper()
        else:
            normalised = "+" + _drop_idd(normalised)
        try:
            parsed = phonenumbers.parse(normalised, region)
        except phonenumbers.NumberParseException as exc:
            why = str(exc).split(") ", 1)[-1].rstrip(".")
            raise _invalid(text, why[:1].lower() + why[1:]) from None
        if parsed.extension:
            raise _invalid(text, "extensions are not supported")
        return cls._from_parsed(text, parsed)

    @classmethod
    def _from_parsed(cls, text: str, parsed: phonenumbers.PhoneNumber) -> PhoneNumber:
        ddi = str(parsed.country_code)
        return cls._checked(text, ddi, phonenumbers.national_significant_number(parsed))

    @classmethod
    def _checked(cls, text: str, ddi: str, phone: str) -> PhoneNumber:
        """Check once (the error names ``text``), then build without checking again."""
        why = _possible(ddi, phone)
        if why is not None:
            raise _invalid(text, why)
        number = object.__new__(cls)
        object.__setattr__(number, "ddi", ddi)
        object.__setattr__(number, "phone", phone)
        return number

    @property
    def line(self) -> PhoneNumber:
        """The line this number reaches, in the form the numbering plan has now.

        The same as the number, except for a Brazilian mobile written in its old 8-digit
        form, whose line is the form with the ninth digit. Two numbers are one
        registration when their lines are equal.

        Example:
            >>> PhoneNumber.parse("+55 44 9999-9999").line
            PhoneNumber(ddi='55', phone='44999999999')
            >>> PhoneNumber.parse("+55 44 3222-2222").line  # a landline: one form only
            PhoneNumber(ddi='55', phone='4432222222')
        """
        if self.ddi != _BRAZIL or len(self.phone) != 10:  # the test of most, uncached
            return self
        ninth = _ninth_digit(self.phone)
        return self if ninth is None else PhoneNumber._checked(self.e164, self.ddi, ninth)

    @property
    def forms(self) -> tuple[PhoneNumber, ...]:
        """Every way the line is written: `line` first, then its old form, if it has one.

        Example:
            >>> print(*(n.e164 for n in PhoneNumber.parse("+55 44 9999-9999").forms))
            +5544999999999 +554499999999
        """
        line = self.line
        if line.ddi != _BRAZIL or len(line.phone) != 11 or line.phone[2] != "9":
            return (line,)
        old = line.phone[:2] + line.phone[3:]
        if _ninth_digit(old) != line.phone:
            return (line,)
        return (line, PhoneNumber._checked(line.e164, line.ddi, old))

    @property
    def is_old_form(self) -> bool:
        """Whether this is the old form of another number (`line` says which)."""
        return (
            self.ddi == _BRAZIL and len(self.phone) == 10 and _ninth_digit(self.phone) is not None
        )

    def same_line(self, other: str | PhoneNumber) -> bool:
        """Whether ``other`` reaches the same line (``other`` text is read as `parse`
        reads it, with no region).

        Example:
            >>> PhoneNumber.parse("+55 44 9999-9999").same_line("+55 44 99999-9999")
            True
        """
        return self.line == PhoneNumber.parse(other).line

    @property
    def old_form_note(self) -> str | None:
        """A note that says this is the old form of its line (``None`` when it is not)."""
        if not self.is_old_form:
            return None
        return (
            f"{self.e164} is the old 8-digit form of {self.line.e164} (Brazil's ninth "
            "digit): the same line"
        )

    @property
    def e164(self) -> str:
        """The number in E.164 form, e.g. ``"+5544999999999"``."""
        return f"+{self.ddi}{self.phone}"

    def to_wire(self) -> dict[str, str]:
        """The request body fields the API documents: ``{"ddi": ..., "phone": ...}``."""
        return {"ddi": self.ddi, "phone": self.phone}

    def wire_json(self) -> bytes:
        """`to_wire` as JSON bytes; both parts are ASCII digits, so nothing needs
        escaping and no encoder is needed."""
        return b'{"ddi":"%s","phone":"%s"}' % (self.ddi.encode(), self.phone.encode())

    def __str__(self) -> str:
        return self.e164
