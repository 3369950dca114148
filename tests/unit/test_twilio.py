"""Twilio's inbound WhatsApp form: parsing into a Message, URL rebuilding and signature checks."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from tests.signing import sign_pairs
from wa_sessions.errors import BadRequest, InvalidSignature
from wa_sessions.statemachine.models import MessageDirection, MessageType
from wa_sessions.webhook.signatures import (
    SignatureChecker,
    UnknownAccount,
    check_account,
    signed_url,
)
from wa_sessions.webhook.twilio import FormParams, check_account_sid, decode_form, parse_inbound

TOKEN = "test-token"
URL = "https://example.test/twilio-webhook-opt"
AT = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
CUSTOMER = "+14155550100"
BUSINESS = "+14155238886"


def sid() -> str:
    return "SM" + uuid.uuid4().hex


def form(**fields: str) -> dict[str, str]:
    base = {
        "MessageSid": sid(),
        "AccountSid": "AC" + "0" * 32,
        "From": f"whatsapp:{CUSTOMER}",
        "To": f"whatsapp:{BUSINESS}",
        "Body": "I need 5 units of Product A",
        "NumMedia": "0",
        "NumSegments": "1",
        "ProfileName": "Ada",
        "WaId": CUSTOMER[1:],
        "MessageType": "text",
    }
    base.update(fields)
    return base


def params_of(fields: dict[str, str] | list[tuple[str, str]]) -> FormParams:
    return decode_form(urlencode(fields).encode())


# ---- parsing --------------------------------------------------------------------------------


def test_text_message_becomes_an_inbound_text_message_of_the_conversation() -> None:
    """From/To make the conversation; MessageSid, Body and the acceptance time the message."""
    fields = form()
    conv, message = parse_inbound(params_of(fields), accepted_at=AT)
    assert (conv.customer, conv.business) == (CUSTOMER, BUSINESS)
    assert message.id == fields["MessageSid"]
    assert message.content == "I need 5 units of Product A"
    assert message.message_type is MessageType.TEXT
    assert message.direction is MessageDirection.INBOUND
    assert message.timestamp == AT
    assert message.metadata == {"profile_name": "Ada", "account_sid": "AC" + "0" * 32}


def test_account_sid_is_stored_only_when_it_is_not_the_configured_account() -> None:
    """Every stored byte is kept for the retention period: the configured account says it."""
    params = params_of(form())
    _, same = parse_inbound(params, accepted_at=AT, account_sid="AC" + "0" * 32)
    _, other = parse_inbound(params, accepted_at=AT, account_sid="AC" + "1" * 32)
    assert same.metadata == {"profile_name": "Ada"}
    assert other.metadata["account_sid"] == "AC" + "0" * 32


def test_plain_message_has_no_referral_even_with_twilio_referral_num_media_zero() -> None:
    """Twilio sends ReferralNumMedia=0 on every message: that is not an ad click."""
    _, message = parse_inbound(params_of(form(ReferralNumMedia="0")), accepted_at=AT)
    assert "referral" not in message.metadata


def test_wa_id_is_kept_only_when_it_is_not_the_customer_number() -> None:
    """WaId repeats the phone's digits; for a BSUID customer it is the only phone hint."""
    fields = form(From="whatsapp:US.13491208655302741918", WaId="14155550123")
    _, message = parse_inbound(params_of(fields), accepted_at=AT)
    assert message.metadata["wa_id"] == "14155550123"


def test_parsed_message_serialises_like_a_validated_one() -> None:
    """The skipped validation pass changes nothing in what the inbox stores."""
    _, message = parse_inbound(params_of(form()), accepted_at=AT)
    again = type(message).model_validate_json(message.model_dump_json())
    assert again == message


