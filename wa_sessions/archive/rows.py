"""A ``Session`` as archive rows and back: the one place that maps between the domain's model
and the tables, for the writer and the reader alike."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from wa_sessions.archive.models import ArchivedDelivery, ArchivedMessage, ArchivedSession
from wa_sessions.statemachine.models import (
    Message,
    MessageDirection,
    MessageType,
    Session,
    SessionStatus,
)


def session_row(session: Session, outbox_id: str, now: datetime) -> dict[str, Any]:
    end = session.ended_at or now
    return {
        "session_id": session.session_id,
        "phone_number": session.phone_number,
        "business_number": session.business_number,
        "status": session.status.value,
        "created_at": session.created_at,
        "last_activity": session.last_activity,
        "last_inbound_at": session.last_inbound_at,
        "ended_at": session.ended_at,
        "end_reason": session.end_reason,
        "message_count": session.message_count,
        "trimmed_count": session.trimmed_count,
        "order_details": session.order_details,
        "context": session.context,
        "analysis": {
            "counts": session.counts,
            "duration_seconds": max(0.0, (end - session.created_at).total_seconds()),
        },
        "outbox_id": outbox_id,
        "archived_at": now,
    }


def message_rows(session: Session) -> list[dict[str, Any]]:
    return [
        {
            "session_id": session.session_id,
            "message_id": m.id,
            "position": session.trimmed_count + i,
            "direction": m.direction.value,
            "message_type": m.message_type.value,
            "content": m.content,
            "timestamp": m.timestamp,
            "meta": m.metadata,
        }
        for i, m in enumerate(session.messages)
    ]


def delivery_rows(session: Session) -> list[dict[str, Any]]:
    """The delivery status of each outbound reply that has one (a note has none)."""
    rows = []
    for m in session.messages:
        status = m.metadata.get("delivery_status")
        if m.direction is MessageDirection.OUTBOUND and isinstance(status, str):
            code = m.metadata.get("error_code")
            rows.append(
                {
                    "session_id": session.session_id,
                    "message_id": m.id,
                    "twilio_sid": m.metadata.get("twilio_sid"),
                    "status": status,
                    "error_code": str(code) if code is not None else None,
                    "updated_at": m.metadata.get("delivery_updated_at"),
                }
            )
    return rows


def _utc(value: datetime | None) -> datetime | None:
    """SQLite gives naive datetimes back: they were written in UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def as_message(row: ArchivedMessage) -> Message:
    return Message(
        id=row.message_id,
        content=row.content,
        message_type=MessageType(row.message_type),
        direction=MessageDirection(row.direction),
        timestamp=_utc(row.timestamp) or row.timestamp,
        metadata=row.meta or {},
    )


def as_session(row: ArchivedSession, messages: list[Message] | None = None) -> Session:
    counts = (row.analysis or {}).get("counts") or {}
    return Session(
        session_id=row.session_id,
        phone_number=row.phone_number,
        business_number=row.business_number,
        status=SessionStatus(row.status),
        created_at=_utc(row.created_at) or row.created_at,
        last_activity=_utc(row.last_activity) or row.last_activity,
        last_inbound_at=_utc(row.last_inbound_at),
        ended_at=_utc(row.ended_at),
        end_reason=row.end_reason,
        message_count=row.message_count,
        trimmed_count=row.trimmed_count,
        counts={k: int(v) for k, v in counts.items()},
        messages=messages or [],
        context=row.context or {},
        order_details=row.order_details,
    )


__all__ = ["ArchivedDelivery", "as_message", "as_session", "delivery_rows", "message_rows"]
