"""The outbox on the suite's real Redis: the Lua steps write one event per lifecycle change in
the same script, the runner hands batches to consumers and acknowledges only what they finish,
takes over a dead consumer's entries, and the trim keeps whatever a group still needs."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import redis
import redis.asyncio

from wa_sessions.metrics.outbox import OutboxBacklogCollector
from wa_sessions.outbox.entry import OutboxEntry
from wa_sessions.outbox.runner import ConsumerLoop, OutboxPolicy
from wa_sessions.statemachine import SessionCreate, SessionService, SessionUpdate
from wa_sessions.statemachine.redis.keys import Keys

PHONE = "+14155550123"
BUSINESS = "+14155238886"
KEYS = Keys()


class RecordingConsumer:
    """Finishes the entries ``accept`` allows, and records every batch it was handed."""

    def __init__(self, name: str, accept: Any = None) -> None:
        self.name = name
        self.accept = accept or (lambda _e: True)
        self.batches: list[list[OutboxEntry]] = []

    async def handle(self, entries: list[OutboxEntry]) -> list[str]:
        self.batches.append(entries)
        return [e.id for e in entries if self.accept(e)]

    @property
    def seen(self) -> list[str]:
        return [e.id for batch in self.batches for e in batch]


@pytest.fixture
def service(redis_client: redis.Redis, clock: Any) -> SessionService:
    return SessionService(redis_client, clock=clock, business_number=BUSINESS)


def entries(client: redis.Redis) -> list[dict[str, str]]:
    return [fields for _id, fields in client.xrange(KEYS.outbox)]


def loop_for(url: str, consumer: Any, name: str = "c1", **policy: Any) -> ConsumerLoop:
    client = redis.asyncio.Redis.from_url(url, decode_responses=True)
    policy.setdefault("block_ms", 10)
    return ConsumerLoop(client, KEYS.outbox, consumer, OutboxPolicy(**policy), name)


async def steps(loop: ConsumerLoop, n: int = 6) -> None:
    await loop.ensure_group()
    for _ in range(n):
        await loop.step()


def run(url: str, consumer: Any, name: str = "c1", **policy: Any) -> None:
    """A few steps of one consumer's loop on a client of its own."""

    async def go() -> None:
        loop = loop_for(url, consumer, name, **policy)
        try:
            await steps(loop)
        finally:
            await loop.client.aclose()

    asyncio.run(go())


def test_opening_and_completing_a_session_writes_started_then_completed_with_its_view(
    service: SessionService, redis_client: redis.Redis
) -> None:
    """Each event carries the session as the API shows it; no event for a plain message."""
    created = service.create_session(
        SessionCreate(phone_number=PHONE, context={"lang": "fr"}, initial_message="hi")
    )
    service.update_session(created.session_id, SessionUpdate(order_details={"items": []}))
    service.complete_session(created.session_id)
    events = entries(redis_client)
    assert [e["type"] for e in events] == ["session.started", "session.completed"]
    done = json.loads(events[1]["data"])
    assert done["session_id"] == created.session_id
    assert done["status"] == "completed"
    assert done["context"] == {"lang": "fr"}
    assert done["order_details"] == {"items": []}
    assert done["message_count"] == 1
    assert done["ended_at"].endswith("Z")
    assert events[1]["conv"] == f"{PHONE}|{BUSINESS}"
    assert int(events[1]["at"]) > 0


def test_the_event_times_are_the_sessions_times_in_iso_form(
    service: SessionService, redis_client: redis.Redis, clock: Any
) -> None:
    """The Lua date conversion agrees with Python's for the session's created time."""
    created = service.create_session(SessionCreate(phone_number=PHONE))
    data = json.loads(entries(redis_client)[0]["data"])
    from datetime import datetime

    assert datetime.fromisoformat(data["created_at"]) == created.created_at


def test_a_consumer_gets_every_entry_once_and_they_are_acknowledged(
    service: SessionService, redis_client: redis.Redis, redis_url: str
) -> None:
    """Finished entries leave the group's pending list and are not handed over again."""
    for phone in ("+14155550001", "+14155550002"):
        s = service.create_session(SessionCreate(phone_number=phone))
        service.expire_session(s.session_id)
    consumer = RecordingConsumer("archive")
    run(redis_url, consumer)
    assert len(consumer.seen) == 4 == len(set(consumer.seen))
    assert redis_client.xpending(KEYS.outbox, "archive")["pending"] == 0


