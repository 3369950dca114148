"""Worker throughput: messages preloaded through the ingest script, then the Procfile's worker
started and timed until every message is applied; beside it, Dramatiq's own ceiling (a no-op
actor, same broker setup, processes and threads) timed until its queue is acknowledged.

Both clocks start when the first worker process takes its first batch from the Dramatiq queue
(the queue's length drops), so interpreter start-up and imports are not counted, and stop when
the last message is applied (the pending index is empty) or, for the no-op actor, acknowledged.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from uuid import uuid4

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

from wa_sessions.bootstrap import build_worker
from wa_sessions.config import Settings
from wa_sessions.statemachine.models import MessageDirection
from wa_sessions.statemachine.redis.keys import SessionFieldPrefix
from wa_sessions.statemachine.service import SessionService
from wa_sessions.workers.handlers import WorkerDeps
from wa_sessions.workers.queues import NAMESPACE, QUEUE

from . import noop
from .inproc import fast_messages, ingest_pipelined
from .load import BODY
from .procs import ADMIN_TOKEN, AUTH_TOKEN, Processes, RedisSnapshot, procfile


@dataclass
class Broker:
    """The service's broker and actors in this process, for enqueueing only."""

    broker: RedisBroker
    drain: dramatiq.Actor[[str], None]
    noop: dramatiq.Actor[[int], None]
    deps: WorkerDeps

    @classmethod
    def setup(cls, url: str) -> Broker:
        """Once per process: the composition root's broker, actors and worker dependencies."""
        if url not in _BROKERS:
            worker = build_worker(bench_settings(url))
            _BROKERS[url] = cls(
                worker.broker,
                worker.actors.drain_conversation,
                noop.declare_noop(worker.broker),
                worker.deps,
            )
        return _BROKERS[url]


_BROKERS: dict[str, Broker] = {}


def bench_settings(url: str) -> Settings:
    """The settings the bench's processes get (``Processes.env``), as values."""
    return Settings(redis_url=url, twilio_auth_token=AUTH_TOKEN, admin_token=ADMIN_TOKEN)


def worker_deps(url: str) -> WorkerDeps:
    """What a worker process builds for itself: order extraction and replies included."""
    return Broker.setup(url).deps


def stage_many(
    client: redis.Redis, actor: dramatiq.Actor[..., None], args: Iterable[object]
) -> Callable[[], int]:
    """Writes ``actor``'s messages in Dramatiq's Redis layout (the body under its
    ``redis_message_id`` in ``<queue>.msgs``) with their ids in a staging list, pipelined 1,000
    at a time; returns ``release``, which makes them all visible to the workers in one atomic
    RENAME onto the queue and returns how many."""
    queue_key = f"{NAMESPACE}:{actor.queue_name}"
    staging = f"{queue_key}.staging"
    count = 0
    pipe = client.pipeline(transaction=False)
    for count, arg in enumerate(args, 1):
        message = actor.message(arg).copy(options={"redis_message_id": str(uuid4())})
        message_id = message.options["redis_message_id"]
        pipe.hset(f"{queue_key}.msgs", message_id, message.encode())
        pipe.rpush(staging, message_id)
        if count % 1000 == 0:
            pipe.execute()
            pipe = client.pipeline(transaction=False)
    pipe.execute()

    def release() -> int:
        if count:
            client.rename(staging, queue_key)
        return count

    return release


@dataclass
class WorkerRun:
    messages: int
    seconds: float
    cpu_us: float
    redis: dict[str, float]

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


class WorkerGroup:
    """A Procfile worker command running with ``processes`` processes for several runs."""

    def __init__(self, procs: Processes, name: str, processes: int) -> None:
        self.procs = procs
        self.name = name
        self.processes = processes

    def __enter__(self) -> WorkerGroup:
        command = procfile("worker")
        if self.name == "noop":
            command = command.replace(
                "wa_sessions.bootstrap:setup_worker wa_sessions.workers.actors",
                "bench.noop:setup bench.noop",
            )
        self.procs.start(self.name, command, WORKER_PROCESSES=str(self.processes))
        return self

    def __exit__(self, *exc: object) -> None:
        self.procs.stop(self.name, kill=True)

    def timed(
        self,
        client: redis.Redis,
        release: Callable[[], int],
        finished: Callable[[], bool],
        messages: int,
        on_start: Callable[[Processes], None] | None = None,
        timeout_seconds: float = 300,
    ) -> WorkerRun:
        procs, name = self.procs, self.name
        queue_key = f"{NAMESPACE}:{QUEUE if name == 'worker' else 'bench_noop'}"
        queued = release()
        deadline = time.monotonic() + timeout_seconds
        while int(client.llen(queue_key)) >= queued:
            if time.monotonic() > deadline or procs.procs[name].poll() is not None:
                raise RuntimeError(f"{name} never started consuming")
            time.sleep(0.001)
        if on_start is not None:
            on_start(procs)
        start = time.perf_counter()
        cpu_before = procs.cpu_seconds(name)
        redis_before = RedisSnapshot.take(client)
        while not finished():
            if time.monotonic() > deadline or procs.procs[name].poll() is not None:
                raise RuntimeError(f"{name} did not finish in {timeout_seconds} s")
            time.sleep(0.002)
        seconds = time.perf_counter() - start
        cpu = procs.cpu_seconds(name) - cpu_before
        redis_after = RedisSnapshot.take(client)
        return WorkerRun(
            messages=messages,
            seconds=seconds,
            cpu_us=cpu * 1e6 / messages,
            redis=redis_after.since(redis_before, messages),
        )


def run_noop(group: WorkerGroup, broker: Broker, client: redis.Redis, n: int) -> WorkerRun:
    client.flushall()
    release = stage_many(client, broker.noop, range(n))
    msgs_key = f"{NAMESPACE}:bench_noop.msgs"
    return group.timed(client, release, lambda: int(client.hlen(msgs_key)) == 0, n)


def run_service(
    group: WorkerGroup,
    broker: Broker,
    client: redis.Redis,
    phones: int,
    per_phone: int,
    on_start: Callable[[Processes], None] | None = None,
) -> WorkerRun:
    client.flushall()
    service = SessionService(client)
    total = phones * per_phone
    accepted, woken = ingest_pipelined(client, service, fast_messages(phones, per_phone, BODY))
    assert accepted == total, (accepted, total)
    release = stage_many(client, broker.drain, woken)
    pending = service.store.keys.pending
    run = group.timed(
        client, release, lambda: int(client.zcard(pending)) == 0, total, on_start=on_start
    )
    applied = applied_count(client, service)
    assert applied == total, f"{applied} of {total} applied"
    return run


def applied_count(client: redis.Redis, service: SessionService) -> int:
    """Inbound messages applied to sessions (replies, which the worker may add, not counted)."""
    keys = service.store.keys
    sessions = client.hgetall(keys.session_conv)
    inbound = SessionFieldPrefix.BY_DIRECTION + MessageDirection.INBOUND
    pipe = client.pipeline(transaction=False)
    for sid, conv in sessions.items():
        pipe.hget(keys.session(str(conv), str(sid)), inbound)
    return sum(int(c or 0) for c in pipe.execute())
