"""Outgoing events against a real HTTP receiver that verifies every signature with the
``standardwebhooks`` library, on the suite's Redis: delivery, retries (500, timeout,
``Retry-After``), giving up (400, the retry window), order per session while other sessions
flow, a restart mid-retry, an entry handed twice, and entries that make no event."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio
from prometheus_client import REGISTRY

from tests.events_support import (
    SECRET,
    Answer,
    Receiver,
    add_entry,
    feed,
    make_consumer,
    wait_for,
)
from wa_sessions.events.consumer import EventsConsumer
from wa_sessions.events.schema import SessionCompleted
from wa_sessions.metrics.outgoing_events import EventsBacklogCollector
from wa_sessions.statemachine.redis.keys import Keys
from wa_sessions.workers import enqueue

KEYS = Keys()


def counted(kind: str, outcome: str) -> float:
    labels = {"type": kind, "outcome": outcome}
    return REGISTRY.get_sample_value("wa_sessions_events_total", labels) or 0.0


def run(
    redis_url: str,
    receiver: Receiver,
    body: Callable[[redis.asyncio.Redis, str], Awaitable[None]],
) -> None:
    """Runs ``body(client, url)`` with the receiver serving, on one event loop."""

    async def main() -> None:
        client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
        url = await receiver.start()
        try:
            await body(client, url)
        finally:
            await receiver.stop()
            await client.aclose()

    asyncio.run(main())


async def settled(client: redis.asyncio.Redis) -> bool:
    """Nothing left to deliver: no state, nothing due, nothing pending in the group."""
    pending = await client.xpending(KEYS.outbox, "events")
    return (
        await client.hlen(KEYS.events_state) == 0
        and await client.zcard(KEYS.events_due) == 0
        and pending["pending"] == 0
    )


async def deliver_all(client: redis.asyncio.Redis, consumer: EventsConsumer) -> None:
    """Hands the outbox's new entries to ``consumer``, waits until all are delivered or given
    up, and stops it."""
    try:
        await feed(client, consumer)
        await wait_for(lambda: settled(client))
    finally:
        await consumer.close()


def test_an_event_arrives_signed_and_verified_and_is_acknowledged_once_delivered(
    redis_url: str,
) -> None:
    """The receiver's library accepts the signature; the body is the documented schema; the
    outbox entry leaves the group's pending list only after the 2xx."""
    receiver = Receiver()
    before = counted("session.completed", "delivered")

    async def body(client: redis.asyncio.Redis, url: str) -> None:
        consumer = make_consumer(client, url)
        entry = await add_entry(client, "s-1")
        try:
            assert await feed(client, consumer) == 1
            await wait_for(lambda: len(receiver.delivered()) == 1)
            await wait_for(lambda: settled(client))
        finally:
            await consumer.close()
        [got] = receiver.received
        assert receiver.forged == []
        assert got.headers["webhook-id"] == f"evt_{entry}"
        event = SessionCompleted.model_validate(got.event)
        assert event.id == f"evt_{entry}"
        assert event.data.session_id == "s-1"
        assert event.data.customer == "+14155550001"
        assert event.data.order_details == {"items": [{"name": "apples", "quantity": 6}]}
        assert "window" not in got.event["data"]

    run(redis_url, receiver, body)
    assert counted("session.completed", "delivered") - before == 1


def test_a_forged_signature_is_what_the_receiver_refuses(redis_url: str) -> None:
    """The check is real: a sender with another secret is refused by the receiver (401, a
    4xx: given up at once and recorded)."""
    receiver = Receiver(secret="whsec_" + "QUJD" * 8)

    async def body(client: redis.asyncio.Redis, url: str) -> None:
        consumer = make_consumer(client, url)
        entry = await add_entry(client, "s-1")
        try:
            await feed(client, consumer)
            await wait_for(lambda: len(receiver.forged) == 1)
            await wait_for(lambda: settled(client))
        finally:
            await consumer.close()
        record = json.loads(await client.hget(KEYS.events_given_up, entry) or "{}")
        assert record["reason"].startswith("HTTP 401")

    run(redis_url, receiver, body)
    assert receiver.received == []