def test_image_message_with_two_media_lists_both_and_takes_the_first_type() -> None:
    """NumMedia=2: both URLs with content types, typed by the first one."""
    fields = form(
        Body="",
        NumMedia="2",
        MediaUrl0="https://api.twilio.com/media/ME1",
        MediaContentType0="image/jpeg",
        MediaUrl1="https://api.twilio.com/media/ME2",
        MediaContentType1="application/pdf",
    )
    _, message = parse_inbound(params_of(fields), accepted_at=AT)
    assert message.message_type is MessageType.IMAGE
    assert message.content == ""
    assert message.metadata["media"] == [
        {"url": "https://api.twilio.com/media/ME1", "content_type": "image/jpeg"},
        {"url": "https://api.twilio.com/media/ME2", "content_type": "application/pdf"},
    ]


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("audio/ogg", MessageType.AUDIO),
        ("video/mp4", MessageType.VIDEO),
        ("application/pdf", MessageType.DOCUMENT),
        ("text/vcard", MessageType.DOCUMENT),
    ],
)
def test_media_content_type_decides_the_message_type(
    content_type: str, expected: MessageType
) -> None:
    """audio/video map to their types; anything else that is not an image is a document."""
    fields = form(NumMedia="1", MediaUrl0="https://m.test/1", MediaContentType0=content_type)
    _, message = parse_inbound(params_of(fields), accepted_at=AT)
    assert message.message_type is expected


def test_location_message_carries_coordinates_address_and_label() -> None:
    """Latitude/Longitude make a location message with numeric coordinates."""
    fields = form(
        Body="",
        Latitude="37.7749",
        Longitude="-122.4194",
        Address="1 Market St",
        Label="Office",
    )
    _, message = parse_inbound(params_of(fields), accepted_at=AT)
    assert message.message_type is MessageType.LOCATION
    assert message.metadata["location"] == {
        "latitude": 37.7749,
        "longitude": -122.4194,
        "address": "1 Market St",
        "label": "Office",
    }


@pytest.mark.parametrize(
    ("latitude", "longitude"),
    [("north", "1"), ("91", "0"), ("0", "181"), ("nan", "0"), ("1", "")],
)
def test_malformed_location_is_a_bad_request(latitude: str, longitude: str) -> None:
    """Coordinates must both be finite numbers within range."""
    with pytest.raises(BadRequest, match=r"Latitude|Longitude"):
        parse_inbound(params_of(form(Latitude=latitude, Longitude=longitude)), accepted_at=AT)


def test_button_reply_reply_context_and_referral_are_kept_in_metadata() -> None:
    """Quick-reply buttons, the replied-to sid and click-to-WhatsApp ad fields are kept."""
    replied = sid()
    fields = form(
        Body="Yes",
        ButtonText="Yes",
        ButtonPayload="confirm_order",
        OriginalRepliedMessageSid=replied,
        ReferralSourceUrl="https://ads.test/1",
        ReferralCtwaClid="clid-1",
        ReferralHeadline="Sale",
    )
    _, message = parse_inbound(params_of(fields), accepted_at=AT)
    assert message.message_type is MessageType.TEXT
    assert message.metadata["button"] == {"text": "Yes", "payload": "confirm_order"}
    assert message.metadata["replied_to"] == replied
    assert message.metadata["referral"] == {
        "source_url": "https://ads.test/1",
        "ctwa_clid": "clid-1",
        "headline": "Sale",
    }


def test_business_scoped_user_id_in_from_is_the_customer_address() -> None:
    """A WhatsApp user with a username arrives as a BSUID, kept as sent."""
    fields = form(From="whatsapp:US.13491208655302741918")
    fields.pop("WaId")
    conv, _ = parse_inbound(params_of(fields), accepted_at=AT)
    assert conv.customer == "US.13491208655302741918"
    assert conv.key == f"US.13491208655302741918|{BUSINESS}"


def test_unknown_fields_are_ignored() -> None:
    """Twilio adds fields without notice; they do not break parsing or reach storage."""
    fields = form(ChannelMetadata='{"type":"whatsapp"}', SmsStatus="received", NewField="x")
    _, message = parse_inbound(params_of(fields), accepted_at=AT)
    assert "NewField" not in str(message.metadata)


@pytest.mark.parametrize("num_media", ["11", "99", "100", "-1", "two", "1.5", " 1", "١"])
def test_num_media_outside_zero_to_ten_or_not_an_integer_is_a_bad_request(
    num_media: str,
) -> None:
    """NumMedia must be an ASCII integer from 0 to 10."""
    with pytest.raises(BadRequest, match="NumMedia"):
        parse_inbound(params_of(form(NumMedia=num_media)), accepted_at=AT)


