"""The actors through a real Redis broker and an in-process Dramatiq worker (four threads).

Wake-ups are at-least-once and unordered; these tests pin that order and exactly-once come from
the inbox regardless: many phones, duplicate wake-ups, operator tasks and unknown sessions.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import dramatiq
import pytest
import redis
import redis.asyncio
from dramatiq.brokers.redis import RedisBroker
from prometheus_client import REGISTRY

from tests.support import poll, running_worker
from wa_sessions import bootstrap
from wa_sessions.config import Environment, Settings
from wa_sessions.statemachine.identity import Conversation
from wa_sessions.statemachine.models import Message, MessageDirection, SessionStatus
from wa_sessions.statemachine.redis.inbox import AsyncInbox, Inbox
from wa_sessions.statemachine.service import SessionService
from wa_sessions.statemachine.steps import IngestOutcome
from wa_sessions.workers.actors import (
    DRAIN_CONVERSATION,
    Actors,
    declare_actors,
    drain_sender,
)
from wa_sessions.workers.broker import DrainWakeMessages
from wa_sessions.workers.handlers import WorkerDeps
from wa_sessions.workers.queues import NAMESPACE, QUEUE, QueueKeys

BUSINESS = "+14155238886"
ACTOR_NAMES = ("drain_conversation", "complete_session", "expire_session")
ROOT = Path(__file__).resolve().parents[2]


def dev_settings(redis_url: str) -> Settings:
    return Settings(environment=Environment.DEVELOPMENT, redis_url=redis_url)


@dataclass
class Stack:
    """The broker, the worker's dependencies and the client the test reads Redis with."""

    broker: RedisBroker
    actors: Actors
    service: SessionService
    inbox: Inbox
    client: redis.Redis
    deps: WorkerDeps

    def accept(self, conv: str, content: str) -> IngestOutcome:
        """What the webhook does: accept into the inbox, wake a drain when told to."""
        message = Message(id="SM" + uuid.uuid4().hex, content=content, timestamp=datetime.now(UTC))
        outcome = self.inbox.accept(conv, message, accepted_ms=self.service.now_ms())
        if outcome is IngestOutcome.ACCEPTED_WAKE:
            self.actors.drain_conversation.send(conv)
        return outcome

    def history(self, conv: str) -> list[str]:
        store = self.service.store
        return [
            m.content for sid in store.conversation_session_ids(conv) for m in store.messages(sid)
        ]

    def join(self, timeout_ms: int = 10_000) -> None:
        """Waits until every Dramatiq message (queued, in flight or delayed) is acknowledged
        and every drain the wake-ups handed to the drain loop has ended."""
        self.broker.join(QUEUE, timeout=timeout_ms)
        poll(lambda: self.deps.runner().in_flight == 0)


@pytest.fixture
def stack(redis_url: str) -> Iterator[Stack]:
    """The service's broker on the test Redis with the actors declared on it over the test's
    dependencies; afterwards the queues are flushed."""
    broker = bootstrap.build_broker(dev_settings(redis_url))
    broker.flush_all()
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    service = SessionService(client)
    inbox = Inbox(service.store)
    deps = WorkerDeps(service=service, inbox=inbox, wake=drain_sender(broker))
    actors = declare_actors(broker, deps)
    assert broker.get_declared_actors() == set(ACTOR_NAMES)
    try:
        yield Stack(broker, actors, service, inbox, client, deps)
    finally:
        deps.close()
        broker.flush_all()
        broker.client.close()
        client.close()


@pytest.fixture
def worker(stack: Stack) -> Iterator[dramatiq.Worker]:
    with running_worker(stack.broker) as running:
        yield running


def drains_total() -> float:
    return sum(
        REGISTRY.get_sample_value("wa_sessions_drains_total", {"outcome": outcome}) or 0.0
        for outcome in ("drained", "busy", "lease_lost")
    )


def conv_of(n: int) -> str:
    return Conversation(f"+1415555{n:04d}", BUSINESS).key


PHONES = 20
PER_PHONE = 25


def accept_round_robin(stack: Stack) -> list[str]:
    convs = [conv_of(n) for n in range(PHONES)]
    for i in range(PER_PHONE):
        for conv in convs:
            assert stack.accept(conv, f"{conv}#{i}") > IngestOutcome.DUPLICATE
    return convs


def settled(stack: Stack, convs: list[str]) -> bool:
    return stack.service.store.pending_summary()[0] == 0 and all(
        len(stack.history(conv)) == PER_PHONE for conv in convs
    )


