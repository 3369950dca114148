"""Twilio's inbound WhatsApp webhook: form decoding and the mapping to a Message (the signature
checks are in ``signatures.py``).

Plain functions over bytes, strings and settings, so unit tests need neither HTTP nor Redis.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from wa_sessions.errors import BadRequest, InvalidPhoneNumber
from wa_sessions.statemachine.identity import Conversation, normalize_address
from wa_sessions.statemachine.models import Message, MessageDirection, MessageType

#: Twilio allows at most 10 media per WhatsApp message.
MAX_MEDIA = 10
#: Twilio sends a few dozen fields; anything near this is not Twilio.
MAX_FIELDS = 1000

# Twilio resource ids: a two-letter type prefix (SM, MM, ...) and 32 hex digits.
_SID = re.compile(r"[A-Z]{2}[0-9a-fA-F]{32}")
_ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")
# parse_qsl leaves a broken escape as literal text; Twilio never sends one.
_BAD_PERCENT = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_REFERRAL_PREFIX = "Referral"

_Getter = Callable[[str], str | None]

# Parsing a phone number costs ~9 us; the same business number (and often the same customer)
# arrives on every request.
_normalize = functools.lru_cache(maxsize=8192)(normalize_address)


class FormParams:
    """Decoded form fields in arrival order, each name once.

    A repeated name is refused (``BadRequest`` naming it): Twilio never repeats one, and its
    signature joins each name and value without a separator over the sorted, de-duplicated
    values, so a duplicate re-split or reordered by someone who captured a request keeps the
    signature valid while changing which value a reader takes first. ``getall`` is what the
    twilio SDK's validator reads."""

    __slots__ = ("_fields",)

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        fields: dict[str, str] = {}
        for name, value in pairs:
            if name in fields:
                raise BadRequest(f"form field {_quoted(name)} appears more than once")
            fields[name] = value
        self._fields = fields

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __contains__(self, name: object) -> bool:
        return name in self._fields

    def getall(self, name: str) -> list[str]:
        return [self._fields[name]]

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._fields.get(name, default)


def _quoted(name: str) -> str:
    """A field name for an error message: quoted, and cut short (it is the client's text)."""
    return repr(name if len(name) <= 40 else name[:40] + "...")


def decode_form(body: bytes) -> FormParams:
    """Decodes an ``application/x-www-form-urlencoded`` body; ``BadRequest`` when it is not
    valid UTF-8 or has broken percent escapes."""
    if _BAD_PERCENT.search(body):
        raise BadRequest("body has a malformed percent escape")
    try:
        if body.isascii():
            return FormParams(_decode_ascii_form(body.decode("ascii")))
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FIELDS,
        )
    except UnicodeDecodeError:
        raise BadRequest("body is not valid UTF-8") from None
    except ValueError:
        raise BadRequest(f"body has more than {MAX_FIELDS} fields") from None
    return FormParams(pairs)


_PERCENT_ESCAPE = re.compile("%[0-9A-Fa-f]{2}")
#: "%xx" in any letter case -> the byte it stands for, as a latin-1 character.
_UNESCAPED = {
    f"%{hi}{lo}": chr(int(hi + lo, 16))
    for hi in "0123456789abcdefABCDEF"
    for lo in "0123456789abcdefABCDEF"
}


def _unescape(match: re.Match[str]) -> str:
    return _UNESCAPED[match[0]]


def _unquote_plus(text: str) -> str:
    if "+" in text:
        text = text.replace("+", " ")
    if "%" not in text:
        return text
    # Bytes as latin-1 characters, then the bytes decoded as UTF-8 (multi-byte characters
    # arrive as several escapes).
    return _PERCENT_ESCAPE.sub(_unescape, text).encode("latin-1").decode("utf-8")


def _decode_ascii_form(text: str) -> list[tuple[str, str]]:
    """``parse_qsl(text, keep_blank_values=True, errors="strict")`` for an ASCII body (every
    form a client percent-encodes), at a fraction of the cost: this runs on every webhook."""
    fields = text.split("&")
    if len(fields) > MAX_FIELDS:
        raise ValueError("too many fields")
    pairs = []
    for field in fields:
        if not field:
            continue
        name, _, value = field.partition("=")
        pairs.append((_unquote_plus(name), _unquote_plus(value)))
    return pairs


def check_account_sid(params: FormParams) -> None:
    """Every request Twilio signs names its account: ``AC`` and 32 hex digits, else
    ``BadRequest`` (the inbound webhook and the status callback alike)."""
    account = params.get("AccountSid")
    if not account:
        raise BadRequest("AccountSid is missing")
    if not _ACCOUNT_SID.fullmatch(account):
        raise BadRequest("AccountSid is malformed: AC and 32 hex digits expected")


# ---- parsing ------------------------------------------------------------------------------