def test_num_media_without_its_media_url_is_a_bad_request() -> None:
    """A promised MediaUrlN that is absent names the missing field."""
    with pytest.raises(BadRequest, match="MediaUrl0"):
        parse_inbound(params_of(form(NumMedia="1")), accepted_at=AT)


@pytest.mark.parametrize(
    "message_sid",
    ["", "SM123", "sm" + "a" * 32, "SM" + "g" * 32, "SM" + "a" * 33, "S1" + "a" * 32],
)
def test_malformed_message_sid_is_a_bad_request(message_sid: str) -> None:
    """MessageSid is two capital letters and 32 hex digits."""
    with pytest.raises(BadRequest, match="MessageSid"):
        parse_inbound(params_of(form(MessageSid=message_sid)), accepted_at=AT)


@pytest.mark.parametrize("field", ["MessageSid", "From", "To"])
def test_missing_required_field_is_a_bad_request_naming_it(field: str) -> None:
    """MessageSid, From and To are required."""
    fields = form()
    del fields[field]
    with pytest.raises(BadRequest, match=f"^{field} is missing"):
        parse_inbound(params_of(fields), accepted_at=AT)


def test_from_that_is_no_address_is_a_bad_request_without_echoing_it() -> None:
    """A From that is neither E.164 nor a BSUID is refused; the value is redacted."""
    with pytest.raises(BadRequest, match=r"^From is not a WhatsApp address") as caught:
        parse_inbound(params_of(form(From="whatsapp:call-me-maybe-555")), accepted_at=AT)
    assert "call-me-maybe-555" not in str(caught.value)


def test_invalid_utf8_body_is_a_bad_request() -> None:
    """Percent-escaped bytes that are not UTF-8 are refused, as are raw ones."""
    with pytest.raises(BadRequest, match="UTF-8"):
        decode_form(b"MessageSid=SM1&Body=%ff%fe")
    with pytest.raises(BadRequest, match="UTF-8"):
        decode_form(b"Body=\xff")


def test_broken_percent_escape_is_a_bad_request() -> None:
    """parse_qsl would keep ``%zz`` literally; Twilio never sends it."""
    with pytest.raises(BadRequest, match="percent"):
        decode_form(b"Body=100%zz")


def test_form_keeps_blank_values_and_plus_as_space() -> None:
    """Blank values survive and ``+`` is a space."""
    params = decode_form(b"Body=&Label=a+b&X=1")
    assert params.get("Body") == ""
    assert params.get("Label") == "a b"
    assert params.getall("X") == ["1"]
    assert list(params) == ["Body", "Label", "X"]


@pytest.mark.parametrize(
    "body",
    [b"Body=a&X=1&X=2", b"X=1&Body=a&X=1", b"X=&X=", "X=é&X=e".encode()],
)
def test_a_repeated_form_field_is_a_bad_request_naming_it(body: bytes) -> None:
    """Twilio never repeats a field; a repeated one, equal values or not, is refused by name."""
    with pytest.raises(BadRequest, match="form field 'X' appears more than once"):
        decode_form(body)


def test_a_reordered_duplicate_keeps_twilios_signature_so_it_is_refused_before_it() -> None:
    """Why duplicates are refused: the signature covers sorted, de-duplicated values joined
    without separators, so swapping two values of one name (which changes the first value, the
    one a reader takes) keeps it valid."""
    signed = [("Body", "I need 1"), ("Body", "I need 500")]
    assert sign_pairs(TOKEN, URL, signed) == sign_pairs(TOKEN, URL, signed[::-1])
    with pytest.raises(BadRequest, match="'Body' appears more than once"):
        decode_form(urlencode(signed[::-1]).encode())


def test_a_long_repeated_field_name_is_cut_short_in_the_message() -> None:
    """The name is the client's text: the message quotes at most 40 characters of it."""
    name = "N" * 5000
    with pytest.raises(BadRequest) as refused:
        decode_form(f"{name}=1&{name}=2".encode())
    assert len(str(refused.value)) < 100


