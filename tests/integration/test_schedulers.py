"""Several schedulers at once (README: "Several schedulers may run at once; both jobs are
atomic Lua passes"): two schedulers' re-drive passes, expiry sweeps and session-end metric
jobs run concurrently against one Redis, each on its own connection, and every conversation is
woken once, every idle session expired once and every session end counted once."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest
import redis
from prometheus_client import REGISTRY

from tests.conftest import FakeClock
from tests.support import poll
from wa_sessions.metrics.events import observe_ended_sessions
from wa_sessions.statemachine import (
    Conversation,
    Message,
    SessionCreate,
    SessionService,
    SessionStatus,
)
from wa_sessions.statemachine.redis.inbox import Inbox, InboxPolicy
from wa_sessions.workers import handlers
from wa_sessions.workers.handlers import WorkerDeps

BUSINESS = "+14155238886"
SCHEDULERS = 2
ROUNDS = 5
T = TypeVar("T")


def phone(i: int) -> str:
    return f"+1415557{i:04d}"


@pytest.fixture
def woken() -> list[list[str]]:
    """The conversations each scheduler's re-drive pass woke, per scheduler."""
    return [[] for _ in range(SCHEDULERS)]


@pytest.fixture
def schedulers(
    redis_url: str, clock: FakeClock, woken: list[list[str]]
) -> Iterator[list[WorkerDeps]]:
    """Two schedulers' dependencies, each on a Redis connection of its own."""
    clients = [redis.Redis.from_url(redis_url, decode_responses=True) for _ in range(SCHEDULERS)]
    deps = []
    for client, wakes in zip(clients, woken, strict=True):
        service = SessionService(client, clock=clock, session_timeout_hours=1.0)
        deps.append(WorkerDeps(service=service, inbox=Inbox(service.store), wake=wakes.append))
    yield deps
    for client in clients:
        client.close()


def at_once(
    job: Callable[[WorkerDeps], T], schedulers: list[WorkerDeps], rounds: int = ROUNDS
) -> list[T]:
    """Runs ``job`` ``rounds`` times in each scheduler's thread, all released together."""
    start = threading.Barrier(len(schedulers))
    results: list[T] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def run(deps: WorkerDeps) -> None:
        start.wait(timeout=10)
        try:
            for _ in range(rounds):
                result = job(deps)
                with lock:
                    results.append(result)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(deps,)) for deps in schedulers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert not any(thread.is_alive() for thread in threads)
    return results


def sample(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def test_concurrent_redrive_passes_wake_each_orphaned_inbox_once(
    schedulers: list[WorkerDeps],
    woken: list[list[str]],
    redis_client: redis.Redis,
    clock: FakeClock,
) -> None:
    """100 inboxes with entries, no drain and no wake-up queued: two schedulers' re-drive
    passes, five rounds each at once, wake each conversation exactly once between them."""
    store = schedulers[0].service.store
    # Accepted with a wake flag that lapses at once, as if the wake-up had been lost.
    inbox = Inbox(store, InboxPolicy(lease_seconds=0.01))
    convs = [Conversation(phone(i), BUSINESS).key for i in range(100)]
    for conv in convs:
        message = Message(id="SM" + uuid.uuid4().hex, content="hi", timestamp=clock())
        inbox.accept(conv, message, accepted_ms=int(clock().timestamp() * 1000))
    poll(lambda: not any(redis_client.exists(store.keys.conv_wake(c)) for c in convs))
    redrives = sample("wa_sessions_redrives_total")

    counts = at_once(handlers.redrive, schedulers)

    assert sorted(conv for wakes in woken for conv in wakes) == sorted(convs)
    assert sum(counts) == len(convs)
    assert sample("wa_sessions_redrives_total") == redrives + len(convs)


def test_concurrent_expiry_sweeps_expire_each_idle_session_once_and_count_each_end_once(
    schedulers: list[WorkerDeps], clock: FakeClock
) -> None:
    """300 sessions idle past the timeout: two schedulers' sweeps at once expire each of them
    once, and their session-end metric jobs at once count each end once."""
    service = schedulers[0].service
    ids = [
        service.create_session(SessionCreate(phone_number=phone(i))).session_id for i in range(300)
    ]
    fresh = service.create_session(SessionCreate(phone_number=phone(999))).session_id
    clock.advance(minutes=59)
    service.add_message(phone(999), "still here")  # keeps one session active
    clock.advance(minutes=2)
    swept = sample("wa_sessions_sweep_expired_total")
    ended = REGISTRY.get_sample_value("wa_sessions_sessions_ended_total", {"outcome": "expired"})

    expired = at_once(handlers.expire_idle_sessions, schedulers)
    observed = at_once(lambda deps: observe_ended_sessions(deps.service.store), schedulers)

    assert sum(expired) == len(ids)
    assert all(service.store.status_of(sid) == SessionStatus.EXPIRED for sid in ids)
    assert service.store.status_of(fresh) == SessionStatus.ACTIVE
    assert sample("wa_sessions_sweep_expired_total") == swept + len(ids)
    assert sum(observed) == len(ids)
    assert REGISTRY.get_sample_value(
        "wa_sessions_sessions_ended_total", {"outcome": "expired"}
    ) == (ended or 0.0) + len(ids)