def parse_inbound(
    params: FormParams,
    *,
    accepted_at: datetime,
    default_region: str | None = None,
    account_sid: str = "",
) -> tuple[Conversation, Message]:
    """The conversation and message of one inbound WhatsApp webhook; ``BadRequest`` naming the
    field when one is missing or malformed. Fields we do not know are ignored.

    ``account_sid`` is the configured Twilio account: a message's ``AccountSid`` is stored only
    when it says something else (no account configured), as every stored byte is kept for the
    retention period."""
    get = params.get
    sid = get("MessageSid")
    if not sid:
        raise BadRequest("MessageSid is missing")
    if not _SID.fullmatch(sid):
        raise BadRequest("MessageSid is malformed")
    conversation = Conversation(
        _address(get, "From", default_region), _address(get, "To", default_region)
    )

    metadata: dict[str, Any] = {}
    media = _media(get)
    location = _location(get)
    if media:
        message_type = _media_type(media[0]["content_type"])
        metadata["media"] = media
    elif location is not None:
        message_type = MessageType.LOCATION
    else:
        message_type = MessageType.TEXT
    if location is not None:
        metadata["location"] = location
    for field, key in (
        ("ProfileName", "profile_name"),
        ("OriginalRepliedMessageSid", "replied_to"),
    ):
        value = get(field)
        if value:
            metadata[key] = value
    account = get("AccountSid")
    if account and account != account_sid:
        metadata["account_sid"] = account
    wa_id = get("WaId")
    # Stored only when it says more than the customer's number already does (every byte of a
    # message is kept for the retention period).
    if wa_id and "+" + wa_id != conversation.customer:
        metadata["wa_id"] = wa_id
    button_text, button_payload = get("ButtonText"), get("ButtonPayload")
    if button_text or button_payload:
        metadata["button"] = {"text": button_text or "", "payload": button_payload or ""}
    # Twilio sends ReferralNumMedia=0 with every message; only a real ad click has a referral.
    referral = {
        _snake(name[len(_REFERRAL_PREFIX) :]): value
        for name in params
        if name.startswith(_REFERRAL_PREFIX)
        and len(name) > len(_REFERRAL_PREFIX)
        and (value := get(name))
        and not (name == "ReferralNumMedia" and value == "0")
    }
    if referral:
        metadata["referral"] = referral

    # Every value was built and checked above; skip pydantic's second validation pass.
    message = Message.model_construct(
        id=sid,
        content=get("Body") or "",
        message_type=message_type,
        direction=MessageDirection.INBOUND,
        timestamp=accepted_at,
        metadata=metadata,
    )
    return conversation, message


def _address(get: _Getter, field: str, default_region: str | None) -> str:
    raw = get(field)
    if not raw:
        raise BadRequest(f"{field} is missing")
    try:
        return _normalize(raw, default_region=default_region)
    except InvalidPhoneNumber as exc:
        raise BadRequest(f"{field} is not a WhatsApp address: {exc}") from None


def _media(get: _Getter) -> list[dict[str, str]]:
    raw = get("NumMedia")
    if raw is None or raw == "":
        return []
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 2):
        raise BadRequest(f"NumMedia must be an integer from 0 to {MAX_MEDIA}")
    count = int(raw)
    if count > MAX_MEDIA:
        raise BadRequest(f"NumMedia must be an integer from 0 to {MAX_MEDIA}")
    media: list[dict[str, str]] = []
    for index in range(count):
        url = get(f"MediaUrl{index}")
        if not url:
            raise BadRequest(f"MediaUrl{index} is missing")
        media.append({"url": url, "content_type": get(f"MediaContentType{index}") or ""})
    return media


def _media_type(content_type: str) -> MessageType:
    major = content_type.partition("/")[0].strip().lower()
    if major == "image":
        return MessageType.IMAGE
    if major == "audio":
        return MessageType.AUDIO
    if major == "video":
        return MessageType.VIDEO
    return MessageType.DOCUMENT


def _location(get: _Getter) -> dict[str, Any] | None:
    lat_raw, lon_raw = get("Latitude"), get("Longitude")
    if not lat_raw and not lon_raw:
        return None
    latitude = _coordinate(lat_raw, "Latitude", 90.0)
    longitude = _coordinate(lon_raw, "Longitude", 180.0)
    location: dict[str, Any] = {"latitude": latitude, "longitude": longitude}
    for field, key in (("Address", "address"), ("Label", "label")):
        value = get(field)
        if value:
            location[key] = value
    return location


def _coordinate(raw: str | None, field: str, bound: float) -> float:
    if not raw:
        raise BadRequest(f"{field} is missing")
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest(f"{field} is not a number") from None
    if not math.isfinite(value) or abs(value) > bound:
        raise BadRequest(f"{field} is out of range")
    return value


def _snake(camel: str) -> str:
    return _CAMEL_BOUNDARY.sub("_", camel).lower()
