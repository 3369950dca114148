"""Sessions, inboxes and drain leases in plain Python objects: the in-memory twin of the Redis
store (cosmicpython's ``FakeRepository``). Handler and effect tests run the production drain on
it without a Redis, and the drain property test runs the same rules against both.

Every decision is ``drainrules``' or ``sessionrules``'; these modules only keep the state the Lua
keeps in Redis (per conversation: the inbox, the effects list, the lease, the wake flag, the
active-session pointer; per session: its hash and message list; the pending index, dedupe markers,
``out:`` maps). Leases and wake flags expire on the injected clock (in Redis: on the server's own
clock, not on the ``now_ms`` the drain passes). Not kept: the global session indexes, retention
(ended sessions are never purged) and the expiry of dedupe markers (only their bucket window counts,
which is what Redis does as long as its clock does not pass the window).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from wa_sessions.languages.choice import CANDIDATE_KEY, LANGUAGE_KEY
from wa_sessions.statemachine import drainrules as rules
from wa_sessions.statemachine import sessionrules
from wa_sessions.statemachine.entries import EntryKind
from wa_sessions.statemachine.memory_apply import MemoryApply
from wa_sessions.statemachine.sessionrules import SessionState
from wa_sessions.statemachine.steps import (
    DrainPolicy,
    DrainStep,
    EffectsCommit,
    EffectSession,
    EntryResult,
    SessionNow,
)

if TYPE_CHECKING:
    from wa_sessions.statemachine.ports import DrainStore, IngestStore


def _lrange_head(items: Sequence[str], count: int) -> list[str]:
    """``LRANGE key 0 count-1`` (a count of 0 reads the whole list, as in Redis)."""
    end = count - 1
    if end < 0:
        end += len(items)
    return list(items[: end + 1])


class InMemoryStore(MemoryApply):
    """The ``DrainStore`` and ``IngestStore`` roles and the reads tests need, in memory.

    ``clock`` (epoch ms) times leases and wake flags, like Redis' own clock; the drain's
    ``now_ms`` and the entries' acceptance times decide everything else.

    The conversations' and sessions' state, the ingest side and the reads are in
    ``memory_state.py``; applying entries and committing effects in ``memory_apply.py``."""

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
            committed = [
                self._commit_group(group, commit, policy, now_ms) for group in commit.sessions
            ]
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
                    if rules.queues_effects(
                        policy.effects, entry.a, entry.b
                    ) and sessionrules.auto_reply(
                        self.sessions[result.session_id], entry.accepted_ms
                    ):
                        pending.append(rules.effect_record(result.session_id, entry.payload))
                    since = rules.advance_since(since, len(pending), entry.accepted_ms)
                elif entry.kind == rules.OPERATOR_REPLY:
                    result = self._apply_reply(conv, entry, policy)
                    if result.detail == "queued":
                        # Ends the batch: the reply is stored before what came after it.
                        pending.append(rules.effect_record(entry.a, entry.payload))
                        applied += 1
                        results.append(result)
                        break
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
                taken_over_by=session.taken_over_by if session is not None else None,
                language=_context_str(session, LANGUAGE_KEY),
                language_candidate=_context_str(session, CANDIDATE_KEY),
                language_override=c.language,
                flow=session.flow if session is not None else None,
                flow_step=session.flow_step if session is not None else None,
            )
        return DrainStep("ok", released, committed, results, pending, sessions)

    async def extend_lease(self, conv: str, token: str, *, lease_ms: int) -> bool:
        c = self._conv(conv)
        if self._lease_holder(c) != token:
            return False
        c.lease = (token, self.clock() + lease_ms)
        return True

    async def read_now(self, conv: str, session_id: str) -> SessionNow:
        session = self.sessions.get(session_id)
        if session is None:
            return SessionNow(None)
        return SessionNow(session.status, session.taken_over_by, conv in self.opted_out)

    async def extend_lease_and_read(
        self, conv: str, token: str, session_id: str, *, lease_ms: int
    ) -> tuple[bool, SessionNow]:
        return (
            await self.extend_lease(conv, token, lease_ms=lease_ms),
            await self.read_now(conv, session_id),
        )

    async def close(self) -> None:
        return None


if TYPE_CHECKING:
    # The roles are protocols: mypy checks here that this store plays them.
    _as_drain_store: DrainStore = InMemoryStore()
    _as_ingest_store: IngestStore = InMemoryStore()


def _context_str(session: SessionState | None, name: str) -> str | None:
    """A context key's value when it is a string (as ``calls.py`` reads it from Redis)."""
    raw = session.context.get(name) if session is not None else None
    value = json.loads(raw) if raw is not None else None
    return value if isinstance(value, str) else None
