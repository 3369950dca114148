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
from dramatiq.common import current_millis

from wa_sessions.config import Settings
from wa_sessions.statemachine.service import SessionService
from wa_sessions.workers.broker import NAMESPACE, QUEUE, setup_broker
from wa_sessions.workers.handlers import WorkerDeps

from .inproc import fast_messages, ingest_pipelined
from .load import BODY
from .procs import ADMIN_TOKEN, AUTH_TOKEN, Processes, RedisSnapshot, procfile


@dataclass
class Broker:
    """The service's broker and actors in this process, for enqueueing only."""

    broker: RedisBroker
    drain: dramatiq.Actor[[str], None]
    noop: dramatiq.Actor[[int], None]

    @classmethod
    def setup(cls, url: str) -> Broker:
        """Once per process: actors bind to the broker set up first."""
        if url not in _BROKERS:
            broker = setup_broker(bench_settings(url))
            from wa_sessions.workers import actors  # after setup_broker, as the service does

            from . import noop

            _BROKERS[url] = cls(broker, actors.drain_conversation, noop.noop)
        return _BROKERS[url]


_BROKERS: dict[str, Broker] = {}


def bench_settings(url: str) -> Settings:
    """The settings the bench's processes get (``Processes.env``), as values."""
    return Settings(redis_url=url, twilio_auth_token=AUTH_TOKEN, admin_token=ADMIN_TOKEN)


def worker_deps(url: str) -> WorkerDeps:
    """What a worker process builds for itself: order extraction and replies included."""
    Broker.setup(url)
    from wa_sessions.bootstrap import build_worker_deps

    return build_worker_deps(bench_settings(url))


def enqueue_many(
    broker: RedisBroker, actor: dramatiq.Actor[..., None], args: Iterable[object]
) -> int:
    """``actor.send`` for many messages, pipelined 1,000 at a time through Dramatiq's own
    dispatch script (what ``RedisBroker.enqueue`` runs, one round trip each)."""
    script = broker.scripts["dispatch"]
    broker.client.script_load(script.script)
    sent = 0
    pipe = broker.client.pipeline(transaction=False)
    for n, arg in enumerate(args, 1):
        message = actor.message(arg).copy(options={"redis_message_id": str(uuid4())})
        broker.emit_before("enqueue", message, None)
        pipe.evalsha(
            script.sha,
            1,
            broker.namespace,
            "enqueue",
            current_millis(),
            message.queue_name,
            broker.broker_id,
            broker.heartbeat_timeout,
            broker.dead_message_ttl,
            0,
            broker._max_unpack_size(),  # type: ignore[no-untyped-call]
            message.options["redis_message_id"],
            message.encode(),
        )
        sent = n
        if n % 1000 == 0:
            pipe.execute()
            pipe = broker.client.pipeline(transaction=False)
    pipe.execute()
    return sent


@dataclass
class WorkerRun:
    messages: int
    seconds: float
    cpu_us: float
    redis: dict[str, float]
    #: From the first fetch until every worker process had fetched (start-up not overlapping).
    skew_seconds: float

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


def _timed(
    procs: Processes,
    name: str,
    command: str,
    processes: int,
    client: redis.Redis,
    queued: int,
    finished: Callable[[], bool],
    messages: int,
    on_start: Callable[[Processes], None] | None = None,
    timeout_seconds: float = 300,
) -> WorkerRun:
    queue_key = f"{NAMESPACE}:{QUEUE if name == 'worker' else 'bench_noop'}"
    heartbeats = f"{NAMESPACE}:__heartbeats__"
    started_ms = int(time.time() * 1000)
    procs.start(name, command, WORKER_PROCESSES=str(processes))
    try:
        deadline = time.monotonic() + timeout_seconds
        while int(client.llen(queue_key)) >= queued:
            if time.monotonic() > deadline or procs.procs[name].poll() is not None:
                raise RuntimeError(f"{name} never started consuming")
            time.sleep(0.002)
        if on_start is not None:
            on_start(procs)
        start = time.perf_counter()
        cpu_before = procs.cpu_seconds(name)
        redis_before = RedisSnapshot.take(client)
        # Each worker process's broker records a heartbeat with every fetch and ack.
        skew: float | None = None
        while not finished():
            if skew is None and int(client.zcount(heartbeats, started_ms, "+inf")) >= processes:
                skew = time.perf_counter() - start
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not finish in {timeout_seconds} s")
            time.sleep(0.002)
        seconds = time.perf_counter() - start
        cpu = procs.cpu_seconds(name) - cpu_before
        redis_after = RedisSnapshot.take(client)
    finally:
        procs.stop(name, kill=True)
    return WorkerRun(
        messages=messages,
        seconds=seconds,
        cpu_us=cpu * 1e6 / messages,
        redis=redis_after.since(redis_before, messages),
        skew_seconds=seconds if skew is None else skew,
    )


def run_noop(
    procs: Processes, broker: Broker, client: redis.Redis, n: int, processes: int
) -> WorkerRun:
    client.flushall()
    enqueue_many(broker.broker, broker.noop, range(n))
    msgs_key = f"{NAMESPACE}:bench_noop.msgs"
    command = procfile("worker").replace("wa_sessions.workers.actors", "bench.noop")
    return _timed(
        procs,
        "noop",
        command,
        processes,
        client,
        n,
        lambda: int(client.hlen(msgs_key)) == 0,
        n,
    )


def run_service(
    procs: Processes,
    broker: Broker,
    client: redis.Redis,
    phones: int,
    per_phone: int,
    processes: int,
    on_start: Callable[[Processes], None] | None = None,
) -> WorkerRun:
    client.flushall()
    service = SessionService(client)
    total = phones * per_phone
    accepted, woken = ingest_pipelined(client, service, fast_messages(phones, per_phone, BODY))
    assert accepted == total, (accepted, total)
    enqueue_many(broker.broker, broker.drain, woken)
    pending = service.store.keys.pending
    run = _timed(
        procs,
        "worker",
        procfile("worker"),
        processes,
        client,
        len(woken),
        lambda: int(client.zcard(pending)) == 0,
        total,
        on_start,
    )
    applied = applied_count(client, service)
    assert applied == total, f"{applied} of {total} applied"
    return run


def applied_count(client: redis.Redis, service: SessionService) -> int:
    """Inbound messages applied to sessions (replies, which the worker may add, not counted)."""
    keys = service.store.keys
    sids = client.zrange(keys.all, 0, -1)
    pipe = client.pipeline(transaction=False)
    for sid in sids:
        pipe.hget(keys.session(str(sid)), "n:inbound")
    return sum(int(c or 0) for c in pipe.execute())
