"""The Redis adapter: the only module that talks to Redis about sessions and inboxes.

Every state change is one Lua script (``lua/*.lua``, loaded and encoded by ``scripts``: one
round trip, atomic). Reads are plain commands, pipelined where they need several keys. The
caller passes times in; the store never reads a clock.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import redis

from wa_sessions.statemachine.entries import (
    EntryKind,
    effect_record,
    encode_entry,
    entry_accepted_ms,
    message_entry,
    operation_entry,
    parse_effect_record,
)
from wa_sessions.statemachine.models import (
    Message,
    MessageDirection,
    MessageType,
    Session,
    SessionStatus,
)
from wa_sessions.statemachine.redis import scripts
from wa_sessions.statemachine.redis.keys import Keys, SessionField, SessionFieldPrefix
from wa_sessions.statemachine.steps import (
    DEDUPE_BUCKET_MS,
    ApplyResult,
    DrainPolicy,
    DrainStep,
    EffectMessage,
    EffectsCommit,
    EffectSession,
    EndedEvent,
    EntryResult,
    IngestOutcome,
    SessionEffects,
    from_ms,
    to_ms,
)


def _s(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


class RedisSessionStore:
    """Sessions, their messages and the per-conversation inboxes, stored in one Redis."""

    def __init__(self, client: redis.Redis, keys: Keys | None = None) -> None:
        self.client = _decoding(client)
        self.keys = keys or Keys()
        self._scripts = {
            name: self.client.register_script(source)
            for name, source in scripts.build(self.keys).items()
        }

    def _run(self, name: str, keys: Mapping[str, str | None] | None = None, **args: Any) -> Any:
        keys_, argv = scripts.call(name, keys or {}, **args)
        return self._scripts[name](keys=keys_, args=argv)

    # ---- sessions -------------------------------------------------------------------------

    def apply_message(
        self,
        conv: str,
        message: Message,
        *,
        ts_ms: int,
        now_ms: int,
        new_session_id: str,
        timeout_ms: int,
        cap: int,
        keep_ms: int,
        carry: Sequence[str] = (),
    ) -> ApplyResult:
        sid, created, expired = self._run(
            "apply_message",
            conv=conv,
            ts=ts_ms,
            now=now_ms,
            new_sid=new_session_id,
            timeout_ms=timeout_ms,
            cap=cap,
            keep_ms=keep_ms,
            direction=message.direction.value,
            message_type=message.message_type.value,
            message=message.model_dump_json(exclude_defaults=True),
            carry=list(carry),
        )
        return ApplyResult(_s(sid), bool(int(created)), _s(expired) or None)

    def create_session(
        self,
        conv: str,
        session_id: str,
        *,
        ts_ms: int,
        timeout_ms: int,
        keep_ms: int,
        initial_message: Message | None,
        context: dict[str, Any],
    ) -> tuple[bool, str]:
        """Opens a session unless the conversation has a live one: (created, session id)."""
        result = self._run(
            "create_session",
            conv=conv,
            sid=session_id,
            ts=ts_ms,
            timeout_ms=timeout_ms,
            keep_ms=keep_ms,
            initial=initial_message.model_dump_json(exclude_defaults=True)
            if initial_message
            else "",
            context={SessionFieldPrefix.CONTEXT + k: json.dumps(v) for k, v in context.items()},
        )
        return _s(result[0]) == "created", _s(result[1])

    def end_session(
        self, session_id: str, trigger: str, *, now_ms: int, keep_ms: int, reason: str
    ) -> tuple[str, str]:
        """Fires ``trigger`` atomically: (``ok``|``invalid``|``missing``, state)."""
        outcome, state = self._run(
            "end_session",
            sid=session_id,
            trigger=trigger,
            now=now_ms,
            keep_ms=keep_ms,
            reason=reason,
        )
        return _s(outcome), _s(state)

    def read_active(
        self, conv: str, *, now_ms: int, timeout_ms: int, keep_ms: int
    ) -> tuple[str | None, str | None]:
        sid, expired = self._run(
            "read_active", conv=conv, now=now_ms, timeout_ms=timeout_ms, keep_ms=keep_ms
        )
        return _s(sid) or None, _s(expired) or None

    def expire_if_idle(
        self, session_id: str, *, now_ms: int, timeout_ms: int, keep_ms: int
    ) -> bool:
        return bool(
            self._run(
                "expire_if_idle",
                sid=session_id,
                now=now_ms,
                timeout_ms=timeout_ms,
                keep_ms=keep_ms,
            )
        )

    def update_fields(
        self, session_id: str, set_fields: dict[str, str], delete_fields: Iterable[str]
    ) -> bool:
        return bool(
            self._run("update_fields", sid=session_id, set=set_fields, delete=list(delete_fields))
        )

    def expire_idle(
        self, *, now_ms: int, timeout_ms: int, keep_ms: int, limit: int, offset: int = 0
    ) -> tuple[list[str], int, int]:
        """One batch of the idle sweep: (expired ids, candidates examined, skipped)."""
        expired, examined, skipped = self._run(
            "expire_idle",
            now=now_ms,
            timeout_ms=timeout_ms,
            keep_ms=keep_ms,
            limit=limit,
            offset=offset,
        )
        return [_s(x) for x in expired], int(examined), int(skipped)

    def purge(self, *, cutoff_ms: int, limit: int) -> int:
        return int(self._run("purge", cutoff_ms=cutoff_ms, limit=limit))

    # Reads by session id: a session's keys carry its conversation's hash tag, so without
    # ``conv`` the conversation is looked up in ``idx:conv`` first (one more round trip).

    def conv_of(self, session_id: str) -> str | None:
        """The conversation of a session (None when unknown or purged)."""
        value = self.client.hget(self.keys.session_conv, session_id)
        return _s(value) if value is not None else None

    def status_of(self, session_id: str, *, conv: str | None = None) -> str | None:
        conv = conv or self.conv_of(session_id)
        if conv is None:
            return None
        value = self.client.hget(self.keys.session(conv, session_id), SessionField.STATUS)
        return _s(value) if value is not None else None

    def load(
        self,
        session_id: str,
        *,
        conv: str | None = None,
        include_messages: bool = True,
        message_limit: int | None = None,
    ) -> Session | None:
        conv = conv or self.conv_of(session_id)
        if conv is None:
            return None
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(self.keys.session(conv, session_id))
        if include_messages:
            start = -message_limit if message_limit else 0
            pipe.lrange(self.keys.session_messages(conv, session_id), start, -1)
        results = pipe.execute()
        fields = results[0]
        if not fields:
            return None
        raw_messages = results[1] if include_messages else []
        return session_from_hash(fields, raw_messages)

    def load_many(self, session_ids: Sequence[str]) -> list[Session]:
        if not session_ids:
            return []
        convs = self.client.hmget(self.keys.session_conv, list(session_ids))
        pipe = self.client.pipeline(transaction=False)
        for sid, conv in zip(session_ids, convs, strict=True):
            if conv is not None:
                pipe.hgetall(self.keys.session(_s(conv), sid))
        return [session_from_hash(f, []) for f in pipe.execute() if f]

    def messages(
        self, session_id: str, limit: int | None = None, *, conv: str | None = None
    ) -> list[Message]:
        conv = conv or self.conv_of(session_id)
        if conv is None:
            return []
        start = -limit if limit else 0
        raw = self.client.lrange(self.keys.session_messages(conv, session_id), start, -1)
        return [Message.model_validate_json(m) for m in cast(list[str], raw)]

    def messages_at(
        self, session_id: str, index: int, *, conv: str | None = None
    ) -> Message | None:
        conv = conv or self.conv_of(session_id)
        if conv is None:
            return None
        raw = self.client.lindex(self.keys.session_messages(conv, session_id), index)
        return Message.model_validate_json(cast(str, raw)) if raw else None

    def latest_session_id(self, conv: str) -> str | None:
        ids = self.client.zrevrange(self.keys.conv_sessions(conv), 0, 0)
        return _s(ids[0]) if ids else None

    def conversation_session_ids(self, conv: str) -> list[str]:
        return [_s(x) for x in self.client.zrange(self.keys.conv_sessions(conv), 0, -1)]

    def count_active(self) -> int:
        return int(self.client.zcard(self.keys.active))

    def page(self, index: str, *, offset: int, limit: int) -> tuple[list[str], int]:
        """Ids from an index zset, newest first, and the index's size."""
        pipe = self.client.pipeline(transaction=False)
        pipe.zrevrange(index, offset, offset + limit - 1)
        pipe.zcard(index)
        ids, total = pipe.execute()
        return [_s(x) for x in ids], int(total)

    # ---- inboxes --------------------------------------------------------------------------

    def ingest(
        self,
        conv: str,
        entry: str,
        *,
        message_sid: str,
        accepted_ms: int,
        dedupe_ttl_ms: int,
        max_depth: int,
        wake_ttl_ms: int,
    ) -> IngestOutcome:
        keys, args = ingest_call(
            self.keys,
            conv,
            entry,
            message_sid=message_sid,
            accepted_ms=accepted_ms,
            dedupe_ttl_ms=dedupe_ttl_ms,
            max_depth=max_depth,
            wake_ttl_ms=wake_ttl_ms,
        )
        return IngestOutcome(int(self._scripts["ingest"](keys=keys, args=args)))

    def push_operation(self, conv: str, entry: str, *, accepted_ms: int, wake_ttl_ms: int) -> bool:
        """Appends an operator entry; True when a drain wake-up must be enqueued."""
        k = self.keys
        result = self._run(
            "push_op",
            {
                "inbox": k.conv_inbox(conv),
                "wake": k.conv_wake(conv),
                "pending": k.pending,
                "wake_ttl": k.wake_ttl,
            },
            entry=entry,
            conv=conv,
            accepted_ms=accepted_ms,
            wake_ttl_ms=wake_ttl_ms,
        )
        return int(result) == 2

    def drain_step(
        self,
        conv: str,
        token: str,
        policy: DrainPolicy,
        *,
        acquire: bool,
        now_ms: int,
        id_base: str,
        commit: EffectsCommit | None = None,
    ) -> DrainStep:
        """One round trip of a drain (the ``drain_step`` script): takes the lease (``acquire``)
        or checks it, commits ``commit``, then hands out the pending records or applies the next
        batch of the inbox, or releases the lease when nothing is left. Sessions it opens get the
        ids that follow ``id_base`` (a random UUID, or the last id opened from it) in its last
        four hex digits."""
        keys, args = drain_step_call(
            self.keys,
            conv,
            token,
            policy,
            acquire=acquire,
            now_ms=now_ms,
            id_base=id_base,
            commit=commit,
        )
        return parse_drain_step(self._scripts["drain_step"](keys=keys, args=args))

    def extend_lease(self, conv: str, token: str, *, lease_ms: int) -> bool:
        """Lengthens the lease (before a slow call); False when it is no longer ours."""
        keys, args = extend_lease_call(self.keys, conv, token, lease_ms=lease_ms)
        return bool(int(self._scripts["extend_lease"](keys=keys, args=args)))

    def pending_effects(self, conv: str) -> list[str]:
        return [_s(x) for x in self.client.lrange(self.keys.conv_effects(conv), 0, -1)]

    def outbound(self, twilio_sid: str) -> dict[str, str]:
        """What is stored about one outbound Twilio message (its ``out:`` hash)."""
        return cast(dict[str, str], self.client.hgetall(self.keys.outbound(twilio_sid)))

    def redrive(self, *, wake_ttl_ms: int, limit: int, hold_ms: int = 30_000) -> list[str]:
        """Conversations to wake (marked woken); wake flags live ``wake_ttl_ms`` from now on,
        for ``hold_ms`` (then the lease period again)."""
        return [
            _s(x)
            for x in self._run("redrive", wake_ttl_ms=wake_ttl_ms, limit=limit, hold_ms=hold_ms)
        ]

    def inbox_depth(self, conv: str) -> int:
        return int(self.client.llen(self.keys.conv_inbox(conv)))

    def pending_summary(self) -> tuple[int, int | None]:
        """(conversations waiting, acceptance time of the oldest waiting entry in ms)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.zcard(self.keys.pending)
        pipe.zrange(self.keys.pending, 0, 0, withscores=True)
        count, oldest = pipe.execute()
        if not oldest:
            return int(count), None
        first = oldest[0]
        return int(count), int(float(first[1]))

    def pop_ended_events(self, limit: int = 1000) -> list[EndedEvent]:
        """Takes up to ``limit`` session-end events (each is handed to one caller only)."""
        raw = self.client.lpop(self.keys.ended_events, limit)
        events = []
        for item in cast(list[str], raw or []):
            status, duration_ms, count, reason = ([*_s(item).split(" ", 3), ""])[:4]
            events.append(EndedEvent(status, int(float(duration_ms)) / 1000, int(count), reason))
        return events

    def ping(self) -> bool:
        return bool(self.client.ping())


@dataclass(frozen=True, slots=True)
class QueuedWake:
    """A queue message the ingest script enqueues itself when the conversation needs a drain:
    ``HSET messages_key message_id data`` then ``RPUSH queue_key message_id`` (the layout of
    Dramatiq's Redis broker; the store knows nothing else about the queue)."""

    queue_key: str
    messages_key: str
    message_id: str
    data: bytes


def ingest_call(
    keys: Keys,
    conv: str,
    entry: str,
    *,
    message_sid: str,
    accepted_ms: int,
    dedupe_ttl_ms: int,
    max_depth: int,
    wake_ttl_ms: int,
    wake: QueuedWake | None = None,
) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of the ingest script, shared by the sync store and the async inbox."""
    return scripts.call(
        "ingest",
        {
            "inbox": keys.conv_inbox(conv),
            "wake": keys.conv_wake(conv),
            "pending": keys.pending,
            "wake_ttl": keys.wake_ttl,
            "queue": wake.queue_key if wake else None,
            "queue_messages": wake.messages_key if wake else None,
        },
        entry=entry,
        message_sid=message_sid,
        conv=conv,
        accepted_ms=accepted_ms,
        max_depth=max_depth,
        wake_ttl_ms=wake_ttl_ms,
        seen_prefix=keys.seen_prefix,
        bucket_ms=min(dedupe_ttl_ms, DEDUPE_BUCKET_MS),
        dedupe_ttl_ms=dedupe_ttl_ms,
        wake_id=wake.message_id if wake else None,
        wake_message=wake.data if wake else None,
    )


def extend_lease_call(
    keys: Keys, conv: str, token: str, *, lease_ms: int
) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of the lease extension, shared by the sync and the async store."""
    return scripts.call(
        "extend_lease", {"lease": keys.conv_lease(conv)}, token=token, lease_ms=lease_ms
    )


def drain_step_call(
    keys: Keys,
    conv: str,
    token: str,
    policy: DrainPolicy,
    *,
    acquire: bool,
    now_ms: int,
    id_base: str,
    commit: EffectsCommit | None = None,
) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of the drain step script, shared by the sync and the async store."""
    return scripts.call(
        "drain_step",
        {
            "lease": keys.conv_lease(conv),
            "wake": keys.conv_wake(conv),
            "inbox": keys.conv_inbox(conv),
            "pending": keys.pending,
            "effects": keys.conv_effects(conv),
        },
        acquire=acquire,
        token=token,
        lease_ms=policy.lease_ms,
        batch=policy.batch,
        conv=conv,
        now=now_ms,
        timeout_ms=policy.timeout_ms,
        cap=policy.cap,
        keep_ms=policy.keep_ms,
        effects=policy.effects,
        history=policy.history,
        id_base=id_base,
        carry=list(policy.carry),
        commit=_commit_argument(commit) if commit is not None else None,
    )


def _commit_argument(commit: EffectsCommit) -> dict[str, Any]:
    """The drain step's ``commit`` argument (JSON): records, sessions and their messages."""
    sessions = []
    for group in commit.sessions:
        session: dict[str, Any] = {
            "sid": group.session_id,
            "messages": [
                {
                    "direction": item.message.direction.value,
                    "type": item.message.message_type.value,
                    "ts": to_ms(item.message.timestamp),
                    "json": item.message.model_dump_json(exclude_defaults=True),
                    "id": item.message.id,
                    "twilio_sid": item.twilio_sid,
                    "status": item.delivery_status,
                }
                for item in group.messages
            ],
        }
        if group.order is not None:
            session["order"] = json.dumps(group.order)
        sessions.append(session)
    return {"records": list(commit.records), "at": commit.at.isoformat(), "sessions": sessions}


def parse_drain_step(reply: Any) -> DrainStep:
    """The drain step script's reply as a ``DrainStep``."""
    status = _s(reply[0])
    if status != "ok":
        return DrainStep.refused(status)
    _, released, committed, flat, records, sessions = reply
    return DrainStep(
        status,
        bool(released),
        [_s(x) for x in committed],
        [_entry_result(flat[i : i + 8]) for i in range(0, len(flat), 8)],
        [_s(x) for x in records],
        {
            _s(s[0]): EffectSession(
                session_id=_s(s[0]),
                status=_s(s[1]) if s[1] is not None else None,
                order_json=_s(s[2]) if s[2] is not None else None,
                last_inbound_ms=int(s[3]) if s[3] is not None else None,
                phone=_s(s[4]) if s[4] is not None else "",
                business=_s(s[5]) if s[5] is not None else "",
                tail=[x if isinstance(x, int) else _s(x) for x in s[6]],
            )
            for s in sessions
        },
    )


def _entry_result(item: Sequence[Any]) -> EntryResult:
    """One applied entry from the drain step's flat reply: status, kind, a, b, accepted_ms,
    session id, created, detail (``a``/``b`` named by kind here, once)."""
    status, kind, a, b, accepted_ms, sid, created, detail = item
    entry_kind = EntryKind(_s(kind))
    message = entry_kind is EntryKind.MESSAGE
    operation = not message and entry_kind is not EntryKind.MALFORMED
    return EntryResult(
        status=_s(status),
        kind=entry_kind,
        session_id=_s(sid),
        created=bool(created),
        detail=_s(detail),
        direction=_s(a) if message else "",
        message_type=_s(b) if message else "",
        target_session_id=_s(a) if operation else "",
        operation_id=_s(b) if operation else "",
        accepted_ms=int(accepted_ms),
    )


def _decoding(client: redis.Redis) -> redis.Redis:
    """The store works in ``str``; reuse a bytes client's connection settings with decoding on."""
    kwargs = client.get_connection_kwargs()
    if kwargs.get("decode_responses"):
        return client
    pool = client.connection_pool
    new_pool = pool.__class__(
        connection_class=pool.connection_class,
        max_connections=pool.max_connections,
        **{**kwargs, "decode_responses": True},
    )
    return redis.Redis(connection_pool=new_pool)


def session_from_hash(fields: dict[str, str], raw_messages: Sequence[str]) -> Session:
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
    )


def counts_by(session: Session, prefix: SessionFieldPrefix) -> dict[str, int]:
    """Message counts of one family (``BY_DIRECTION``, ``BY_TYPE``) by name."""
    return {
        name.removeprefix(prefix): n
        for name, n in session.counts.items()
        if name.startswith(prefix)
    }


__all__ = [
    "ApplyResult",
    "DrainPolicy",
    "DrainStep",
    "EffectMessage",
    "EffectSession",
    "EffectsCommit",
    "EntryKind",
    "EntryResult",
    "IngestOutcome",
    "MessageDirection",
    "MessageType",
    "QueuedWake",
    "RedisSessionStore",
    "SessionEffects",
    "SessionField",
    "SessionFieldPrefix",
    "drain_step_call",
    "effect_record",
    "encode_entry",
    "entry_accepted_ms",
    "extend_lease_call",
    "from_ms",
    "ingest_call",
    "message_entry",
    "operation_entry",
    "parse_drain_step",
    "parse_effect_record",
    "to_ms",
]