def test_entries_a_consumer_did_not_finish_are_handed_over_again_in_order(
    service: SessionService, redis_client: redis.Redis, redis_url: str
) -> None:
    """A failing batch stays pending and comes back, oldest first, until it is finished."""
    s = service.create_session(SessionCreate(phone_number=PHONE))
    service.complete_session(s.session_id)
    failing = {"on": True}
    consumer = RecordingConsumer("archive", accept=lambda _e: not failing["on"])
    pending: list[int] = []

    async def go() -> None:
        loop = loop_for(redis_url, consumer)
        try:
            await steps(loop, 3)
            pending.append(redis_client.xpending(KEYS.outbox, "archive")["pending"])
            failing["on"] = False
            await steps(loop, 3)
        finally:
            await loop.client.aclose()

    asyncio.run(go())
    assert pending == [2]
    assert redis_client.xpending(KEYS.outbox, "archive")["pending"] == 0
    last = consumer.batches[-1]
    assert [e.type for e in last] == ["session.started", "session.completed"]


def test_a_dead_consumers_entries_are_claimed_by_another_after_the_idle_timeout(
    service: SessionService, redis_client: redis.Redis, redis_url: str
) -> None:
    """Entries read by a consumer that never acknowledged them move to a live one."""
    s = service.create_session(SessionCreate(phone_number=PHONE))
    service.complete_session(s.session_id)
    redis_client.xgroup_create(KEYS.outbox, "archive", id="0")
    redis_client.xreadgroup("archive", "dead", {KEYS.outbox: ">"}, count=10)
    consumer = RecordingConsumer("archive")
    run(redis_url, consumer, "live", claim_idle_ms=1)
    assert len(consumer.seen) == 2
    assert redis_client.xpending(KEYS.outbox, "archive")["pending"] == 0


def test_the_trim_keeps_what_any_group_has_not_acknowledged(
    service: SessionService, redis_client: redis.Redis, redis_url: str
) -> None:
    """One group done, another behind: nothing the slow group needs is trimmed."""
    s = service.create_session(SessionCreate(phone_number=PHONE))
    service.complete_session(s.session_id)
    run(redis_url, RecordingConsumer("archive"))
    redis_client.xgroup_create(KEYS.outbox, "events", id="0")
    assert service.store.trim_outbox() == 0
    assert redis_client.xlen(KEYS.outbox) == 2
    run(redis_url, RecordingConsumer("events"))
    service.store.trim_outbox()
    assert redis_client.xlen(KEYS.outbox) == 0


def test_the_backlog_metrics_show_pending_entries_and_their_age(
    service: SessionService, redis_client: redis.Redis, redis_url: str
) -> None:
    """Unread entries count against a group that has not read them yet."""
    s = service.create_session(SessionCreate(phone_number=PHONE))
    service.complete_session(s.session_id)
    first_ms = int(redis_client.xrange(KEYS.outbox)[0][0].partition("-")[0])
    collector = OutboxBacklogCollector(
        service.store, ["archive"], clock=lambda: first_ms / 1000 + 30
    )
    samples = {
        (m.name, tuple(s.labels.values())): s.value for m in collector.collect() for s in m.samples
    }
    assert samples[("wa_sessions_outbox_entries", ())] == 2
    assert samples[("wa_sessions_outbox_pending", ("archive",))] == 0
    assert samples[("wa_sessions_outbox_oldest_unacknowledged_seconds", ("archive",))] == 30


def test_a_malformed_entry_is_acknowledged_without_reaching_the_consumer(
    redis_client: redis.Redis, redis_url: str
) -> None:
    """Nothing our scripts write, but a stray XADD must not wedge the group."""
    redis_client.xadd(KEYS.outbox, {"type": "nonsense"})
    consumer = RecordingConsumer("archive")
    run(redis_url, consumer)
    assert consumer.seen == []
    assert redis_client.xpending(KEYS.outbox, "archive")["pending"] == 0