def test_a_receiver_answering_500_then_200_gets_it_once_in_order_while_other_sessions_flow(
    redis_url: str,
) -> None:
    """Session A's first event fails twice: A's second waits behind it, B's events go out
    meanwhile; every event is delivered exactly once."""
    first_a: list[str] = []

    def answer(event: dict[str, Any], nth: int) -> Answer:
        if event["id"] in first_a and nth <= 2:
            return Answer(500)
        return Answer(200)

    receiver = Receiver(answer)
    retried = counted("session.started", "retried")

    async def body(client: redis.asyncio.Redis, url: str) -> None:
        consumer = make_consumer(client, url, backoff_seconds=0.3)
        a1 = await add_entry(client, "A", "session.started")
        first_a.append(f"evt_{a1}")
        b1 = await add_entry(client, "B", "session.started")
        a2 = await add_entry(client, "A", "session.completed")
        b2 = await add_entry(client, "B", "session.completed")
        try:
            await feed(client, consumer)
            await wait_for(lambda: len(receiver.delivered()) == 4)
            await wait_for(lambda: settled(client))
        finally:
            await consumer.close()
        delivered = receiver.delivered()
        assert sorted(delivered) == sorted(f"evt_{e}" for e in (a1, a2, b1, b2))
        assert delivered.index(f"evt_{a1}") < delivered.index(f"evt_{a2}")
        # B was not held up by A's retries.
        assert delivered.index(f"evt_{b2}") < delivered.index(f"evt_{a1}")
        assert [r.status for r in receiver.attempts(f"evt_{a1}")] == [500, 500, 200]
        # A's second event was not even tried before A's first was delivered.
        assert len(receiver.attempts(f"evt_{a2}")) == 1

    run(redis_url, receiver, body)
    assert counted("session.started", "retried") - retried == 2


def test_a_timed_out_attempt_is_retried_and_delivered(redis_url: str) -> None:
    """The first attempt's answer takes longer than the timeout: it counts as failed."""
    receiver = Receiver(lambda event, nth: Answer(200, delay_seconds=1.5 if nth == 1 else 0))

    async def body(client: redis.asyncio.Redis, url: str) -> None:
        consumer = make_consumer(client, url, timeout_seconds=0.3)
        entry = await add_entry(client, "s-1")
        await deliver_all(client, consumer)
        assert len(receiver.attempts(f"evt_{entry}")) == 2
        assert await client.hlen(KEYS.events_given_up) == 0

    run(redis_url, receiver, body)


def test_a_400_is_given_up_at_once_recorded_and_the_sessions_next_event_goes_out(
    redis_url: str,
) -> None:
    """No retry for a refusal; the record keeps the body and the reason; the session's next
    event is not held up by it."""
    refused: list[str] = []
    receiver = Receiver(lambda event, nth: Answer(400 if event["id"] in refused else 204))
    given_up = counted("session.started", "given_up")

    async def body(client: redis.asyncio.Redis, url: str) -> None:
        consumer = make_consumer(client, url)
        first = await add_entry(client, "s-1", "session.started")
        refused.append(f"evt_{first}")
        second = await add_entry(client, "s-1", "session.completed")
        await deliver_all(client, consumer)
        assert len(receiver.attempts(f"evt_{first}")) == 1
        assert receiver.delivered() == [f"evt_{second}"]
        record = json.loads(await client.hget(KEYS.events_given_up, first) or "{}")
        assert record["reason"] == "HTTP 400: refused by the receiver"
        assert record["attempts"] == 1
        assert json.loads(record["body"])["id"] == f"evt_{first}"

    run(redis_url, receiver, body)
    assert counted("session.started", "given_up") - given_up == 1


def test_retry_after_is_honoured(redis_url: str) -> None:
    """A 503 asking for 1 s is tried again no sooner, though the backoff is 50 ms."""
    receiver = Receiver(
        lambda event, nth: Answer(503, headers={"Retry-After": "1"}) if nth == 1 else Answer()
    )

    async def body(client: redis.asyncio.Redis, url: str) -> None:
        consumer = make_consumer(client, url, backoff_seconds=0.05)
        entry = await add_entry(client, "s-1")
        await deliver_all(client, consumer)
        first, second = receiver.attempts(f"evt_{entry}")
        assert second.at - first.at >= 0.95

    run(redis_url, receiver, body)