@pytest.mark.parametrize(
    ("account", "problem"),
    [
        (None, "missing"),
        ("", "missing"),
        ("AC" + "0" * 31, "malformed"),
        ("AC" + "0" * 33, "malformed"),
        ("XX" + "0" * 32, "malformed"),
        ("AC" + "g" * 32, "malformed"),
        ("ac" + "0" * 32, "malformed"),
        (" AC" + "0" * 32, "malformed"),
    ],
)
def test_an_account_sid_that_is_not_ac_and_32_hex_digits_is_a_bad_request(
    account: str | None, problem: str
) -> None:
    """Every signed Twilio request carries its account as ``AC`` plus 32 hex digits."""
    fields = form()
    fields.pop("AccountSid")
    if account is not None:
        fields["AccountSid"] = account
    with pytest.raises(BadRequest, match=f"AccountSid is {problem}"):
        check_account_sid(params_of(fields))


def test_a_well_formed_account_sid_passes_in_either_letter_case() -> None:
    """Twilio writes lower-case hex; upper-case hex is the same number."""
    check_account_sid(params_of(form()))
    check_account_sid(params_of(form(AccountSid="AC" + "ABCDEF0123" * 3 + "ab")))


# ---- URL rebuilding -------------------------------------------------------------------------


def test_public_base_url_wins_over_request_url_and_forwarded_headers() -> None:
    """Behind a proxy the configured base URL plus path and query is what Twilio signed."""
    url = signed_url(
        request_url="http://10.0.0.5:8000/twilio-webhook-opt?x=1",
        path="/twilio-webhook-opt",
        query="x=1",
        public_base_url="https://example.test/",
        forwarded_proxy_count=1,
        forwarded_proto="http",
        forwarded_host="evil.test",
    )
    assert url == "https://example.test/twilio-webhook-opt?x=1"


def rebuild(proxies: int, proto: str | None, host: str | None) -> str:
    return signed_url(
        request_url="http://10.0.0.5:8000/twilio-webhook-opt",
        path="/twilio-webhook-opt",
        query="",
        public_base_url="",
        forwarded_proxy_count=proxies,
        forwarded_proto=proto,
        forwarded_host=host,
    )


def test_forwarded_headers_are_used_only_when_proxies_are_configured() -> None:
    """X-Forwarded-* rebuild the URL only with FORWARDED_PROXY_COUNT set."""
    assert rebuild(1, "https", "hooks.example.test") == (
        "https://hooks.example.test/twilio-webhook-opt"
    )
    assert rebuild(0, "https", "hooks.example.test") == "http://10.0.0.5:8000/twilio-webhook-opt"


@pytest.mark.parametrize(
    ("proxies", "proto", "host", "expected"),
    [
        # The client sent its own entries; the one proxy appended what it saw from Twilio.
        (1, "http, https", "evil.test, hooks.example.test", "https://hooks.example.test"),
        # Two proxies: the outer one saw Twilio, the inner one appended the outer's request.
        (2, "https, http", "hooks.example.test, lb.internal", "https://hooks.example.test"),
        (2, "x, https, http", "evil.test, hooks.example.test, lb", "https://hooks.example.test"),
        (1, " HTTPS ", " hooks.example.test ", "https://hooks.example.test"),
    ],
)
def test_the_forwarded_entry_is_counted_from_the_right_by_the_proxies_in_front(
    proxies: int, proto: str, host: str, expected: str
) -> None:
    """Proxies append: the entry ``proxies`` from the right is the outermost proxy's; what
    is left of it came from the client and is never the signed URL."""
    assert rebuild(proxies, proto, host) == expected + "/twilio-webhook-opt"


def test_request_url_is_used_without_base_url_or_complete_forwarded_headers() -> None:
    """A header missing, with fewer entries than proxies, or an odd scheme is not believed."""
    for proxies, proto, host in (
        (1, "https", None),
        (1, None, "h.test"),
        (1, "ftp", "h.test"),
        (2, "https", "h.test"),
        (1, "https", "h.test, "),
    ):
        assert rebuild(proxies, proto, host) == "http://10.0.0.5:8000/twilio-webhook-opt"


