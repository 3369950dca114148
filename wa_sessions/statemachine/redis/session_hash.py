"""A session as its Redis hash stores it: the ``Session`` read back from the hash's fields, and
the message counts the hash keeps by direction and by type."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from wa_sessions.statemachine.models import Message, Session, SessionStatus
from wa_sessions.statemachine.redis.keys import SessionField, SessionFieldPrefix
from wa_sessions.statemachine.steps import from_ms


def session_from_hash(fields: dict[str, str], raw_messages: Sequence[str]) -> Session:
    """The ``Session`` of a session hash's fields and its stored messages (oldest first)."""
    f = SessionField
    context: dict[str, Any] = {}
    counts: dict[str, int] = {}
    for name, value in fields.items():
        if name.startswith(SessionFieldPrefix.CONTEXT):
            context[name.removeprefix(SessionFieldPrefix.CONTEXT)] = json.loads(value)
        elif name.startswith((SessionFieldPrefix.BY_DIRECTION, SessionFieldPrefix.BY_TYPE)):
            counts[name] = int(value)
    order = fields.get(f.ORDER)
    last_in = fields.get(f.LAST_INBOUND)
    ended = fields.get(f.ENDED)
    taken_at = fields.get(f.TAKEN_OVER_AT)
    return Session(
        session_id=fields[f.SESSION_ID],
        phone_number=fields[f.PHONE],
        business_number=fields[f.BUSINESS],
        status=SessionStatus(fields[f.STATUS]),
        created_at=from_ms(fields[f.CREATED]),
        last_activity=from_ms(fields[f.LAST_ACTIVITY]),
        last_inbound_at=from_ms(last_in) if last_in else None,
        ended_at=from_ms(ended) if ended else None,
        end_reason=fields.get(f.END_REASON) or None,
        message_count=int(fields.get(f.MESSAGE_COUNT, 0)),
        trimmed_count=int(fields.get(f.TRIMMED, 0)),
        counts=counts,
        messages=[Message.model_validate_json(m) for m in raw_messages],
        context=context,
        order_details=json.loads(order) if order else None,
        taken_over_by=fields.get(f.TAKEN_OVER_BY) or None,
        taken_over_at=from_ms(taken_at) if taken_at else None,
        flow=fields.get(f.FLOW) or None,
        flow_step=fields.get(f.FLOW_STEP) or None,
    )


def counts_by(session: Session, prefix: SessionFieldPrefix) -> dict[str, int]:
    """Message counts of one family (``BY_DIRECTION``, ``BY_TYPE``) by name."""
    return {
        name.removeprefix(prefix): n
        for name, n in session.counts.items()
        if name.startswith(prefix)
    }