def test_an_event_is_given_up_when_its_retry_window_is_over(redis_url: str) -> None:
    """A receiver that keeps failing: the event is given up once the next attempt would fall
    outside the window, and the session's next event goes out."""
    failing: list[str] = []
    receiver = Receiver(lambda event, nth: Answer(502 if event["id"] in failing else 200))

    async def body(client: redis.asyncio.Redis, url: str) -> None:
        consumer = make_consumer(client, url, retry_window_seconds=0.5, backoff_seconds=0.1)
        first = await add_entry(client, "s-1", "session.started")
        failing.append(f"evt_{first}")
        second = await add_entry(client, "s-1", "session.completed")
        await deliver_all(client, consumer)
        assert len(receiver.attempts(f"evt_{first}")) >= 2
        record = json.loads(await client.hget(KEYS.events_given_up, first) or "{}")
        assert record["reason"].startswith("retry window over after")
        assert record["reason"].endswith("last: HTTP 502")
        assert receiver.delivered() == [f"evt_{second}"]

    run(redis_url, receiver, body)


def test_a_restart_mid_retry_continues_the_schedule_from_redis(redis_url: str) -> None:
    """The process stops after a failed attempt; a new consumer, handed nothing, finds the
    schedule in Redis and delivers with the attempt count carried on, in order."""
    receiver = Receiver(lambda event, nth: Answer(500 if nth == 1 else 200))

    async def body(client: redis.asyncio.Redis, url: str) -> None:
        first_run = make_consumer(client, url, backoff_seconds=1.0)
        first = await add_entry(client, "s-1", "session.started")
        second = await add_entry(client, "s-1", "session.completed")
        await feed(client, first_run)
        await wait_for(lambda: len(receiver.received) == 1)
        await wait_for(lambda: _attempts_recorded(client, first, 1))
        await first_run.close()
        assert receiver.delivered() == []
        assert (await client.xpending(KEYS.outbox, "events"))["pending"] == 2

        second_run = make_consumer(client, url, backoff_seconds=1.0)
        try:
            await second_run.start()
            await wait_for(lambda: settled(client))
        finally:
            await second_run.close()
        assert receiver.delivered() == [f"evt_{first}", f"evt_{second}"]
        attempts = receiver.attempts(f"evt_{first}")
        assert [a.status for a in attempts] == [500, 200]
        assert attempts[0].headers["webhook-id"] == attempts[1].headers["webhook-id"]

    run(redis_url, receiver, body)


async def _attempts_recorded(client: redis.asyncio.Redis, entry: str, attempts: int) -> bool:
    raw = await client.hget(KEYS.events_state, entry)
    return raw is not None and json.loads(raw)["n"] == attempts


def test_an_entry_handed_again_after_a_crash_is_sent_once(redis_url: str) -> None:
    """The outbox runner hands a pending entry again (XAUTOCLAIM after a crash): it is not
    queued a second time."""
    receiver = Receiver()

    async def body(client: redis.asyncio.Redis, url: str) -> None:
        consumer = make_consumer(client, url)
        entry = await add_entry(client, "s-1")
        await consumer.store.ensure_group()
        try:
            assert await consumer.store.accept(entry, "s-1", 0)
            assert not await consumer.store.accept(entry, "s-1", 0)
            await feed(client, consumer)
            await consumer.start()
            await wait_for(lambda: settled(client))
        finally:
            await consumer.close()
        assert receiver.delivered() == [f"evt_{entry}"]

    run(redis_url, receiver, body)


def test_an_entry_that_makes_no_event_is_given_up_counted_and_sends_nothing(
    redis_url: str,
) -> None:
    """Unknown type, data that is not JSON, a message.failed without its fields: each is
    recorded with the reason and the entry, counted as invalid, acknowledged."""
    receiver = Receiver()
    invalid = counted("invalid", "given_up")

    async def body(client: redis.asyncio.Redis, url: str) -> None:
        consumer = make_consumer(client, url)
        bad = [
            await add_entry(client, "s-1", "session.paused"),
            await add_entry(client, "s-2", "session.completed", "{not json"),
            await add_entry(client, "s-3", "message.failed", {"reason": "failed"}),
        ]
        await deliver_all(client, consumer)
        records = [json.loads(await client.hget(KEYS.events_given_up, e) or "{}") for e in bad]
        assert "unknown event type 'session.paused'" in records[0]["reason"]
        assert "'at' or 'data' unreadable" in records[1]["reason"]
        assert "data.message_id: Field required" in records[2]["reason"]
        assert all(r["entry"]["session_id"] for r in records)

    run(redis_url, receiver, body)
    assert receiver.received == []
    assert counted("invalid", "given_up") - invalid == 3


