"""Address normalisation and conversation keys: every spelling of one customer is one conversation.

Rejected addresses must never be echoed whole in error messages, which reach logs and HTTP bodies.
"""

from __future__ import annotations

import re

import pytest

from wa_sessions.errors import InvalidPhoneNumber, WaSessionsError
from wa_sessions.statemachine.identity import Conversation, normalize_address

BSUID = "US.13491208655302741918"
PARENT_BSUID = "US.ENT.11815799212886844830"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("whatsapp:+14155550123", "+14155550123"),
        ("+1 415 555 0123", "+14155550123"),
        ("+1 (415) 555-0123", "+14155550123"),
        ("+1.415.555.0123", "+14155550123"),
        ("  +14155550123\n", "+14155550123"),
        ("WhatsApp:+14155550123", "+14155550123"),
        ("whatsapp: +44 20 7946 0958", "+442079460958"),
        ("+44 (0)20 7946 0958", "+442079460958"),
        ("+1234567890", "+1234567890"),
        ("+14155238886", "+14155238886"),
    ],
)
def test_phone_spellings_normalise_to_e164(raw: str, expected: str) -> None:
    """Twilio's channel prefix, spaces, dots, dashes and brackets all give one E.164 string."""
    assert normalize_address(raw) == expected


def test_design_document_number_is_accepted_unchanged() -> None:
    """The design document's +1234567890 (not an assigned range) is well-formed E.164: kept."""
    assert normalize_address("+1234567890") == "+1234567890"


def test_normalising_is_idempotent() -> None:
    """A canonical address normalises to itself."""
    for raw in ("whatsapp:+1 415 555 0123", BSUID, f"whatsapp:{PARENT_BSUID}"):
        once = normalize_address(raw)
        assert normalize_address(once) == once


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (BSUID, BSUID),
        (f"whatsapp:{BSUID}", BSUID),
        (PARENT_BSUID, PARENT_BSUID),
        (f"whatsapp:{PARENT_BSUID}", PARENT_BSUID),
        ("BR.abcXYZ123", "BR.abcXYZ123"),
        ("US." + "a" * 128, "US." + "a" * 128),
    ],
)
def test_business_scoped_user_ids_are_kept_as_sent(raw: str, expected: str) -> None:
    """A WhatsApp business-scoped user id (optionally ENT.) is accepted without its prefix."""
    assert normalize_address(raw) == expected


def test_national_number_needs_a_default_region() -> None:
    """Without a country code a number is refused, unless a default region is configured."""
    with pytest.raises(InvalidPhoneNumber, match="country code"):
        normalize_address("415 555 0123")
    assert normalize_address("415 555 0123", default_region="US") == "+14155550123"
    assert normalize_address("020 7946 0958", default_region="GB") == "+442079460958"


def test_default_region_does_not_override_an_explicit_country_code() -> None:
    """A number that starts with + keeps its own country whatever the default region."""
    assert normalize_address("+44 20 7946 0958", default_region="US") == "+442079460958"


REJECTED = [
    pytest.param("", id="empty"),
    pytest.param("   ", id="blank"),
    pytest.param("whatsapp:", id="prefix-only"),
    pytest.param("whatsapp:   ", id="prefix-and-blank"),
    pytest.param("hello", id="letters"),
    pytest.param("+1415CALLNOW", id="letters-in-number"),
    pytest.param("4155550123", id="no-country-code"),
    pytest.param("(415) 555-0123", id="national-format"),
    pytest.param("+1234567890123456", id="too-long"),
    pytest.param("+" + "9" * 40, id="far-too-long"),
    pytest.param("1" * 10_000, id="huge"),
    pytest.param("+1234", id="too-short"),
    pytest.param("+0123456789", id="country-code-zero"),
    pytest.param("++14155550123", id="double-plus"),
    pytest.param("+14155550123; DROP TABLE sessions", id="sql-injection"),
    pytest.param("+14155550123\r\nDEL wa:idx:all", id="redis-crlf-injection"),
    pytest.param("+14155550123|+14155238886", id="conversation-separator"),
    pytest.param("{+14155550123}", id="hash-tag-braces"),
    pytest.param("+1415555*", id="glob"),
    pytest.param("<script>alert(1)</script>", id="html"),
    pytest.param("+1 415 555 0123\x00", id="nul-byte"),
    pytest.param(
        "+\u0661\u0664\u0661\u0665\u0665\u0665\u0665\u0660\u0661\u0662\u0663", id="arabic"
    ),
    pytest.param("us.13491208655302741918", id="bsuid-lowercase-country"),
    pytest.param("USA.13491208655302741918", id="bsuid-three-letter-country"),
    pytest.param("US.", id="bsuid-empty"),
    pytest.param("US." + "a" * 129, id="bsuid-too-long"),
    pytest.param("US.1349-1208", id="bsuid-punctuation"),
    pytest.param("US.123|+14155238886", id="bsuid-separator"),
    pytest.param("US.ENT.", id="bsuid-ent-empty"),
]


