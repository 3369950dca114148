"""The conversation inboxes in the sync Redis store: ingest, operator entries, the drain step and
its lease, the re-drive, and what the scheduler reads and takes (depths, the pending summary,
session-end events)."""

from __future__ import annotations

from typing import cast

from wa_sessions.statemachine.redis.calls import (
    QueuedWake,
    as_str,
    drain_step_call,
    ingest_call,
    parse_drain_step,
)
from wa_sessions.statemachine.redis.scripted import ScriptedStore
from wa_sessions.statemachine.steps import (
    DrainPolicy,
    DrainStep,
    EffectsCommit,
    EndedEvent,
    IngestOutcome,
)


class InboxStore(ScriptedStore):
    """Per-conversation inboxes and their drains."""

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
        messages_per_minute: int = 0,
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
            messages_per_minute=messages_per_minute,
        )
        return IngestOutcome(int(self._scripts["ingest"](keys=keys, args=args)))

    def push_operation(
        self,
        conv: str,
        entry: str,
        *,
        accepted_ms: int,
        wake_ttl_ms: int,
        wake: QueuedWake | None = None,
    ) -> bool:
        """Appends an operator entry; True when a drain wake-up must be enqueued (never with
        ``wake``: the script enqueues that message itself when one is needed)."""
        k = self.keys
        result = self._run(
            "push_op",
            {
                "inbox": k.conv_inbox(conv),
                "wake": k.conv_wake(conv),
                "pending": k.pending,
                "wake_ttl": k.wake_ttl,
                "queue": wake.queue_key if wake else None,
                "queue_messages": wake.messages_key if wake else None,
            },
            entry=entry,
            conv=conv,
            accepted_ms=accepted_ms,
            wake_ttl_ms=wake_ttl_ms,
            wake_id=wake.message_id if wake else None,
            wake_message=wake.data if wake else None,
        )
        return int(result) == 2

    def start_flow(
        self,
        conv: str,
        session_id: str,
        entry: str,
        *,
        flow: tuple[str, str],
        done: str,
        accepted_ms: int,
        wake_ttl_ms: int,
        wake: QueuedWake | None = None,
    ) -> tuple[str, str]:
        """Sets the session's ``flow`` (template, first step) and appends ``entry`` (its first
        message) to the inbox, atomically (``lua/start_flow.lua``): (``ok``, ''), or a refusal
        (``ended``, the status) or (``flow``, the unfinished template it follows)."""
        k = self.keys
        outcome, detail = self._run(
            "start_flow",
            {
                "inbox": k.conv_inbox(conv),
                "wake": k.conv_wake(conv),
                "pending": k.pending,
                "wake_ttl": k.wake_ttl,
                "queue": wake.queue_key if wake else None,
                "queue_messages": wake.messages_key if wake else None,
            },
            entry=entry,
            conv=conv,
            sid=session_id,
            flow=flow[0],
            flow_step=flow[1],
            done=done,
            accepted_ms=accepted_ms,
            wake_ttl_ms=wake_ttl_ms,
            wake_id=wake.message_id if wake else None,
            wake_message=wake.data if wake else None,
        )
        return as_str(outcome), as_str(detail)

    def takeover(
        self, session_id: str, operator: str, *, take: bool, force: bool, now_ms: int
    ) -> tuple[str, str]:
        """Takes a session over or hands it back (the ``takeover`` script): (``ok``, holder
        after) or a refusal (``missing``, ``ended``, ``held``, ``free``) and its detail."""
        outcome, detail = self._run(
            "takeover", sid=session_id, operator=operator, take=take, force=force, now=now_ms
        )
        return as_str(outcome), as_str(detail)

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

    def pending_effects(self, conv: str) -> list[str]:
        return [as_str(x) for x in self.client.lrange(self.keys.conv_effects(conv), 0, -1)]

    def outbound(self, twilio_sid: str) -> dict[str, str]:
        """What is stored about one outbound Twilio message (its ``out:`` hash)."""
        return cast(dict[str, str], self.client.hgetall(self.keys.outbound(twilio_sid)))

    def redrive(self, *, wake_ttl_ms: int, limit: int, hold_ms: int = 30_000) -> list[str]:
        """Conversations to wake (marked woken); wake flags live ``wake_ttl_ms`` from now on,
        for ``hold_ms`` (then the lease period again)."""
        return [
            as_str(x)
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
            events.append(EndedEvent.parse(as_str(item)))
        return events