# ---- signatures -----------------------------------------------------------------------------


def test_signature_from_twilios_validator_is_accepted() -> None:
    """HMAC-SHA1 over URL and sorted fields, as the twilio SDK computes it."""
    fields = form()
    signature = RequestValidator(TOKEN).compute_signature(URL, fields)
    SignatureChecker(TOKEN).check(URL, params_of(fields), signature, None)


#: The worked example of Twilio's request-validation guide (twilio.com/docs/usage/security):
#: auth token ``12345``, this URL, these POST fields, HMAC-SHA1. The guide has printed it with
#: two caller numbers over time; both pairs are checked against the twilio SDK below.
DOCS_TOKEN = "12345"
DOCS_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
DOCS_VECTORS = [
    ("+12349013030", "0/KCTR6DLpKmkAf8muzZqo1nDgQ="),
    ("+14158675310", "GvWf1cFY/Q7PnoempGyD5oXAezc="),
]


def docs_fields(caller: str) -> dict[str, str]:
    return {
        "CallSid": "CA1234567890ABCDE",
        "Caller": caller,
        "Digits": "1234",
        "From": caller,
        "To": "+18005551212",
    }


@pytest.mark.parametrize(("caller", "signature"), DOCS_VECTORS)
def test_twilios_documented_signature_is_what_the_sdk_computes(caller: str, signature: str) -> None:
    """The known answer does not come from the validator under test: the SDK must agree."""
    validator = RequestValidator(DOCS_TOKEN)
    assert validator.compute_signature(DOCS_URL, docs_fields(caller)) == signature


@pytest.mark.parametrize(("caller", "signature"), DOCS_VECTORS)
def test_the_checker_accepts_twilios_documented_signature_from_the_raw_form(
    caller: str, signature: str
) -> None:
    """The service's checker, fed the form body as Twilio posts it (fields in any order)."""
    fields = docs_fields(caller)
    body = urlencode(list(reversed(fields.items()))).encode()
    SignatureChecker(DOCS_TOKEN).check(DOCS_URL, decode_form(body), signature, None)


@pytest.mark.parametrize(("caller", "signature"), DOCS_VECTORS)
def test_the_checker_rejects_twilios_documented_signature_once_anything_changes(
    caller: str, signature: str
) -> None:
    """One field, the query string or the token changed: the documented signature fails."""
    tampered = {**docs_fields(caller), "Digits": "1235"}
    cases = [
        (DOCS_TOKEN, DOCS_URL, tampered),
        (DOCS_TOKEN, DOCS_URL.replace("bar=2", "bar=3"), docs_fields(caller)),
        ("12346", DOCS_URL, docs_fields(caller)),
    ]
    for token, url, fields in cases:
        with pytest.raises(InvalidSignature):
            SignatureChecker(token).check(url, params_of(fields), signature, None)


def test_sha256_signature_is_checked_when_the_settings_header_says_so() -> None:
    """``algorithm=HMAC_SHA256`` in the settings header switches the algorithm, both ways."""
    fields = form()
    sha256 = RequestValidator(TOKEN).compute_signature(URL, fields, algorithm="HMAC_SHA256")
    settings = "key=webhooks_sharedkey_1,algorithm=HMAC_SHA256"
    checker = SignatureChecker(TOKEN)
    checker.check(URL, params_of(fields), sha256, settings)
    with pytest.raises(InvalidSignature):
        checker.check(URL, params_of(fields), sha256, None)
    sha1 = RequestValidator(TOKEN).compute_signature(URL, fields)
    with pytest.raises(InvalidSignature):
        checker.check(URL, params_of(fields), sha1, settings)


def test_unsupported_algorithm_fails_closed() -> None:
    """An algorithm this SDK does not know is a rejection, not a fallback to SHA1."""
    fields = form()
    signature = RequestValidator(TOKEN).compute_signature(URL, fields)
    with pytest.raises(InvalidSignature):
        SignatureChecker(TOKEN).check(URL, params_of(fields), signature, "algorithm=HMAC_SHA512")