@pytest.mark.usefixtures("worker")
def test_many_phones_through_the_worker_keep_acceptance_order_exactly_once(
    stack: Stack,
) -> None:
    """20 phones x 25 messages, woken as the webhook wakes them: every history is exactly its
    acceptance order, and no lease, wake flag or queued message is left behind."""
    convs = accept_round_robin(stack)

    poll(lambda: settled(stack, convs))
    stack.join()

    for conv in convs:
        assert stack.history(conv) == [f"{conv}#{i}" for i in range(PER_PHONE)]
        assert len(stack.service.store.conversation_session_ids(conv)) == 1
    assert stack.client.keys("wa:c:*:lease") == []
    assert stack.client.keys("wa:c:*:wake") == []


@pytest.mark.usefixtures("worker")
def test_duplicate_wake_ups_run_but_change_nothing(stack: Stack) -> None:
    """Fifty extra wake-ups for a drained phone: the drains they start find nothing to apply
    (wake-ups arriving while the phone's drain runs in this process are folded into one more
    run after it, so there are at least one and at most fifty)."""
    convs = accept_round_robin(stack)
    poll(lambda: settled(stack, convs))
    stack.join()
    before = {conv: stack.history(conv) for conv in convs}
    drains_before = drains_total()

    for _ in range(50):
        stack.actors.drain_conversation.send(convs[0])
    stack.join()

    assert drains_before + 1 <= drains_total() <= drains_before + 50
    assert {conv: stack.history(conv) for conv in convs} == before
    assert len(stack.service.store.conversation_session_ids(convs[0])) == 1


@pytest.mark.usefixtures("worker")
def test_complete_session_actor_completes_after_the_messages_before_it(stack: Stack) -> None:
    """The operator actor goes through the inbox: the message accepted before it is applied
    first, then the session completes with the operator's reason."""
    conv = conv_of(1)
    stack.accept(conv, "m0")
    poll(lambda: stack.history(conv) == ["m0"])
    session_id = stack.service.store.latest_session_id(conv)
    assert session_id is not None
    stack.accept(conv, "m1")

    stack.actors.complete_session.send(session_id)
    poll(lambda: stack.service.store.status_of(session_id) == SessionStatus.COMPLETED)
    stack.join()

    session = stack.service.store.load(session_id)
    assert session is not None
    assert session.end_reason == "operator"
    assert [m.content for m in session.messages] == ["m0", "m1"]
    assert stack.service.store.inbox_depth(conv) == 0


@pytest.mark.usefixtures("worker")
def test_expire_session_actor_expires_an_active_session(stack: Stack) -> None:
    """The expire actor ends the session as expired, not completed."""
    conv = conv_of(1)
    stack.accept(conv, "m0")
    poll(lambda: stack.history(conv) == ["m0"])
    session_id = stack.service.store.latest_session_id(conv)
    assert session_id is not None

    stack.actors.expire_session.send(session_id, "fraud")
    poll(lambda: stack.service.store.status_of(session_id) == SessionStatus.EXPIRED)

    session = stack.service.store.load(session_id, include_messages=False)
    assert session is not None
    assert session.end_reason == "fraud"


