"""Sessions, inboxes and drain leases in plain Python objects: the in-memory twin of the Redis
store (cosmicpython's ``FakeRepository``). Handler and effect tests run the production drain on
it without a Redis, and the drain property test runs the same rules against both.

Every decision is ``drainrules``'; this module only keeps the state the Lua keeps in Redis
(per conversation: the inbox, the effects list, the lease, the wake flag, the active-session
pointer; per session: its hash and message list; the pending index, dedupe markers, ``out:``
maps). Leases and wake flags expire on the injected clock (in Redis: on the server's own clock,
not on the ``now_ms`` the drain passes). Not kept: the global session indexes, retention
(ended sessions are never purged) and the expiry of dedupe markers (only their bucket window
counts, which is what Redis does as long as its clock does not pass the window).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from wa_sessions.statemachine import drainrules as rules
from wa_sessions.statemachine.drainrules import InboxEntry, SessionState
from wa_sessions.statemachine.entries import EntryKind
from wa_sessions.statemachine.lifecycle import Trigger
from wa_sessions.statemachine.models import Message, Session, SessionStatus
from wa_sessions.statemachine.steps import (
    DEDUPE_BUCKET_MS,
    DrainPolicy,
    DrainStep,
    EffectsCommit,
    EffectSession,
    EntryResult,
    IngestOutcome,
    SessionEffects,
    from_ms,
    to_ms,
)

if TYPE_CHECKING:
    from wa_sessions.statemachine.ports import DrainStore, IngestStore

_TIMEOUT_REASON = "timeout"


def _wall_ms() -> int:
    return int(time.time() * 1000)


def _lrange_head(items: Sequence[str], count: int) -> list[str]:
    """``LRANGE key 0 count-1`` (a count of 0 reads the whole list, as in Redis)."""
    end = count - 1
    if end < 0:
        end += len(items)
    return list(items[: end + 1])


@dataclass
class _Conversation:
    inbox: list[str] = field(default_factory=list)
    effects: list[str] = field(default_factory=list)
    active: str | None = None
    #: Session id -> created time (the ``sessions`` zset).
    sessions: dict[str, int] = field(default_factory=dict)
    lease: tuple[str, int] | None = None
    wake_until: int | None = None


class InMemoryStore:
    """The ``DrainStore`` and ``IngestStore`` roles and the reads tests need, in memory.

    ``clock`` (epoch ms) times leases and wake flags, like Redis' own clock; the drain's
    ``now_ms`` and the entries' acceptance times decide everything else."""

    def __init__(self, clock: Callable[[], int] = _wall_ms) -> None:
        self.clock = clock
        self.sessions: dict[str, SessionState] = {}
        self._convs: dict[str, _Conversation] = {}
        #: Conversation -> acceptance time of its oldest waiting entry (the pending index).
        self.pending: dict[str, int] = {}
        self._seen: dict[str, set[int]] = {}
        #: Twilio MessageSid -> the ``out:`` hash's fields.
        self.outbound: dict[str, dict[str, str]] = {}
        #: ``<status> <duration_ms> <message_count> <reason>`` per ended session.
        self.ended_events: list[str] = []

    def _conv(self, conv: str) -> _Conversation:
        found = self._convs.get(conv)
        if found is None:
            found = self._convs[conv] = _Conversation()
        return found

    # ---- the DrainStore role -------------------------------------------------------------

    async def drain_step(
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
        """One drain step with the Lua ``drain_step``'s semantics (no await inside: atomic)."""
        return self.drain_step_now(
            conv,
            token,
            policy,
            acquire=acquire,
            now_ms=now_ms,
            id_base=id_base,
            commit=commit,
        )

    def drain_step_now(
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
        c = self._conv(conv)
        if acquire:
            if self._lease_holder(c) is not None:
                return DrainStep.refused("busy")
            c.lease = (token, self.clock() + policy.lease_ms)
            c.wake_until = None
        elif self._lease_holder(c) != token:
            return DrainStep.refused("lease")
        committed: list[str] = []
        if commit is not None:
            done = list(commit.records)
            if done and _lrange_head(c.effects, len(done)) != done:
                return DrainStep.refused("head")
            committed = [self._commit_group(group, commit, policy) for group in commit.sessions]
            if done:
                del c.effects[: len(done)]

        pending = _lrange_head(c.effects, policy.batch)
        results: list[EntryResult] = []
        appended: dict[str, int] = {}
        applied = 0
        if not pending:
            counter = rules.SessionIdCounter.of(id_base)
            opened = 0
            since: int | None = None
            for raw in _lrange_head(c.inbox, policy.batch):
                entry = rules.parse_entry(raw)
                if rules.stops_before(since, entry, policy.timeout_ms):
                    break
                if entry is not None and entry.kind == rules.MESSAGE and counter.exhausted(opened):
                    break
                if entry is None:
                    result = EntryResult("bad", EntryKind.MALFORMED, detail="malformed entry")
                elif entry.kind == rules.MESSAGE:
                    result = self._apply_message(
                        conv, c, entry, counter.next_id(opened), now_ms, policy
                    )
                    opened += int(result.created)
                    appended[result.session_id] = appended.get(result.session_id, 0) + 1
                    if rules.queues_effects(policy.effects, entry.a, entry.b):
                        pending.append(rules.effect_record(result.session_id, entry.payload))
                    since = rules.advance_since(since, len(pending), entry.accepted_ms)
                else:
                    result = self._apply_operation(conv, c, entry, now_ms, policy)
                applied += 1
                results.append(result)
            del c.inbox[:applied]
            c.effects.extend(pending)

        released = False
        if not c.inbox and not pending:
            self.pending.pop(conv, None)
            c.lease = None
            c.wake_until = None
            released = True
        else:
            c.lease = (token, self.clock() + policy.lease_ms)
            if c.inbox and applied > 0 and conv in self.pending:
                head = rules.head_accepted_ms(c.inbox[0])
                if head is not None:
                    self.pending[conv] = head

        sessions: dict[str, EffectSession] = {}
        for group in rules.group_records(pending):
            session = self.sessions.get(group.session_id)
            own = appended.get(group.session_id, group.count)
            messages = session.messages if session is not None else []
            sessions[group.session_id] = EffectSession(
                session_id=group.session_id,
                status=session.status if session is not None else None,
                order_json=session.order_json if session is not None else None,
                last_inbound_ms=session.last_inbound_ms if session is not None else None,
                phone=session.phone if session is not None else "",
                business=session.business if session is not None else "",
                tail=rules.effect_tail(messages, policy.history, own, group.indexes),
            )
        return DrainStep("ok", released, committed, results, pending, sessions)

    async def extend_lease(self, conv: str, token: str, *, lease_ms: int) -> bool:
        c = self._conv(conv)
        if self._lease_holder(c) != token:
            return False
        c.lease = (token, self.clock() + lease_ms)
        return True

    async def status_of(self, conv: str, session_id: str) -> str | None:
        session = self.sessions.get(session_id)
        return session.status if session is not None else None

    async def extend_lease_and_read_status(
        self, conv: str, token: str, session_id: str, *, lease_ms: int
    ) -> tuple[bool, str | None]:
        return (
            await self.extend_lease(conv, token, lease_ms=lease_ms),
            await self.status_of(conv, session_id),
        )

    async def close(self) -> None:
        return None

    # ---- the IngestStore role ------------------------------------------------------------

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
        """The webhook's one round trip, as the Lua ``ingest``: dedupe, append, wake flag."""
        buckets = rules.dedupe_buckets(
            accepted_ms, min(dedupe_ttl_ms, DEDUPE_BUCKET_MS), dedupe_ttl_ms
        )
        seen = self._seen.setdefault(message_sid, set())
        if any(bucket in seen for bucket in buckets):
            return IngestOutcome.DUPLICATE
        c = self._conv(conv)
        if len(c.inbox) >= max_depth:
            return IngestOutcome.FULL
        seen.add(buckets[-1])
        c.inbox.append(entry)
        self.pending.setdefault(conv, accepted_ms)
        if not self._set_wake(c, wake_ttl_ms):
            return IngestOutcome.ACCEPTED
        return IngestOutcome.ACCEPTED_WAKE

    def push_operation(self, conv: str, entry: str, *, accepted_ms: int, wake_ttl_ms: int) -> bool:
        c = self._conv(conv)
        c.inbox.append(entry)
        self.pending.setdefault(conv, accepted_ms)
        return self._set_wake(c, wake_ttl_ms)

    # ---- the API's side -------------------------------------------------------------------

    def end_session(
        self, session_id: str, trigger: str, *, now_ms: int, reason: str
    ) -> tuple[str, str]:
        """Fires ``trigger`` at once, as the API does (``RedisSessionStore.end_session``):
        (``ok``|``invalid``|``missing``, state)."""
        session = self.sessions.get(session_id)
        ended, state = rules.end_session(session, trigger, now_ms, reason)
        if ended and session is not None:
            self._end(session, now_ms, reason)
            return "ok", state
        return ("missing", "") if state == "missing" else ("invalid", state)

    # ---- reads ---------------------------------------------------------------------------

    def load(self, session_id: str) -> Session | None:
        state = self.sessions.get(session_id)
        return to_session(state) if state is not None else None

    def latest_session_id(self, conv: str) -> str | None:
        ids = self.conversation_session_ids(conv)
        return ids[-1] if ids else None

    def conversation_session_ids(self, conv: str) -> list[str]:
        """Oldest first (by created time, then id, as a zset orders them)."""
        sessions = self._conv(conv).sessions
        return sorted(sessions, key=lambda sid: (sessions[sid], sid))

    def inbox_depth(self, conv: str) -> int:
        return len(self._conv(conv).inbox)

    def pending_effects(self, conv: str) -> list[str]:
        return list(self._conv(conv).effects)

    def lease_holder(self, conv: str) -> str | None:
        return self._lease_holder(self._conv(conv))

    # ---- applying ------------------------------------------------------------------------

    def _lease_holder(self, c: _Conversation) -> str | None:
        if c.lease is None or c.lease[1] <= self.clock():
            return None
        return c.lease[0]

    def _set_wake(self, c: _Conversation, wake_ttl_ms: int) -> bool:
        now = self.clock()
        if c.wake_until is not None and c.wake_until > now:
            return False
        c.wake_until = now + wake_ttl_ms
        return True

    def _end(self, session: SessionState, now_ms: int, reason: str) -> None:
        """What ending a session does beyond its own state: the ended event, the pointer."""
        self.ended_events.append(
            f"{session.status} {now_ms - session.created_ms} {session.count} {reason}"
        )
        c = self._conv(session.conv)
        if c.active == session.session_id:
            c.active = None

    def _apply_message(
        self,
        conv: str,
        c: _Conversation,
        entry: InboxEntry,
        new_sid: str,
        now_ms: int,
        policy: DrainPolicy,
    ) -> EntryResult:
        pointer = c.active
        current = self.sessions.get(pointer) if pointer is not None else None
        found = rules.find_active(pointer, current, entry.accepted_ms, policy.timeout_ms)
        expired = ""
        if found is rules.ActiveSession.STALE:
            c.active = None
        elif found is rules.ActiveSession.IDLE and current is not None:
            ended, _ = rules.end_session(current, Trigger.EXPIRE.value, now_ms, _TIMEOUT_REASON)
            if ended:
                self._end(current, now_ms, _TIMEOUT_REASON)
            expired = current.session_id
        if found is rules.ActiveSession.LIVE and current is not None:
            created = False
        else:
            current = self._open(conv, c, new_sid, entry.accepted_ms, policy.carry)
            created = True
        rules.append_message(
            current, entry.payload, entry.a, entry.b, entry.accepted_ms, policy.cap
        )
        return EntryResult(
            "ok",
            EntryKind(entry.kind),
            session_id=current.session_id,
            created=created,
            detail=expired,
            direction=entry.a,
            message_type=entry.b,
            accepted_ms=entry.accepted_ms,
        )

    def _open(
        self, conv: str, c: _Conversation, session_id: str, at_ms: int, carry: Sequence[str]
    ) -> SessionState:
        carried: dict[str, str] = {}
        if carry and c.sessions:
            previous = self.sessions.get(max(c.sessions, key=lambda sid: (c.sessions[sid], sid)))
            if previous is not None:
                carried = {
                    name: previous.context[name] for name in carry if name in previous.context
                }
        session = rules.open_session(conv, session_id, at_ms, carried)
        self.sessions[session_id] = session
        c.active = session_id
        c.sessions[session_id] = at_ms
        return session

    def _apply_operation(
        self, conv: str, c: _Conversation, entry: InboxEntry, now_ms: int, policy: DrainPolicy
    ) -> EntryResult:
        named = entry.a or c.active or ""
        owner = self.sessions[named].conv if named in self.sessions else None
        target = rules.operation_target(conv, entry.a, c.active, owner)
        session = self.sessions.get(target) if target else None
        detail, ended = rules.apply_operation(
            session,
            rules.operation_trigger(entry.kind),
            accepted_ms=entry.accepted_ms,
            now_ms=now_ms,
            timeout_ms=policy.timeout_ms,
            reason=entry.payload,
        )
        if ended and session is not None:
            self._end(session, now_ms, session.end_reason or "")
        return EntryResult(
            "ok",
            EntryKind(entry.kind),
            session_id=target,
            detail=detail,
            target_session_id=entry.a,
            operation_id=entry.b,
            accepted_ms=entry.accepted_ms,
        )

    def _commit_group(
        self, group: SessionEffects, commit: EffectsCommit, policy: DrainPolicy
    ) -> str:
        session = self.sessions.get(group.session_id)
        if session is None or not rules.can_receive(session.status):
            return "ended"
        if group.order is not None:
            session.order_json = json.dumps(group.order)
        for item in group.messages:
            message = item.message
            position = rules.append_message(
                session,
                message.model_dump_json(exclude_defaults=True),
                message.direction.value,
                message.message_type.value,
                to_ms(message.timestamp),
                policy.cap,
            )
            if item.twilio_sid:
                self._map_outbound(
                    item.twilio_sid, session, message.id, position, item.delivery_status, commit
                )
        return "ok"

    def _map_outbound(
        self,
        twilio_sid: str,
        session: SessionState,
        message_id: str,
        position: int,
        status: str,
        commit: EffectsCommit,
    ) -> None:
        out = self.outbound.setdefault(twilio_sid, {})
        stored_rank = int(out["rank"]) if "rank" in out else None
        out.update(sess=session.session_id, mid=message_id, pos=str(position))
        if rules.stored_status_wins(stored_rank, status):
            _set_delivery(
                session,
                position,
                message_id,
                out.get("status", ""),
                out.get("error_code", ""),
                commit.at.isoformat(),
            )
        else:
            out.update(status=status, rank=str(rules.delivery_rank(status)))


def _set_delivery(
    session: SessionState, position: int, message_id: str, status: str, code: str, at: str
) -> None:
    index = position - session.trimmed
    if index < 0 or index >= len(session.messages):
        return
    try:
        stored = json.loads(session.messages[index])
    except ValueError:
        return
    if not isinstance(stored, dict) or stored.get("id") != message_id:
        return
    if not isinstance(stored.get("metadata"), dict):
        stored["metadata"] = {}
    stored["metadata"]["delivery_status"] = status
    stored["metadata"]["delivery_updated_at"] = at
    if code:
        stored["metadata"]["error_code"] = code
    session.messages[index] = json.dumps(stored)


def to_session(state: SessionState) -> Session:
    """The session as the API shows it (what ``redis/session_hash.py`` builds from Redis)."""
    return Session(
        session_id=state.session_id,
        phone_number=state.phone,
        business_number=state.business,
        status=SessionStatus(state.status),
        created_at=from_ms(state.created_ms),
        last_activity=from_ms(state.last_ms),
        last_inbound_at=from_ms(state.last_inbound_ms) if state.last_inbound_ms else None,
        ended_at=from_ms(state.ended_ms) if state.ended_ms is not None else None,
        end_reason=state.end_reason or None,
        message_count=state.count,
        trimmed_count=state.trimmed,
        counts=dict(state.counts),
        messages=[Message.model_validate_json(raw) for raw in state.messages],
        context={name: json.loads(value) for name, value in state.context.items()},
        order_details=json.loads(state.order_json) if state.order_json else None,
    )


if TYPE_CHECKING:
    # The roles are protocols: mypy checks here that this store plays them.
    _as_drain_store: DrainStore = InMemoryStore()
    _as_ingest_store: IngestStore = InMemoryStore()
