"""Wake flags outlive the wait in a backed-up Dramatiq queue, so a backlog does not turn into
one wake-up per message; with an empty queue they lapse after a lease, so a lost wake-up is
re-driven quickly."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import dramatiq
import pytest
import redis

from wa_sessions.bootstrap import build_broker
from wa_sessions.config import Environment, Settings
from wa_sessions.statemachine.models import Message
from wa_sessions.statemachine.redis.inbox import Inbox, InboxPolicy
from wa_sessions.statemachine.service import SessionService
from wa_sessions.statemachine.steps import IngestOutcome
from wa_sessions.workers import handlers
from wa_sessions.workers.broker import queued_age_ms
from wa_sessions.workers.handlers import MAX_WAKE_TTL_MS, WorkerDeps, wake_ttl_ms
from wa_sessions.workers.queues import QueueKeys

CONV = "+14155550001|+14155238886"
LEASE_MS = 5_000


def test_wake_flags_live_a_lease_plus_twice_the_queues_wait() -> None:
    assert wake_ttl_ms(LEASE_MS, None) == LEASE_MS
    assert wake_ttl_ms(LEASE_MS, 0) == LEASE_MS
    assert wake_ttl_ms(LEASE_MS, 20_000) == 45_000
    assert wake_ttl_ms(LEASE_MS, 24 * 3600 * 1000) == MAX_WAKE_TTL_MS


class Harness:
    def __init__(self, client: redis.Redis, queued_age: int | None) -> None:
        self.client = client
        self.service = SessionService(client)
        self.inbox = Inbox(self.service.store, InboxPolicy(lease_seconds=LEASE_MS / 1000))
        self.woken: list[str] = []
        self.deps = WorkerDeps(
            self.service,
            self.inbox,
            wake=self.woken.append,
            lease_seconds=LEASE_MS / 1000,
            queued_wake_age_ms=lambda: queued_age,
        )

    def accept(self) -> IngestOutcome:
        message = Message(id="SM" + uuid.uuid4().hex, content="hi", timestamp=datetime.now(UTC))
        return self.inbox.accept(CONV, message, accepted_ms=self.service.now_ms())

    def flag_ttl_ms(self) -> int:
        return int(self.client.pttl(self.service.store.keys.conv_wake(CONV)))


def test_a_backed_up_queue_keeps_one_wake_up_per_phone(redis_client: redis.Redis) -> None:
    """The queue's oldest wake-up waits 20 s: after the re-drive pass, a new wake flag lives 45 s
    (not a 5 s lease), so the phone's later messages queue behind the same wake-up."""
    h = Harness(redis_client, queued_age=20_000)
    handlers.redrive(h.deps)
    assert h.accept() is IngestOutcome.ACCEPTED_WAKE
    assert 40_000 < h.flag_ttl_ms() <= 45_000
    assert [h.accept() for _ in range(3)] == [IngestOutcome.ACCEPTED] * 3


def test_with_an_empty_queue_flags_lapse_after_a_lease(redis_client: redis.Redis) -> None:
    h = Harness(redis_client, queued_age=None)
    handlers.redrive(h.deps)
    assert h.accept() is IngestOutcome.ACCEPTED_WAKE
    assert 0 < h.flag_ttl_ms() <= LEASE_MS


def test_the_adapted_ttl_lapses_when_no_re_drive_pass_renews_it(
    redis_client: redis.Redis,
) -> None:
    """A scheduler that stops leaves the default behind: the setting expires."""
    h = Harness(redis_client, queued_age=20_000)
    h.service.store.redrive(wake_ttl_ms=45_000, limit=10, hold_ms=50)
    keys = h.service.store.keys
    assert redis_client.get(keys.wake_ttl) == "45000"
    redis_client.delete(keys.wake_ttl)  # as after hold_ms
    assert h.accept() is IngestOutcome.ACCEPTED_WAKE
    assert 0 < h.flag_ttl_ms() <= LEASE_MS


@pytest.fixture
def broker(redis_url: str) -> Iterator[dramatiq.Broker]:
    broker = build_broker(Settings(environment=Environment.DEVELOPMENT, redis_url=redis_url))
    yield broker
    broker.flush_all()
    broker.close()


def test_queued_age_reads_the_oldest_message_of_dramatiqs_queue(
    broker: dramatiq.brokers.redis.RedisBroker,
) -> None:
    queue = QueueKeys()
    assert queued_age_ms(broker.client, queue) is None
    for age_ms, name in ((30_000, "old"), (1_000, "new")):
        message = dramatiq.Message(
            queue_name=queue.queue,
            actor_name="drain_conversation",
            args=(CONV,),
            kwargs={},
            options={"redis_message_id": name},
            message_timestamp=int(datetime.now(UTC).timestamp() * 1000) - age_ms,
        )
        broker.client.hset(queue.messages, name, message.encode())
        broker.client.rpush(queue.ready, name)
    age = queued_age_ms(broker.client, queue)
    assert age is not None
    assert 30_000 <= age < 35_000