def _operator_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, redis_url: str, url: str
) -> None:
    """The operators' script's environment: the test Redis and receiver, no ``.run/dev.env``."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("EVENTS_WEBHOOK_URL", url)
    monkeypatch.setenv("EVENTS_WEBHOOK_SECRET", SECRET)


def test_replay_event_sends_a_delivered_event_again_with_the_same_webhook_id(
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``wa-sessions-enqueue replay-event evt_<id>`` rebuilds the body from the outbox: the
    receiver gets the same id, the same body, a fresh signature."""
    receiver = Receiver()

    async def body(client: redis.asyncio.Redis, url: str) -> None:
        _operator_env(monkeypatch, tmp_path, redis_url, url)
        consumer = make_consumer(client, url)
        entry = await add_entry(client, "s-1")
        await deliver_all(client, consumer)
        code = await asyncio.to_thread(enqueue.main, ["replay-event", f"evt_{entry}"])
        assert code == 0
        first, again = receiver.attempts(f"evt_{entry}")
        assert again.headers["webhook-id"] == first.headers["webhook-id"] == f"evt_{entry}"
        assert again.event == first.event
        assert receiver.forged == []

    run(redis_url, receiver, body)
    assert "from outbox" in capsys.readouterr().out


def test_replay_event_takes_a_given_up_event_from_its_record_once_the_stream_lost_it(
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A 400 gives the event up; the outbox entry is trimmed; once the receiver is fixed, the
    replay sends the recorded body. An unknown id exits 1 naming it."""
    fixed: list[bool] = []
    receiver = Receiver(lambda event, nth: Answer(200 if fixed else 400))

    async def body(client: redis.asyncio.Redis, url: str) -> None:
        _operator_env(monkeypatch, tmp_path, redis_url, url)
        consumer = make_consumer(client, url)
        entry = await add_entry(client, "s-1")
        await deliver_all(client, consumer)
        await client.xdel(KEYS.outbox, entry)
        fixed.append(True)
        assert await asyncio.to_thread(enqueue.main, ["replay-event", entry]) == 0
        assert receiver.delivered() == [f"evt_{entry}"]
        missing = await asyncio.to_thread(enqueue.main, ["replay-event", "evt_1-0"])
        assert missing == 1

    run(redis_url, receiver, body)
    out, err = capsys.readouterr()
    assert "from given_up" in out
    assert "no event 'evt_1-0'" in err


def test_replay_event_without_a_webhook_url_is_a_usage_error(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.delenv("EVENTS_WEBHOOK_URL", raising=False)
    assert enqueue.main(["replay-event", "evt_1-0"]) == 2


def test_the_backlog_is_read_from_redis_at_scrape_time(redis_url: str) -> None:
    """An event waiting for its retry shows as pending, with the age of its outbox entry; a
    Redis without the group yet reports nothing pending."""
    collector = EventsBacklogCollector(redis.Redis.from_url(redis_url), KEYS, "events")
    assert _gauges(collector)["wa_sessions_events_oldest_pending_seconds"] == 0
    receiver = Receiver(lambda event, nth: Answer(500))

    async def body(client: redis.asyncio.Redis, url: str) -> None:
        consumer = make_consumer(client, url, backoff_seconds=30)
        await add_entry(client, "s-1")
        await feed(client, consumer)
        await wait_for(lambda: len(receiver.received) == 1)
        await consumer.close()

    run(redis_url, receiver, body)
    gauges = _gauges(collector)
    assert gauges["wa_sessions_events_pending"] == 1
    assert gauges["wa_sessions_events_oldest_pending_seconds"] > 0
    assert gauges["wa_sessions_events_given_up"] == 0


def _gauges(collector: EventsBacklogCollector) -> dict[str, float]:
    return {family.name: family.samples[0].value for family in collector.collect()}
