"""Who a conversation is with: customer and business addresses, normalised once at the edge.

Twilio sends ``whatsapp:+14155550123``; people type ``+1 415 555 0123``; WhatsApp users with
usernames arrive as business-scoped user ids (``US.13491208655302741918``). All become one
canonical string, and a conversation is the pair (customer, business number).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import phonenumbers

from wa_sessions.errors import InvalidPhoneNumber

_CHANNEL_PREFIX = "whatsapp:"
# Meta: two-letter country code, a period, optional ENT. (parent BSUID), up to 128 alphanumerics.
_BSUID = re.compile(r"[A-Z]{2}\.(?:ENT\.)?[A-Za-z0-9]{1,128}")
# Characters people put in phone numbers; anything else is not a phone number.
_PHONE_CHARS = re.compile(r"\+?[0-9 ()./-]{3,32}")
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")


def normalize_address(raw: str, *, default_region: str | None = None) -> str:
    """Canonical customer or business address: E.164 for phones, the BSUID as sent otherwise."""
    if not isinstance(raw, str):
        raise InvalidPhoneNumber("address must be a string")
    value = raw.strip()
    if value.lower().startswith(_CHANNEL_PREFIX):
        value = value[len(_CHANNEL_PREFIX) :].strip()
    if not value:
        raise InvalidPhoneNumber("address is empty")
    if _BSUID.fullmatch(value):
        return value
    if not _PHONE_CHARS.fullmatch(value):
        raise InvalidPhoneNumber(
            f"{_redact(value)!r} is neither an E.164 phone number nor a WhatsApp user id"
        )
    region = None if value.startswith("+") else default_region
    if region is None and not value.startswith("+"):
        raise InvalidPhoneNumber(
            f"{_redact(value)!r} has no country code; use E.164 (+<country><number>)"
        )
    try:
        parsed = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhoneNumber(f"{_redact(value)!r} is not a phone number: {exc}") from None
    canonical = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    # Numbering plans change and test numbers abound (the design document uses +1234567890),
    # so an unknown range is accepted as long as it is well-formed E.164.
    if not _E164.fullmatch(canonical):
        raise InvalidPhoneNumber(f"{_redact(value)!r} is not a possible phone number")
    return canonical


def _redact(value: str) -> str:
    """Error messages travel to logs and HTTP bodies: never echo a whole phone number."""
    # Showing 3 + 2 characters of anything shorter than 8 would reveal all or nearly all of it.
    if len(value) < 8:
        return "***"
    return value[:3] + "***" + value[-2:]


@dataclass(frozen=True, slots=True)
class Conversation:
    """The pair of addresses a session belongs to; ``key`` names it in Redis."""

    customer: str
    business: str

    @property
    def key(self) -> str:
        return f"{self.customer}|{self.business}"

    @classmethod
    def from_key(cls, key: str) -> Conversation:
        customer, sep, business = key.partition("|")
        if not sep or not customer or not business:
            raise InvalidPhoneNumber("malformed conversation key")
        return cls(customer, business)

    @classmethod
    def of(cls, customer: str, business: str, *, default_region: str | None = None) -> Conversation:
        return cls(
            normalize_address(customer, default_region=default_region),
            normalize_address(business, default_region=default_region),
        )
