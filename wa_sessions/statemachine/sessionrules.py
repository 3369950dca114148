"""The session rules on stored state, as plain Python: the lifecycle on a session's stored
status, what storing a message does to its session, ending a session, and what a message or an
operator's entry finds behind the conversation's active-session pointer. The drain's other
decisions (entries, batches, records, delivery) are in ``drainrules``; the Lua makes the same
ones inside Redis. Nothing here knows of Redis.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from wa_sessions.statemachine.lifecycle import Trigger, transition_table
from wa_sessions.statemachine.models import MessageDirection

_TABLE = transition_table()
_ACTIVE = "active"


# ---- the lifecycle on stored state ---------------------------------------------------------


def can_receive(status: str | None) -> bool:
    """Whether a session in ``status`` takes another message (the lifecycle's ``receive``)."""
    return _TABLE.get((str(status), Trigger.RECEIVE.value)) == _ACTIVE


def end_state(status: str | None, trigger: str) -> str | None:
    """Where ``trigger`` takes a session in ``status``; None when it does not end it."""
    dest = _TABLE.get((str(status), trigger))
    return None if dest is None or dest == _ACTIVE else dest


def idle(last_ms: int, at_ms: int, timeout_ms: int) -> bool:
    """A session whose last activity is ``timeout_ms`` or more before ``at_ms`` has timed out."""
    return last_ms + timeout_ms <= at_ms


@dataclass
class SessionState:
    """One session as the store keeps it: what the Lua keeps in the session's hash (``count``,
    ``n:<direction>`` and ``t:<type>`` in ``counts``, raw ``ctx:`` JSON in ``context``) and its
    message list (stored JSON, oldest first; ``trimmed`` older ones dropped by the cap)."""

    session_id: str
    conv: str
    phone: str
    business: str
    status: str
    created_ms: int
    last_ms: int
    count: int = 0
    last_inbound_ms: int | None = None
    trimmed: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    order_json: str | None = None
    ended_ms: int | None = None
    end_reason: str | None = None
    context: dict[str, str] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)
    #: The operator holding the session, and when it was last handed back (``takeover.lua``).
    taken_over_by: str | None = None
    handed_back_ms: int | None = None
    #: The conversation template it follows and its current step (``flow``, ``flow_step``).
    flow: str | None = None
    flow_step: str | None = None


def auto_reply(session: SessionState, accepted_ms: int) -> bool:
    """Whether a customer's message accepted at ``accepted_ms`` gets effects (extraction, an
    automatic reply): not while an operator holds the session, nor for one accepted before its
    last hand-back."""
    if session.taken_over_by is not None:
        return False
    return session.handed_back_ms is None or accepted_ms >= session.handed_back_ms


def reply_outcome(session: SessionState | None, effects: bool) -> str:
    """What applying an operator's reply to ``session`` does: ``queued`` (an effect record),
    ``missing``, ``invalid:<state>`` for an ended session, ``dropped`` with effects off."""
    if session is None:
        return "missing"
    if session.status != _ACTIVE:
        return f"invalid:{session.status}"
    return "queued" if effects else "dropped"


class CannotReceive(Exception):
    """A message was appended to a session that does not take messages (the Lua's error reply:
    ``cannot receive in state <status>``)."""


def open_session(
    conv: str, session_id: str, at_ms: int, carried: dict[str, str] | None = None
) -> SessionState:
    """A new active session of ``conv`` opened by a message accepted at ``at_ms``."""
    phone, _, business = conv.partition("|")
    return SessionState(
        session_id=session_id,
        conv=conv,
        phone=phone,
        business=business,
        status=_ACTIVE,
        created_ms=at_ms,
        last_ms=at_ms,
        context=dict(carried or {}),
    )


def append_message(
    session: SessionState,
    raw: str,
    direction: str,
    message_type: str,
    at_ms: int,
    cap: int,
    passive: bool = False,
) -> int:
    """Stores a message (JSON) at the end of the session's history, trimming the oldest past
    ``cap``, and counts it. Returns its absolute position (trimmed messages included)."""
    if not can_receive(session.status):
        raise CannotReceive(f"cannot receive in state {session.status}")
    session.messages.append(raw)
    n = len(session.messages)
    position = session.trimmed + n - 1
    if n > cap:
        del session.messages[: n - cap]
        session.trimmed += n - cap
    session.count += 1
    for name in (f"n:{direction}", f"t:{message_type}"):
        session.counts[name] = session.counts.get(name, 0) + 1
    if at_ms > session.last_ms and not passive:
        session.last_ms = at_ms
    if direction == MessageDirection.INBOUND.value and at_ms > (session.last_inbound_ms or 0):
        session.last_inbound_ms = at_ms
    return position


def end_session(
    session: SessionState | None, trigger: str, now_ms: int, reason: str
) -> tuple[bool, str]:
    """Fires ``trigger`` if the lifecycle allows it: (ended, the state after, or the state it
    stays in; ``missing`` without a session)."""
    if session is None:
        return False, "missing"
    dest = end_state(session.status, trigger)
    if dest is None:
        return False, session.status
    session.status = dest
    session.ended_ms = now_ms
    session.end_reason = reason
    session.taken_over_by = None
    return True, dest


# ---- applying an entry ---------------------------------------------------------------------


class ActiveSession(StrEnum):
    """What a message finds behind the conversation's active-session pointer."""

    #: No pointer: the message opens a session.
    NONE = "none"
    #: The pointer names a session that is not active (or gone): it is dropped, a session opens.
    STALE = "stale"
    #: Active but idle past the timeout at the message's acceptance time: it expires first
    #: (reason ``timeout``), then a session opens.
    IDLE = "idle"
    #: The message continues it.
    LIVE = "live"


def find_active(
    pointer: str | None, session: SessionState | None, at_ms: int, timeout_ms: int
) -> ActiveSession:
    """Classifies the conversation's active session (``pointer`` and the session it names) for
    a message accepted at ``at_ms``."""
    if pointer is None:
        return ActiveSession.NONE
    if session is None or session.status != _ACTIVE:
        return ActiveSession.STALE
    if idle(session.last_ms, at_ms, timeout_ms):
        return ActiveSession.IDLE
    return ActiveSession.LIVE


def operation_target(conv: str, named: str, active: str | None, owner: str | None) -> str:
    """The session an operator entry acts on: the one it names, else the active one; '' when
    there is none or it belongs to another conversation (``owner``: the named-or-active
    session's conversation, None when it is gone)."""
    target = named or active or ""
    if target and owner != conv:
        return ""
    return target


def apply_operation(
    session: SessionState | None,
    trigger: str,
    *,
    accepted_ms: int,
    now_ms: int,
    timeout_ms: int,
    reason: str,
) -> tuple[str, bool]:
    """Applies an operator's complete or expire to its target (None: ``missing``): (the outcome
    the drain reports, whether the session ended). A session idle past the timeout when the
    operator asked has already expired: it ends as ``expired`` (reason ``timeout``) and the
    operation reports ``invalid:expired``. Otherwise ``completed``/``expired``, or
    ``invalid:<state>`` when the lifecycle refuses."""
    if session is None:
        return "missing", False
    if session.status == _ACTIVE and idle(session.last_ms, accepted_ms, timeout_ms):
        end_session(session, Trigger.EXPIRE.value, now_ms, "timeout")
        return "invalid:expired", True
    ended, state = end_session(session, trigger, now_ms, reason)
    return (state if ended else f"invalid:{state}"), ended
