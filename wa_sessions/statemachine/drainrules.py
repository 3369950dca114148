"""The drain's decisions as plain Python: how an inbox entry is read, where a batch stops, how the
sessions a drain opens are numbered, how pending-effect records are grouped, and which delivery
status a mapped reply keeps. The session rules on stored state (the lifecycle, storing a message,
ending a session, the active-session pointer) are in ``sessionrules``.

The Redis adapter's Lua (``scripts._CORE``, ``_DRAIN_STEP``, ``_INGEST``) makes the same
decisions atomically inside Redis; the in-memory store (``memory.InMemoryStore``) makes them with
these functions, and the drain property test (``tests/integration/test_drain_properties.py``)
holds the two implementations to the same outcomes. Nothing here knows of Redis.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from wa_sessions.statemachine.entries import EntryKind
from wa_sessions.statemachine.lifecycle import Trigger
from wa_sessions.statemachine.models import DELIVERY_RANK, MessageDirection, MessageType

#: Inbox entry kinds: a message, an operator's complete, expire, reply.
MESSAGE, COMPLETE, EXPIRE, OPERATOR_REPLY = (
    EntryKind.MESSAGE.value,
    EntryKind.COMPLETE.value,
    EntryKind.EXPIRE.value,
    EntryKind.OPERATOR_REPLY.value,
)

#: The session counter lives in the last four hex digits of a drain's id base.
SESSION_COUNTER_LIMIT = 0xFFFF

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
    if kind not in (MESSAGE, COMPLETE, EXPIRE, OPERATOR_REPLY):
        return None  # a kind nobody writes: dropped, never guessed at
    return InboxEntry(int(ts), kind, a, b, payload)


def head_accepted_ms(raw: str) -> int | None:
    """The acceptance time an entry starts with (the pending index's score), if any."""
    match = _HEAD_TS.match(raw)
    return int(match.group()) if match else None


def operation_trigger(kind: str) -> str:
    """The trigger an operator entry (a complete or an expire) fires."""
    return Trigger.COMPLETE.value if kind == COMPLETE else Trigger.EXPIRE.value


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


def rate_admits(rate_tat_ms: int, accepted_ms: int, per_minute: int) -> int | None:
    """The conversation's next theoretical arrival time when a message accepted at
    ``accepted_ms`` is within ``per_minute`` (GCRA: up to ``per_minute`` at once, then one per
    ``60000 // per_minute`` ms), or None when it is over: the ingest script's rule."""
    interval = 60_000 // per_minute
    tat = max(rate_tat_ms, accepted_ms)
    if tat - accepted_ms > 60_000 - interval:
        return None
    return tat + interval


def dedupe_buckets(accepted_ms: int, bucket_ms: int, dedupe_ttl_ms: int) -> range:
    """The dedupe buckets a message accepted at ``accepted_ms`` is looked up in (the newest is
    the one it is marked in)."""
    bucket = accepted_ms // bucket_ms
    return range(bucket - -(-dedupe_ttl_ms // bucket_ms), bucket + 1)
