"""What one drain step of the in-memory store writes, with the Lua ``drain_step``'s semantics:
an inbox entry applied (a message, an operator's operation), a session's effects committed."""

from __future__ import annotations

import json
from collections.abc import Sequence

from wa_sessions.statemachine import drainrules as rules
from wa_sessions.statemachine import sessionrules
from wa_sessions.statemachine.drainrules import InboxEntry
from wa_sessions.statemachine.entries import EntryKind
from wa_sessions.statemachine.lifecycle import Trigger
from wa_sessions.statemachine.memory_state import ConversationState, MemoryState
from wa_sessions.statemachine.sessionrules import SessionState
from wa_sessions.statemachine.steps import (
    DrainPolicy,
    EffectsCommit,
    EntryResult,
    SessionEffects,
    to_ms,
)

_TIMEOUT_REASON = "timeout"


class MemoryApply(MemoryState):
    """Applies inbox entries and commits effects to the in-memory state."""

    def _apply_message(
        self,
        conv: str,
        c: ConversationState,
        entry: InboxEntry,
        new_sid: str,
        now_ms: int,
        policy: DrainPolicy,
    ) -> EntryResult:
        pointer = c.active
        current = self.sessions.get(pointer) if pointer is not None else None
        found = sessionrules.find_active(pointer, current, entry.accepted_ms, policy.timeout_ms)
        expired = ""
        if found is sessionrules.ActiveSession.STALE:
            c.active = None
        elif found is sessionrules.ActiveSession.IDLE and current is not None:
            ended, _ = sessionrules.end_session(
                current, Trigger.EXPIRE.value, now_ms, _TIMEOUT_REASON
            )
            if ended:
                self._end(current, now_ms, _TIMEOUT_REASON)
            expired = current.session_id
        if found is sessionrules.ActiveSession.LIVE and current is not None:
            created = False
        else:
            current = self._open(conv, c, new_sid, entry.accepted_ms, policy.carry)
            created = True
        sessionrules.append_message(
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
        self, conv: str, c: ConversationState, session_id: str, at_ms: int, carry: Sequence[str]
    ) -> SessionState:
        carried: dict[str, str] = {}
        if carry and c.sessions:
            previous = self.sessions.get(max(c.sessions, key=lambda sid: (c.sessions[sid], sid)))
            if previous is not None:
                carried = {
                    name: previous.context[name] for name in carry if name in previous.context
                }
        session = sessionrules.open_session(conv, session_id, at_ms, carried)
        self.sessions[session_id] = session
        c.active = session_id
        c.sessions[session_id] = at_ms
        return session

    def _apply_operation(
        self, conv: str, c: ConversationState, entry: InboxEntry, now_ms: int, policy: DrainPolicy
    ) -> EntryResult:
        named = entry.a or c.active or ""
        owner = self.sessions[named].conv if named in self.sessions else None
        target = sessionrules.operation_target(conv, entry.a, c.active, owner)
        session = self.sessions.get(target) if target else None
        detail, ended = sessionrules.apply_operation(
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

    def _apply_reply(self, conv: str, entry: InboxEntry, policy: DrainPolicy) -> EntryResult:
        """An operator's reply to session ``entry.a`` of this conversation."""
        session = self.sessions.get(entry.a) if entry.a else None
        if session is not None and session.conv != conv:
            session = None
        return EntryResult(
            "ok",
            EntryKind.OPERATOR_REPLY,
            session_id=entry.a,
            detail=sessionrules.reply_outcome(session, policy.effects),
            target_session_id=entry.a,
            operation_id=entry.b,
            accepted_ms=entry.accepted_ms,
        )

    def _commit_group(
        self, group: SessionEffects, commit: EffectsCommit, policy: DrainPolicy, now_ms: int
    ) -> str:
        session = self.sessions.get(group.session_id)
        if group.opt_out and session is not None:
            self.opted_out.add(session.conv)
        if session is None or not sessionrules.can_receive(session.status):
            return "ended"
        if group.order is not None:
            session.order_json = json.dumps(group.order)
        for name, value in group.context.items():
            session.context[name] = json.dumps(value)
        if group.flow is not None:
            session.flow, session.flow_step = group.flow
        for item in group.messages:
            message = item.message
            position = sessionrules.append_message(
                session,
                message.model_dump_json(exclude_defaults=True),
                message.direction.value,
                message.message_type.value,
                to_ms(message.timestamp),
                policy.cap,
                item.passive,
            )
            if item.twilio_sid:
                self._map_outbound(
                    item.twilio_sid, session, message.id, position, item.delivery_status, commit
                )
        if group.complete:
            ended, _ = sessionrules.end_session(session, Trigger.COMPLETE.value, now_ms, "flow")
            if ended:
                self._end(session, now_ms, "flow")
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