@pytest.mark.usefixtures("worker")
def test_unknown_session_is_dropped_once_without_retries(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    """A complete for a session that does not exist is logged once and acknowledged: nothing
    is retried, dead-lettered or left in any inbox."""
    caplog.set_level(logging.WARNING)

    stack.actors.complete_session.send("no-such-session")
    stack.join(timeout_ms=5_000)

    dropped = [r for r in caplog.records if "unknown session was dropped" in r.getMessage()]
    assert len(dropped) == 1
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert stack.client.keys(f"{NAMESPACE}:*XQ*") == []
    assert stack.service.store.pending_summary() == (0, None)


def test_importing_the_actors_builds_no_broker() -> None:
    """In a fresh process, importing the actors module neither sets Dramatiq's broker nor
    declares anything: nothing is built at import."""
    code = (
        "import dramatiq.broker, wa_sessions.workers.actors; "
        "assert dramatiq.broker.global_broker is None, dramatiq.broker.global_broker"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert (proc.returncode, proc.stderr) == (0, "")


def test_the_dramatiq_cli_hook_sets_a_broker_on_redis_url_with_every_actor(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``setup_worker`` (what the Procfile's ``dramatiq`` line calls) leaves Dramatiq's global
    broker on REDIS_URL, under the service's namespace, with the actors declared on it."""
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("ENVIRONMENT", "development")
    previous = dramatiq.broker.global_broker
    try:
        worker = bootstrap.setup_worker()
        broker = dramatiq.get_broker()
        assert broker is worker.broker
        assert isinstance(broker, RedisBroker)
        assert broker.namespace == NAMESPACE
        assert broker.client.connection_pool.connection_kwargs["port"] == int(
            redis_url.rsplit(":", 1)[1].split("/")[0]
        )
        assert broker.get_declared_actors() == set(ACTOR_NAMES)
        assert broker.get_declared_queues() == {QUEUE}
        worker.close()
    finally:
        dramatiq.broker.global_broker = previous


def stack_history(service: SessionService, conv: str) -> list[Message]:
    store = service.store
    return [m for sid in store.conversation_session_ids(conv) for m in store.messages(sid)]


def test_the_procfile_worker_command_drains_a_phone(redis_url: str) -> None:
    """The Dramatiq CLI with the hook, as the Procfile runs it: a wake-up sent by name is
    consumed, the phone's inbox applied and the message answered (the offline defaults)."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushall()
    service = SessionService(client)
    conv = conv_of(7)
    message = Message(id="SM" + uuid.uuid4().hex, content="hello", timestamp=datetime.now(UTC))
    Inbox(service.store).accept(conv, message, accepted_ms=service.now_ms())
    broker = bootstrap.build_broker(dev_settings(redis_url))
    drain_sender(broker)(conv)
    env = {**os.environ, "REDIS_URL": redis_url, "ENVIRONMENT": "development"}
    command = [
        *(sys.executable, "-m", "dramatiq", "wa_sessions.bootstrap:setup_worker"),
        *("wa_sessions.workers.actors", "--processes", "1", "--threads", "1"),
    ]
    worker = subprocess.Popen(command, cwd=ROOT, env=env)
    try:
        poll(lambda: len(stack_history(service, conv)) == 2, timeout=30)
        inbound, reply = stack_history(service, conv)
        assert (inbound.direction, inbound.content) == (MessageDirection.INBOUND, "hello")
        assert reply.direction is MessageDirection.OUTBOUND
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        broker.client.close()
        client.close()


def accept_async_round_robin(stack: Stack, redis_url: str) -> tuple[list[str], list[int]]:
    """What the webhook does: the asyncio inbox with the drain wake-up built in, so the ingest
    script enqueues the Dramatiq message itself."""
    convs = [conv_of(n) for n in range(PHONES)]

    async def main() -> list[int]:
        client = redis.asyncio.Redis.from_url(redis_url)
        inbox = AsyncInbox(
            client,
            stack.service.store.keys,
            wake_message=DrainWakeMessages(QueueKeys(), DRAIN_CONVERSATION),
        )
        outcomes = []
        for i in range(PER_PHONE):
            outcomes += await asyncio.gather(
                *(
                    inbox.accept(
                        conv,
                        Message(
                            id="SM" + uuid.uuid4().hex,
                            content=f"{conv}#{i}",
                            timestamp=datetime.now(UTC),
                        ),
                        accepted_ms=stack.service.now_ms(),
                    )
                    for conv in convs
                )
            )
        inbox.close()
        await client.aclose()
        return [int(o) for o in outcomes]

    return convs, asyncio.run(main())


def test_wake_ups_enqueued_by_the_ingest_script_are_dramatiq_messages_of_the_drain(
    stack: Stack, redis_url: str
) -> None:
    """The ingest script writes the wake-up in Dramatiq's layout: one per phone, decoded by
    Dramatiq as the drain actor's message for that conversation."""
    convs, outcomes = accept_async_round_robin(stack, redis_url)
    assert outcomes[:PHONES] == [IngestOutcome.ACCEPTED_WOKEN] * PHONES
    assert set(outcomes[PHONES:]) == {IngestOutcome.ACCEPTED}
    queue_key = f"{NAMESPACE}:{QUEUE}"
    ids = stack.client.lrange(queue_key, 0, -1)
    assert len(ids) == PHONES
    queued = [
        dramatiq.Message.decode(stack.client.hget(f"{queue_key}.msgs", i).encode()) for i in ids
    ]
    assert [(m.actor_name, m.queue_name, m.args, m.kwargs) for m in queued] == [
        ("drain_conversation", QUEUE, (conv,), {}) for conv in convs
    ]
    assert [m.options["redis_message_id"] for m in queued] == ids


@pytest.mark.usefixtures("worker")
def test_a_worker_runs_the_wake_ups_the_ingest_script_enqueued(
    stack: Stack, redis_url: str
) -> None:
    """The webhook's one-round-trip path end to end through a real Dramatiq worker: every
    message applied in acceptance order, every wake-up acknowledged."""
    convs, _ = accept_async_round_robin(stack, redis_url)
    poll(lambda: settled(stack, convs))
    stack.join()
    for conv in convs:
        assert stack.history(conv) == [f"{conv}#{i}" for i in range(PER_PHONE)]
