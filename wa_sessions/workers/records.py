"""What a drained batch's effects leave behind, apart from how they run them: the extractor's
view of the session's history, the messages appended to the session (the reply, system notes),
the window and send steps automatic and operators' replies share, and the metrics counted once
the commit has succeeded."""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from wa_sessions.metrics import orders as metrics
from wa_sessions.metrics.languages import LANGUAGE_DETECTIONS, REPLIES_BY_LANGUAGE, language_label
from wa_sessions.metrics.outreach import BUSINESS_MESSAGES, NUDGES, OPT_OUTS
from wa_sessions.metrics.takeover import OPERATOR_REPLIES
from wa_sessions.replies.sender import OutboundSender, SendFailure, SendResult
from wa_sessions.retries import FailureReason
from wa_sessions.statemachine.models import (
    CUSTOMER_SERVICE_WINDOW,
    Message,
    MessageDirection,
    MessageType,
)
from wa_sessions.statemachine.steps import EffectMessage, from_ms

log = logging.getLogger(__name__)

_children: dict[tuple[int, tuple[str, ...]], Any] = {}


def labelled(metric: Any, *labels: str) -> Any:
    """``metric.labels(*labels)``, remembered: ``labels`` validates and locks on every call, and
    the drain counts a handful of series for every batch."""
    key = (id(metric), labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


@dataclass
class SessionCounts:
    """One session's metrics, counted once its commit has succeeded (a re-run after a crash
    must not count twice), each counter once per batch."""

    extractions: Counter[str] = field(default_factory=Counter)
    seconds: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    orders_changed: int = 0
    replies: Counter[str] = field(default_factory=Counter)
    operator_replies: Counter[str] = field(default_factory=Counter)
    #: Detected language (or None) per customer message, and the reply's language if one left.
    detections: Counter[str | None] = field(default_factory=Counter)
    reply_language: str | None = None
    #: The customer sent STOP in this batch.
    opted_out: bool = False
    #: Business-initiated messages by (origin, outcome).
    outreach: Counter[tuple[str, str]] = field(default_factory=Counter)

    def count(self, extractor: str, sender: str) -> None:
        name = extractor
        if self.opted_out:
            OPT_OUTS.inc()
        for language, n in self.detections.items():
            labelled(LANGUAGE_DETECTIONS, language_label(language)).inc(n)
        if self.reply_language is not None:
            labelled(REPLIES_BY_LANGUAGE, language_label(self.reply_language)).inc()
        for outcome, n in self.extractions.items():
            labelled(metrics.EXTRACTIONS, name, outcome).inc(n)
        if self.seconds:
            latency = labelled(metrics.EXTRACTION_LATENCY, name)
            for seconds in self.seconds:
                latency.observe(seconds)
        for reason, n in self.failures.items():
            labelled(metrics.EXTRACTION_FAILURES, reason).inc(n)
        if self.orders_changed:
            metrics.ORDERS_EXTRACTED.inc(self.orders_changed)
        for outcome, n in self.replies.items():
            labelled(metrics.REPLIES, sender, outcome).inc(n)

    def count_operator_replies(self) -> None:
        for outcome, n in self.operator_replies.items():
            labelled(OPERATOR_REPLIES, outcome).inc(n)
        for (origin, outcome), n in self.outreach.items():
            labelled(NUDGES if origin == "nudge" else BUSINESS_MESSAGES, outcome).inc(n)


class History:
    """Each record's history for the extractor: the session's messages before it, at most
    ``limit``, from the tail the drain step returned (older messages as stored JSON, the batch's
    own as record indexes), parsed only when asked for."""

    def __init__(self, tail: list[str | int], messages: list[tuple[int, Message]], limit: int):
        self.limit = limit
        self.tail = tail if limit > 0 else []
        self.own = dict(messages)
        self.parsed: list[Message | None] = [None] * len(self.tail)

    def _message(self, position: int) -> Message | None:
        item = self.tail[position]
        if isinstance(item, int):
            return self.own.get(item)
        found = self.parsed[position]
        if found is None:
            found = self.parsed[position] = Message.model_validate_json(item)
        return found

    def before(self, index: int) -> list[Message]:
        if not self.tail:
            return []
        # Everything before the record's own message (or, if that has been trimmed away, every
        # stored message and the records before it).
        end = next((p for p, item in enumerate(self.tail) if item == index), len(self.tail))
        positions = [
            p for p in range(end) if not isinstance(self.tail[p], int) or int(self.tail[p]) < index
        ][-self.limit :]
        return [m for p in positions if (m := self._message(p)) is not None]


def covers(ids: list[str]) -> dict[str, Any]:
    """Metadata naming the messages a reply (or a note about it) answers (none: an operator's
    reply answers no one message)."""
    if not ids:
        return {}
    if len(ids) == 1:
        return {"in_reply_to": ids[0]}
    return {"in_reply_to": ids[-1], "replies_to": ids}


def system_note(at: datetime, content: str, **metadata: Any) -> EffectMessage:
    return EffectMessage(
        Message(
            id=f"sys-{uuid.uuid4().hex}",
            content=content,
            message_type=MessageType.SYSTEM,
            direction=MessageDirection.OUTBOUND,
            timestamp=at,
            metadata={k: v for k, v in metadata.items() if v is not None},
        )
    )


def window_closed_at(last_inbound_ms: int | None, now: datetime) -> datetime | None:
    """When WhatsApp's 24-hour window closed, if it is closed at ``now`` (the epoch when no
    inbound message is known); None while a free-form reply may still be sent."""
    if last_inbound_ms is None:
        return from_ms(0)
    closes = from_ms(last_inbound_ms) + CUSTOMER_SERVICE_WINDOW
    return closes if now >= closes else None


def failure_note(at: datetime, what: str, sent: SendFailure, **metadata: Any) -> EffectMessage:
    """The system note about a send that failed (``what``: "Reply", "Operator reply ...")."""
    code = f", error {sent.code}" if sent.code else ""
    return system_note(
        at,
        f"{what} failed ({sent.reason.value}{code}, {sent.attempts} attempt(s)): {sent.detail}.",
        event="reply_failed",
        reason=sent.reason.value,
        error_code=sent.code,
        attempts=sent.attempts,
        **metadata,
    )


async def send_reply(
    sender: OutboundSender, *, to: str, from_: str, body: str
) -> SendResult | SendFailure:
    """``sender.send``; a sender bug becomes a failure, not a wedged phone."""
    try:
        return await sender.send(to=to, from_=from_, body=body)
    except Exception as exc:
        log.exception("reply sender %s raised", sender.name)
        return SendFailure(FailureReason.OTHER, f"sender error: {type(exc).__name__}")


def outbound_record(
    at: datetime,
    body: str,
    sender: str,
    sent: SendResult,
    ids: list[str],
    *,
    message_id: str | None = None,
    **extra: Any,
) -> EffectMessage:
    """The stored reply (``extra``: more metadata, e.g. the operator who wrote it)."""
    metadata: dict[str, Any] = {
        "sender": sender,
        "sent": sent.sent,
        "delivery_status": sent.status,
        **covers(ids),
        **extra,
    }
    if sent.sid:
        metadata["twilio_sid"] = sent.sid
    return EffectMessage(
        Message(
            id=sent.sid or message_id or f"out-{uuid.uuid4().hex}",
            content=body,
            message_type=MessageType.TEXT,
            direction=MessageDirection.OUTBOUND,
            timestamp=at,
            metadata=metadata,
        ),
        twilio_sid=sent.sid or "",
        delivery_status=sent.status,
    )
