"""Business-initiated messages (issue #15): what the business may send a customer who did not
just write, and when. WhatsApp delivers free text only inside the 24-hour customer-service
window (from the customer's last inbound message; the business's own messages do not extend
it); outside it only an approved template, sent by its Content SID, goes out. A phone that
opted out (STOP) gets nothing the business starts. The session API and the worker both ask
``refusal`` before anything is queued or sent, so the rule is written once, here.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from wa_sessions.errors import BadRequest, OptedOut, OutsideWindow, WaSessionsError
from wa_sessions.statemachine.models import (
    CUSTOMER_SERVICE_WINDOW,
    Message,
    MessageDirection,
    MessageType,
)
from wa_sessions.statemachine.steps import from_ms

#: A Twilio Content SID (``HX`` and 32 hex digits).
CONTENT_SID_PATTERN = r"^HX[0-9a-fA-F]{32}$"
CONTENT_SID = re.compile(CONTENT_SID_PATTERN)
#: Template variables: at most this many, each key and value bounded (Twilio's own limits are
#: on the rendered message; these keep an inbox entry small).
MAX_VARIABLES = 20
MAX_VARIABLE_CHARS = 1024


@dataclass(frozen=True, slots=True)
class OutboundContent:
    """What a business-initiated message carries: free ``text``, or an approved template
    (``content_sid`` and its ``variables``). Exactly one of the two."""

    text: str | None = None
    content_sid: str | None = None
    variables: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_template(self) -> bool:
        return self.content_sid is not None

    def describe(self) -> str:
        """What the stored message shows of it (a template's text is rendered by WhatsApp)."""
        if self.content_sid is None:
            return self.text or ""
        shown = ", ".join(f"{k}={v}" for k, v in sorted(self.variables.items()))
        return f"[template {self.content_sid}{': ' + shown if shown else ''}]"

    def metadata(self) -> dict[str, Any]:
        if self.content_sid is None:
            return {}
        return {"content_sid": self.content_sid, "content_variables": dict(self.variables)}

    def message(self, origin: str, at: datetime) -> Message:
        """The outbound message an inbox entry carries to the drain: ``metadata.outreach``
        names its origin (``nudge``, ``conversation``), its id starts with it."""
        return Message(
            id=f"{origin}-{uuid.uuid4().hex}",
            content=self.describe(),
            message_type=MessageType.TEXT,
            direction=MessageDirection.OUTBOUND,
            timestamp=at,
            metadata={"outreach": origin, **self.metadata()},
        )

    @classmethod
    def from_metadata(cls, text: str, metadata: Mapping[str, Any]) -> OutboundContent:
        sid = metadata.get("content_sid")
        if isinstance(sid, str):
            raw = metadata.get("content_variables") or {}
            return cls(content_sid=sid, variables={str(k): str(v) for k, v in raw.items()})
        return cls(text=text)


def validated_content(
    text: str | None, content_sid: str | None, variables: Mapping[str, object] | None
) -> OutboundContent:
    """``OutboundContent`` from a request, or ``BadRequest`` naming the field at fault."""
    if (text is None) == (content_sid is None):
        raise BadRequest("content_sid: give exactly one of content_sid (a template) or text")
    if content_sid is None:
        if variables:
            raise BadRequest("variables: only a template (content_sid) takes variables")
        if not (text or "").strip():
            raise BadRequest("text: the message is empty")
        return OutboundContent(text=text)
    if not CONTENT_SID.match(content_sid):
        raise BadRequest("content_sid: a Twilio Content SID is HX and 32 hex digits")
    values = dict(variables or {})
    if len(values) > MAX_VARIABLES:
        raise BadRequest(f"variables: at most {MAX_VARIABLES}")
    for key, value in values.items():
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise BadRequest(f"variables.{key}: a string or a number")
        if not key or len(key) > 64 or len(str(value)) > MAX_VARIABLE_CHARS:
            raise BadRequest(f"variables.{key}: key 1-64 characters, value {MAX_VARIABLE_CHARS}")
    return OutboundContent(
        content_sid=content_sid, variables={k: str(v) for k, v in values.items()}
    )


def refusal(
    content: OutboundContent, *, last_inbound_ms: int | None, now: datetime, opted_out: bool
) -> WaSessionsError | None:
    """Why ``content`` may not be sent to the customer at ``now`` (None: it may): the phone
    opted out, or free text after the window closed (or with no inbound message at all)."""
    if opted_out:
        return OptedOut("the customer opted out (STOP); no business-initiated message is sent")
    if content.is_template:
        return None
    if last_inbound_ms is None:
        return OutsideWindow(
            "no message from the customer, so no 24-hour window is open; "
            "only approved templates (content_sid) may be sent"
        )
    closes = from_ms(last_inbound_ms) + CUSTOMER_SERVICE_WINDOW
    if now >= closes:
        return OutsideWindow(
            f"WhatsApp's 24-hour customer-service window closed at {closes.isoformat()}; "
            "only approved templates (content_sid) may be sent"
        )
    return None


#: Whole messages that opt a phone out, upper-cased and without accents or punctuation:
#: Twilio's own opt-out keywords and their usual words in the seven reply languages.
OPT_OUT_KEYWORDS = frozenset(
    {
        # Twilio's (English) opt-out keywords.
        "STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE",
        # es
        "PARAR", "ALTO", "BAJA", "DETENER", "CANCELAR",
        # pt
        "PARE", "SAIR", "DESCADASTRAR",
        # fr
        "ARRET", "ARRETER", "DESABONNER", "DESINSCRIRE",
        # de
        "STOPP", "ABMELDEN", "BEENDEN",
        # it
        "BASTA", "FERMA", "DISISCRIVIMI",
        # id
        "BERHENTI", "STOP LANGGANAN", "BERHENTI LANGGANAN",
    }
)  # fmt: skip


def is_opt_out(text: str) -> bool:
    """Whether a customer's whole message is an opt-out keyword ("stop", "Arrêt !", "PARAR")."""
    folded = unicodedata.normalize("NFKD", text.strip().upper())
    plain = "".join(c for c in folded if not unicodedata.combining(c))
    words = re.sub(r"[^A-Z ]+", " ", plain).split()
    return " ".join(words) in OPT_OUT_KEYWORDS
