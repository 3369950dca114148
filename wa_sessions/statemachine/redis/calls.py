"""The calls of the scripts both the sync store and the async drain store run: their KEYS and ARGV
encoded from named values, and the drain step's reply decoded, in one place for both."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from wa_sessions.statemachine.entries import EntryKind
from wa_sessions.statemachine.redis import scripts
from wa_sessions.statemachine.redis.keys import Keys
from wa_sessions.statemachine.steps import (
    DEDUPE_BUCKET_MS,
    DrainPolicy,
    DrainStep,
    EffectMessage,
    EffectsCommit,
    EffectSession,
    EntryResult,
    to_ms,
)


def as_str(value: Any) -> str:
    """A Redis reply value as text (a bytes client's replies decoded)."""
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


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
    messages_per_minute: int = 0,
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
            "rate": keys.conv_rate(conv),
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
        rate_per_minute=messages_per_minute,
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
                    "passive": item.passive,
                    **_failure(item),
                }
                for item in group.messages
            ],
            "waits": list(group.reply_waits_ms),
        }
        if group.order is not None:
            session["order"] = json.dumps(group.order)
        if group.context:
            session["context"] = {name: json.dumps(v) for name, v in group.context.items()}
        if group.flow is not None:
            session["flow"], session["flow_step"] = group.flow
        if group.complete:
            session["complete"] = True
        if group.opt_out:
            session["opt_out"] = True
        sessions.append(session)
    return {"records": list(commit.records), "at": commit.at.isoformat(), "sessions": sessions}


def _failure(item: EffectMessage) -> dict[str, str]:
    """A failure note's ``message.failed`` outbox event data (JSON text), else nothing."""
    meta = item.message.metadata
    if meta.get("event") != "reply_failed":
        return {}
    data = {
        "message_id": item.message.id,
        "in_reply_to": meta.get("in_reply_to"),
        "reason": meta.get("reason"),
        "error_code": meta.get("error_code"),
    }
    return {"failed": json.dumps(data, separators=(",", ":"))}


def parse_drain_step(reply: Any) -> DrainStep:
    """The drain step script's reply as a ``DrainStep``."""
    status = as_str(reply[0])
    if status != "ok":
        return DrainStep.refused(status)
    _, released, committed, flat, records, sessions = reply
    return DrainStep(
        status,
        bool(released),
        [as_str(x) for x in committed],
        [_entry_result(flat[i : i + 8]) for i in range(0, len(flat), 8)],
        [as_str(x) for x in records],
        {
            as_str(s[0]): EffectSession(
                session_id=as_str(s[0]),
                status=as_str(s[1]) if s[1] is not None else None,
                order_json=as_str(s[2]) if s[2] is not None else None,
                last_inbound_ms=int(s[3]) if s[3] is not None else None,
                phone=as_str(s[4]) if s[4] is not None else "",
                business=as_str(s[5]) if s[5] is not None else "",
                tail=[x if isinstance(x, int) else as_str(x) for x in s[6]],
                taken_over_by=as_str(s[7]) if len(s) > 7 and s[7] is not None else None,
                language=_json_str(s[8]) if len(s) > 8 else None,
                language_candidate=_json_str(s[9]) if len(s) > 9 else None,
                language_override=as_str(s[10]) if len(s) > 10 and s[10] is not None else None,
                flow=as_str(s[11]) if len(s) > 11 and s[11] is not None else None,
                flow_step=as_str(s[12]) if len(s) > 12 and s[12] is not None else None,
            )
            for s in sessions
        },
    )


def _entry_result(item: Sequence[Any]) -> EntryResult:
    """One applied entry from the drain step's flat reply: status, kind, a, b, accepted_ms,
    session id, created, detail (``a``/``b`` named by kind here, once)."""
    status, kind, a, b, accepted_ms, sid, created, detail = item
    entry_kind = EntryKind(as_str(kind))
    message = entry_kind is EntryKind.MESSAGE
    operation = not message and entry_kind is not EntryKind.MALFORMED
    return EntryResult(
        status=as_str(status),
        kind=entry_kind,
        session_id=as_str(sid),
        created=bool(created),
        detail=as_str(detail),
        direction=as_str(a) if message else "",
        message_type=as_str(b) if message else "",
        target_session_id=as_str(a) if operation else "",
        operation_id=as_str(b) if operation else "",
        accepted_ms=int(accepted_ms),
    )


def _json_str(raw: Any) -> str | None:
    """A context key's JSON value when it is a string, else None (absent, null, other)."""
    if raw is None:
        return None
    try:
        value = json.loads(as_str(raw))
    except ValueError:
        return None
    return value if isinstance(value, str) else None