def test_signature_covers_unknown_fields() -> None:
    """Every received field is signed over, including ones we do not store."""
    pairs = [*form().items(), ("Extra", "a"), ("Other", "b")]
    signature = RequestValidator(TOKEN).compute_signature(URL, dict(pairs))
    checker = SignatureChecker(TOKEN)
    checker.check(URL, params_of(pairs), signature, None)
    with pytest.raises(InvalidSignature):
        checker.check(URL, params_of(pairs[:-1]), signature, None)


@pytest.mark.parametrize(
    ("url", "token", "tamper"),
    [
        ("https://example.test/other", TOKEN, False),
        (URL, "another-token", False),
        (URL, TOKEN, True),
    ],
)
def test_signature_for_another_url_token_or_body_is_rejected(
    url: str, token: str, tamper: bool
) -> None:
    """A different URL, signing token or field value breaks the signature."""
    fields = form()
    signature = RequestValidator(token).compute_signature(url, fields)
    if tamper:
        fields["Body"] = "I need 500 units"
    with pytest.raises(InvalidSignature, match="does not match"):
        SignatureChecker(TOKEN).check(URL, params_of(fields), signature, None)


def test_missing_signature_or_token_fails_closed() -> None:
    """No X-Twilio-Signature, or no configured auth token, is always a rejection."""
    fields = form()
    signature = RequestValidator("").compute_signature(URL, fields)
    with pytest.raises(InvalidSignature, match="missing"):
        SignatureChecker(TOKEN).check(URL, params_of(fields), None, None)
    with pytest.raises(InvalidSignature, match="no Twilio auth token"):
        SignatureChecker("").check(URL, params_of(fields), signature, None)


def test_request_for_another_account_is_refused_when_an_account_is_configured() -> None:
    """A configured TWILIO_ACCOUNT_SID must match AccountSid; unset, any account passes."""
    params = params_of(form())
    check_account(params, "")
    check_account(params, "AC" + "0" * 32)
    with pytest.raises(UnknownAccount):
        check_account(params, "AC" + "1" * 32)


def _expected_pairs(expected: list[tuple[str, str]]) -> list[tuple[str, str]] | None:
    """parse_qsl's pairs, or None where a name repeats (which ``decode_form`` refuses)."""
    names = [name for name, _ in expected]
    return None if len(set(names)) < len(names) else expected


@given(pairs=st.lists(st.tuples(st.text(), st.text()), max_size=10))
def test_form_decoding_matches_parse_qsl_for_any_encoded_form(pairs: list[tuple[str, str]]) -> None:
    """The fast ASCII decoder gives what ``urllib.parse.parse_qsl`` gives (any text, UTF-8),
    or refuses a repeated name."""
    body = urlencode(pairs).encode()
    expected = _expected_pairs(parse_qsl(body.decode(), keep_blank_values=True, errors="strict"))
    if expected is None:
        with pytest.raises(BadRequest, match="appears more than once"):
            decode_form(body)
        return
    params = decode_form(body)
    assert [(name, value) for name in params for value in params.getall(name)] == expected


@given(text=st.text(alphabet="ab=&+%2CcF3", max_size=40))
def test_form_decoding_of_odd_ascii_bodies_matches_parse_qsl_or_refuses(text: str) -> None:
    """Stray ``=``, ``&``, ``+`` and escapes: the same pairs as parse_qsl, or a 400 where the
    escapes are broken or do not decode as UTF-8, or a name repeats."""
    try:
        expected = _expected_pairs(parse_qsl(text, keep_blank_values=True, errors="strict"))
        decodable = True
    except UnicodeDecodeError:
        expected, decodable = None, False
    try:
        params = decode_form(text.encode())
    except BadRequest as exc:
        refusal = str(exc)
    else:
        assert expected is not None
        assert [(n, v) for n in params for v in params.getall(n)] == expected
        return
    assert expected is None or "%" in text
    if decodable and expected is None and "%" not in text:
        assert "appears more than once" in refusal
