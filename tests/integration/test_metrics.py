"""Metrics read from a real Redis: session ends recorded by the Lua scripts and observed by the
scheduler's job, and the scrape-time collector over the store, the inboxes and Dramatiq's queue."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.message import Message as DramatiqMessage
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.conftest import FakeClock
from wa_sessions import metrics
from wa_sessions.embedded_redis import free_port
from wa_sessions.metrics.collectors import RedisStateCollector
from wa_sessions.metrics.events import observe_ended_sessions
from wa_sessions.statemachine.models import Message
from wa_sessions.statemachine.redis.inbox import Inbox
from wa_sessions.statemachine.service import SessionService
from wa_sessions.workers.queues import NAMESPACE, QUEUE, QueueKeys

BUSINESS = "+14155238886"


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def scrape(collector: RedisStateCollector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in collector.collect()
        for sample in family.samples
    }


@pytest.fixture
def service(redis_client: redis.Redis, clock: FakeClock) -> SessionService:
    return SessionService(
        redis_client, clock=clock, business_number=BUSINESS, session_timeout_hours=1
    )


@pytest.fixture
def collector(service: SessionService, clock: FakeClock) -> RedisStateCollector:
    return RedisStateCollector(
        service.store,
        queues=[QueueKeys()],
        clock=lambda: clock().timestamp(),
    )


def test_every_way_a_session_ends_is_observed_once(
    service: SessionService, clock: FakeClock
) -> None:
    """Completed through the API, expired by the sweep and by a read past the timeout: three
    events, counted once each, with their durations and message counts."""
    before = {
        outcome: value("wa_sessions_sessions_ended_total", outcome=outcome)
        for outcome in ("completed", "expired")
    }
    duration_before = value("wa_sessions_session_duration_seconds_sum", outcome="completed")
    messages_before = value("wa_sessions_session_messages_sum", outcome="completed")

    first = service.add_message("+14155550001", "hello")
    service.add_message("+14155550001", "two pizzas")
    service.add_message("+14155550002", "hi")
    service.add_message("+14155550003", "hey")
    clock.advance(seconds=90)
    service.complete_session(first.session_id)
    clock.advance(hours=2)
    assert service.cleanup_expired_sessions() == 2

    assert observe_ended_sessions(service.store) == 3
    assert observe_ended_sessions(service.store) == 0
    assert value("wa_sessions_sessions_ended_total", outcome="completed") - before["completed"] == 1
    assert value("wa_sessions_sessions_ended_total", outcome="expired") - before["expired"] == 2
    completed_duration = value("wa_sessions_session_duration_seconds_sum", outcome="completed")
    assert completed_duration - duration_before == pytest.approx(90)
    completed_messages = value("wa_sessions_session_messages_sum", outcome="completed")
    assert completed_messages - messages_before == 2


def test_collector_counts_active_sessions_and_waiting_inboxes(
    service: SessionService, collector: RedisStateCollector, clock: FakeClock
) -> None:
    """Active sessions equal the service's own count; an undrained inbox shows its age."""
    for n in range(3):
        service.add_message(f"+1415555010{n}", "hello")
    ended = service.add_message("+14155550109", "bye")
    service.complete_session(ended.session_id)
    inbox = Inbox(service.store)
    conv = service.conversation("+14155550200").key
    accepted_ms = service.now_ms()
    message = Message(id="SM" + uuid.uuid4().hex, content="waiting", timestamp=clock())
    inbox.accept(conv, message, accepted_ms=accepted_ms)
    clock.advance(seconds=42)

    samples = scrape(collector)

    assert samples[("wa_sessions_redis_up", ())] == 1
    assert samples[("wa_sessions_sessions_active", ())] == service.get_active_sessions_count() == 3
    assert samples[("wa_sessions_inbox_conversations_waiting", ())] == 1
    assert samples[("wa_sessions_inbox_oldest_waiting_seconds", ())] == pytest.approx(42)


@pytest.fixture
def dramatiq_broker(redis_url: str) -> Iterator[RedisBroker]:
    broker = RedisBroker(url=redis_url, namespace=NAMESPACE)  # type: ignore[no-untyped-call]
    broker.declare_queue(QUEUE)
    yield broker
    broker.close()


def test_collector_reads_dramatiq_queue_depth(
    dramatiq_broker: RedisBroker, collector: RedisStateCollector
) -> None:
    """Messages enqueued through Dramatiq's own broker show as ready, delayed ones as delayed."""
    for n in range(3):
        dramatiq_broker.enqueue(DramatiqMessage(QUEUE, "drain_conversation", (f"c{n}",), {}, {}))
    dramatiq_broker.enqueue(
        DramatiqMessage(QUEUE, "drain_conversation", ("later",), {}, {}), delay=60_000
    )

    samples = scrape(collector)

    depth = {
        labels[1][1]: count
        for (name, labels), count in samples.items()
        if name == "wa_sessions_queue_messages"
    }
    assert depth == {"ready": 3, "delayed": 1, "dead": 0}


def test_scrape_with_redis_down_is_quick_and_clean() -> None:
    """A Redis nobody listens on: /metrics still renders, saying ``wa_sessions_redis_up 0``."""
    client = redis.Redis(
        port=free_port(), socket_connect_timeout=1, socket_timeout=1, retry=Retry(NoBackoff(), 0)
    )
    service = SessionService(client, business_number=BUSINESS)
    collector = RedisStateCollector(service.store, queues=[QueueKeys()])
    started = time.monotonic()
    body = metrics.render_metrics([collector])[0].decode()
    assert time.monotonic() - started < 2
    families: dict[str, Any] = {f.name: f for f in text_string_to_metric_families(body)}
    assert families["wa_sessions_redis_up"].samples[0].value == 0
    assert "wa_sessions_sessions_active" not in families
    assert "wa_sessions_messages" in families