@pytest.mark.parametrize("raw", REJECTED)
def test_malformed_addresses_are_rejected(raw: str) -> None:
    """Anything that is neither E.164 nor a BSUID raises InvalidPhoneNumber."""
    with pytest.raises(InvalidPhoneNumber) as info:
        normalize_address(raw)
    assert isinstance(info.value, WaSessionsError)
    assert info.value.code == "invalid_phone_number"


@pytest.mark.parametrize("raw", [None, 14155550123, b"+14155550123"])
def test_non_string_addresses_are_rejected(raw: object) -> None:
    """Only strings are addresses: numbers and bytes are refused with our own error."""
    with pytest.raises(InvalidPhoneNumber):
        normalize_address(raw)  # type: ignore[arg-type]


def _digits(text: str) -> str:
    return re.sub(r"[^0-9]", "", text)


@pytest.mark.parametrize(
    "raw",
    [
        "4155550123",
        "(415) 555-0123",
        "+1234567890123456",
        "+0123456789",
        "+1234",
        "+123456",
        "+12345",
        "+1415CALLNOW",
        "+14155550123; DROP TABLE sessions",
        "+14155550123|+14155238886",
        "1" * 10_000,
    ],
)
def test_error_message_never_echoes_the_whole_number(raw: str) -> None:
    """The message neither contains the input nor spells out all of its digits in a row."""
    with pytest.raises(InvalidPhoneNumber) as info:
        normalize_address(raw)
    message = str(info.value)
    value = raw.strip()
    assert value not in message
    assert _digits(value) not in _digits(message)
    assert len(message) < 200


def test_error_message_keeps_a_hint_of_a_long_number() -> None:
    """A redacted long number still shows its first and last characters, to help debugging."""
    with pytest.raises(InvalidPhoneNumber) as info:
        normalize_address("+1234567890123456")
    assert "+12***56" in str(info.value)


def test_conversation_key_round_trips() -> None:
    """Conversation.from_key(c.key) gives back the same conversation, for phones and BSUIDs."""
    for customer, business in [
        ("+14155550123", "+14155238886"),
        (BSUID, "+14155238886"),
        (PARENT_BSUID, "+442079460958"),
    ]:
        conv = Conversation(customer, business)
        assert conv.key == f"{customer}|{business}"
        assert Conversation.from_key(conv.key) == conv


def test_conversation_of_normalises_both_addresses() -> None:
    """Conversation.of normalises customer and business, so spellings share one key."""
    a = Conversation.of("whatsapp:+1 415 555 0123", "whatsapp:+14155238886")
    b = Conversation.of("+14155550123", "+1 (415) 523-8886")
    assert a == b
    assert a.key == "+14155550123|+14155238886"
    assert Conversation.of(f"whatsapp:{BSUID}", "+14155238886").customer == BSUID


def test_conversation_of_rejects_a_bad_address() -> None:
    """A bad customer or business address is refused before any key is built."""
    with pytest.raises(InvalidPhoneNumber):
        Conversation.of("hello", "+14155238886")
    with pytest.raises(InvalidPhoneNumber):
        Conversation.of("+14155550123", "")


def test_different_business_numbers_are_different_conversations() -> None:
    """One customer talking to two business numbers has two conversation keys."""
    one = Conversation.of("+14155550123", "+14155238886")
    two = Conversation.of("+14155550123", "+442079460958")
    assert one != two
    assert one.key != two.key


@pytest.mark.parametrize("key", ["", "+14155550123", "|+14155238886", "+14155550123|", "|"])
def test_malformed_conversation_keys_are_rejected(key: str) -> None:
    """A key without both halves is refused rather than producing an empty address."""
    with pytest.raises(InvalidPhoneNumber):
        Conversation.from_key(key)
