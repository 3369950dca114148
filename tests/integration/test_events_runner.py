"""The events consumer under the real outbox runner (``wa_sessions.outbox.runner``), on the
suite's Redis and a real receiver that verifies every signature: an event that keeps failing
holds up no other session's events, whether those arrive later or were left pending by a
crashed run, and the runner counts none of them as retried (the consumer acknowledges each
entry itself, once delivered)."""

from __future__ import annotations

import asyncio
from typing import Any

import redis
import redis.asyncio
from prometheus_client import REGISTRY

from tests.events_support import Answer, Receiver, add_entry, make_consumer, wait_for
from wa_sessions.outbox.runner import OutboxPolicy, OutboxRunner
from wa_sessions.statemachine.redis.keys import Keys
from wa_sessions.statemachine.redis.outbox_store import OutboxStore

KEYS = Keys()


def runner_counted(outcome: str) -> float:
    labels = {"consumer": "events", "outcome": outcome}
    return REGISTRY.get_sample_value("wa_sessions_outbox_entries_total", labels) or 0.0


def failing_for(session_id: str) -> Receiver:
    """A receiver answering 500 to every event of ``session_id``, 200 to the others."""

    def answer(event: dict[str, Any], nth: int) -> Answer:
        return Answer(500 if event["data"]["session_id"] == session_id else 200)

    return Receiver(answer)


async def serve(
    redis_url: str,
    receiver: Receiver,
    before: Any,
    during: Any,
    *,
    batch: int = 100,
) -> None:
    """Runs ``before(client)``, then the real runner with the events consumer alone while
    ``during(client)`` runs, then stops it."""
    client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    sync = redis.Redis.from_url(redis_url, decode_responses=True)
    url = await receiver.start()
    stop = asyncio.Event()
    try:
        await before(client)
        consumer = make_consumer(client, url, backoff_seconds=0.1)
        policy = OutboxPolicy(batch=batch, block_ms=20, retry_seconds=0.05)
        runner = OutboxRunner(client, OutboxStore(sync), [consumer], policy, consumer_name="o1")
        task = asyncio.create_task(runner.run(stop))
        try:
            await during(client)
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
    finally:
        await receiver.stop()
        await client.aclose()
        sync.close()


def test_other_sessions_events_keep_flowing_through_the_runner_while_one_is_retried(
    redis_url: str,
) -> None:
    """Session A's event fails at every attempt; B's and C's, written while A is being
    retried, are read (XREADGROUP ``>``) and delivered: the runner does not keep handing A's
    pending entry back instead of reading on."""
    receiver = failing_for("A")
    retried, queued = runner_counted("retried"), runner_counted("queued")
    written: list[str] = []

    async def before(client: redis.asyncio.Redis) -> None:
        written.append(await add_entry(client, "A", "session.started"))

    async def during(client: redis.asyncio.Redis) -> None:
        await wait_for(lambda: len(receiver.attempts(f"evt_{written[0]}")) >= 2)
        for sid in ("B", "C"):
            written.append(await add_entry(client, sid, "session.started"))
            written.append(await add_entry(client, sid, "session.completed"))
        await wait_for(lambda: len(receiver.delivered()) == 4)

    asyncio.run(serve(redis_url, receiver, before, during))
    assert sorted(receiver.delivered()) == sorted(f"evt_{e}" for e in written[1:])
    assert all(r.status == 500 for r in receiver.attempts(f"evt_{written[0]}"))
    assert runner_counted("retried") == retried
    assert runner_counted("queued") - queued == 5
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    # A's event is still the group's (acknowledged only once delivered or given up).
    assert client.xpending(KEYS.outbox, "events")["pending"] == 1
    client.close()


def test_entries_a_crashed_run_left_pending_are_walked_once_past_a_failing_one(
    redis_url: str,
) -> None:
    """A crashed run read three entries and handed none: the next run walks its pending list
    with a moving cursor (one entry per batch here), so A's failing event does not stop B's
    and C's from being queued and delivered, and new entries are read after the walk."""
    receiver = failing_for("A")
    written: list[str] = []

    async def before(client: redis.asyncio.Redis) -> None:
        for sid in ("A", "B", "C"):
            written.append(await add_entry(client, sid, "session.started"))
        await client.xgroup_create(KEYS.outbox, "events", id="0", mkstream=True)
        await client.xreadgroup("events", "o1", {KEYS.outbox: ">"}, count=10)

    async def during(client: redis.asyncio.Redis) -> None:
        await wait_for(lambda: len(receiver.delivered()) == 2)
        written.append(await add_entry(client, "D", "session.started"))
        await wait_for(lambda: len(receiver.delivered()) == 3)

    asyncio.run(serve(redis_url, receiver, before, during, batch=1))
    assert sorted(receiver.delivered()) == sorted(f"evt_{e}" for e in written[1:])
    assert len(receiver.attempts(f"evt_{written[0]}")) >= 1
