"""The drain's decisions as plain Python: what applying one inbox entry does to a conversation's
sessions, where a batch stops, how the sessions a drain opens are numbered, what storing a
message does to its session, and which delivery status a mapped reply keeps.

The Redis adapter's Lua (``scripts._CORE``, ``_DRAIN_STEP``, ``_INGEST``) makes the same
decisions atomically inside Redis; the in-memory store (``memory.InMemoryStore``) makes them with
these functions, and the drain property test (``tests/integration/test_drain_properties.py``)
holds the two implementations to the same outcomes. Nothing here knows of Redis.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from wa_sessions.statemachine.entries import EntryKind
from wa_sessions.statemachine.lifecycle import Trigger, transition_table
from wa_sessions.statemachine.models import DELIVERY_RANK, MessageDirection, MessageType

#: Inbox entry kinds: a message, an operator's complete, an operator's expire.
MESSAGE, COMPLETE, EXPIRE = (
    EntryKind.MESSAGE.value,
    EntryKind.COMPLETE.value,
    EntryKind.EXPIRE.value,
)

#: The session counter lives in the last four hex digits of a drain's id base.
SESSION_COUNTER_LIMIT = 0xFFFF

_TABLE = transition_table()
_ACTIVE = "active"
# Lua's pattern '^(%d+)\t(%a)\t([^\t]*)\t([^\t]*)\t(.*)$': ASCII digits, one ASCII letter, and a
# payload that may hold anything (newlines and tabs included).
_ENTRY = re.compile(r"([0-9]+)\t([A-Za-z])\t([^\t]*)\t([^\t]*)\t(.*)", re.DOTALL)
_HEAD_TS = re.compile(r"[0-9]+")


@dataclass(frozen=True, slots=True)
class InboxEntry:
    """One parsed inbox entry: a message (a = direction, b = type, payload = message JSON) or an
    operation (a = session id or empty for the active one, b = op id, payload = reason)."""

    accepted_ms: int
    kind: str
    a: str
    b: str
    payload: str


def parse_entry(raw: str) -> InboxEntry | None:
    """The entry, or None when it is malformed (the drain drops it as ``bad``)."""
    match = _ENTRY.fullmatch(raw)
    if match is None:
        return None
    ts, kind, a, b, payload = match.groups()
    if kind not in (MESSAGE, COMPLETE, EXPIRE):
        return None  # a kind nobody writes: dropped, never guessed at
    return InboxEntry(int(ts), kind, a, b, payload)


def head_accepted_ms(raw: str) -> int | None:
    """The acceptance time an entry starts with (the pending index's score), if any."""
    match = _HEAD_TS.match(raw)
    return int(match.group()) if match else None


def operation_trigger(kind: str) -> str:
    """The trigger an operator entry (a complete or an expire) fires."""
    return Trigger.COMPLETE.value if kind == COMPLETE else Trigger.EXPIRE.value


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
    session: SessionState, raw: str, direction: str, message_type: str, at_ms: int, cap: int
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
    if at_ms > session.last_ms:
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


def queues_effects(effects: bool, direction: str, message_type: str) -> bool:
    """Whether applying a message queues its effects (order extraction, reply)."""
    return (
        effects
        and direction == MessageDirection.INBOUND.value
        and message_type in (MessageType.TEXT.value, MessageType.IMAGE.value)
    )


# ---- batches -------------------------------------------------------------------------------


def stops_before(since_ms: int | None, entry: InboxEntry | None, timeout_ms: int) -> bool:
    """Whether a batch that has queued effects stops before ``entry``: ``since_ms`` is the
    latest message time since the batch's first record (None: no record yet). It stops before
    an operator entry (or a malformed one) and before a message accepted a timeout or more
    after it, so the records' effects find their session still active."""
    if since_ms is None:
        return False
    return entry is None or entry.kind != MESSAGE or entry.accepted_ms - since_ms >= timeout_ms


def advance_since(since_ms: int | None, records: int, accepted_ms: int) -> int | None:
    """``since_ms`` after applying a message accepted at ``accepted_ms`` with ``records`` pending
    in the batch."""
    if records > 0 and (since_ms is None or accepted_ms > since_ms):
        return accepted_ms
    return since_ms


@dataclass(frozen=True, slots=True)
class SessionIdCounter:
    """Sessions a drain opens get the ids that follow its id base in the base's last four hex
    digits; a batch stops before a message once the counter would pass ``ffff``."""

    prefix: str
    last: int

    @classmethod
    def of(cls, id_base: str) -> SessionIdCounter:
        return cls(id_base[:-4], int(id_base[-4:], 16))

    def exhausted(self, opened: int) -> bool:
        return self.last + opened >= SESSION_COUNTER_LIMIT

    def next_id(self, opened: int) -> str:
        """The id of the session opened after ``opened`` others in this step."""
        return f"{self.prefix}{self.last + opened + 1:04x}"


# ---- effects -------------------------------------------------------------------------------


def effect_record(session_id: str, payload: str) -> str:
    """A pending-effect record: the session id, a tab, the message JSON as the entry held it."""
    return f"{session_id}\t{payload}"


def split_record(record: str) -> tuple[str, str]:
    session_id, _, payload = record.partition("\t")
    return session_id, payload


@dataclass
class RecordGroup:
    """The pending records of one session: each record's message JSON -> its 1-based index in
    the records handed out (a later identical record wins), and how many there are."""

    session_id: str
    indexes: dict[str, int] = field(default_factory=dict)
    count: int = 0


def group_records(records: Sequence[str]) -> list[RecordGroup]:
    """The records' sessions in the order of their first record."""
    groups: dict[str, RecordGroup] = {}
    for index, record in enumerate(records, 1):
        session_id, payload = split_record(record)
        group = groups.setdefault(session_id, RecordGroup(session_id))
        group.indexes[payload] = index
        group.count += 1
    return list(groups.values())


def effect_tail(
    messages: Sequence[str], history: int, own: int, indexes: dict[str, int]
) -> list[str | int]:
    """The session's last ``history + own`` stored messages (``own``: those this step appended,
    or its records' count), a record's own message replaced by its index."""
    if history <= 0:
        return []
    n = history + own
    return [indexes.get(raw, raw) for raw in messages[-n:]]


# ---- delivery ------------------------------------------------------------------------------


def delivery_rank(status: str) -> int:
    """Unknown statuses rank 0."""
    return DELIVERY_RANK.get(status, 0)


def stored_status_wins(stored_rank: int | None, status: str) -> bool:
    """At commit, a status callback that arrived first and ranks at least as high as the status
    Twilio's create returned is written into the reply instead."""
    return stored_rank is not None and stored_rank >= delivery_rank(status)


# ---- inbox ---------------------------------------------------------------------------------


def dedupe_buckets(accepted_ms: int, bucket_ms: int, dedupe_ttl_ms: int) -> range:
    """The dedupe buckets a message accepted at ``accepted_ms`` is looked up in (the newest is
    the one it is marked in)."""
    bucket = accepted_ms // bucket_ms
    return range(bucket - -(-dedupe_ttl_ms // bucket_ms), bucket + 1)
