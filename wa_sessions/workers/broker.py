"""The Dramatiq broker of this service, and the wake-up messages written in its layout.

``bootstrap`` builds the broker for each process that sends or runs actors; nothing here keeps
one, and nothing is built at import.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any
from uuid import uuid4

import dramatiq
import redis
from dramatiq import Broker, Middleware, Worker
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import current_millis

from wa_sessions.metrics.middleware import ActorMetrics
from wa_sessions.statemachine.redis.calls import QueuedWake
from wa_sessions.workers.queues import NAMESPACE, QueueKeys

#: Longest an idle worker waits between polls of the queue. Dramatiq backs off up to its worker
#: timeout (1 s, not settable from its CLI) when the queue is empty, which would put up to a
#: second of lag on the first message after a quiet spell; 50 ms costs ~20 cheap polls a second
#: per worker process when idle.
IDLE_POLL_MS = 50


class OneMessagePerThread(Middleware):
    """Caps each worker process at one wake-up per thread, running or waiting.

    Dramatiq prefetches twice as many messages as a process has threads. When a process' threads
    are all inside slow calls (OpenAI or Twilio hanging for some phones), the wake-ups it holds
    wait for them, up to a whole retry budget, while another process' threads sit idle. A
    wake-up is a few bytes and a drain does the real work, so nothing is gained by holding
    more: with this cap a process takes a message only when it has a thread for it.
    """

    def before_worker_boot(self, broker: Broker, worker: Worker) -> None:
        worker.queue_prefetch = worker.worker_threads


class StopDrainLoop(Middleware):
    """Gives the drains in flight on the process' drain loop a grace period to finish when the
    worker shuts down (SIGTERM); what is cut off is redone by the phone's next drain."""

    def __init__(self, stop: Callable[[], None]) -> None:
        self.stop = stop

    def before_worker_shutdown(self, broker: Broker, worker: Worker) -> None:
        self.stop()


class LowLatencyRedisBroker(RedisBroker):
    """Dramatiq's Redis broker with the idle poll capped at ``IDLE_POLL_MS``."""

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> Any:
        return super().consume(queue_name, prefetch, timeout=min(timeout, IDLE_POLL_MS))


def build_broker(
    redis_url: str, *, one_message_per_thread: bool = True, namespace: str = NAMESPACE
) -> RedisBroker:
    """The service's Redis broker with its middleware (actor metrics and, unless the
    deployment chose its own prefetch, one message per thread). It is not made Dramatiq's
    global broker here: the Dramatiq CLI hook does that."""
    broker = LowLatencyRedisBroker(url=redis_url, namespace=namespace)  # type: ignore[no-untyped-call]
    broker.add_middleware(ActorMetrics())
    if one_message_per_thread:
        broker.add_middleware(OneMessagePerThread())
    return broker


def queued_age_ms(client: redis.Redis, queue: QueueKeys) -> int | None:
    """Age of the oldest message waiting in a Dramatiq queue (by its ``message_timestamp``),
    None when the queue is empty."""
    head = client.lindex(queue.ready, 0)
    if head is None:
        return None
    data = client.hget(queue.messages, head)
    if data is None:
        return None
    raw = data.encode() if isinstance(data, str) else bytes(data)
    return max(0, current_millis() - dramatiq.Message.decode(raw).message_timestamp)


class DrainWakeMessages:
    """Builds the Dramatiq message that wakes a conversation's drain, for the webhook's ingest
    script to enqueue in the same round trip as the message it wakes for (``QueuedWake``).

    It writes what ``RedisBroker.enqueue`` writes for a message without a delay: the encoded
    message under a fresh ``redis_message_id`` in ``<namespace>:<queue>.msgs`` and that id on
    ``<namespace>:<queue>``. What it skips: the broker's ``before/after_enqueue`` middleware
    hooks (none of this service's middleware has them; Dramatiq's Prometheus middleware, which
    counts enqueues there, is not used) and the dispatch script's heartbeat and maintenance,
    which the consuming workers run on every fetch. The layout is Dramatiq 2.x's (pinned in
    constraints.txt); ``tests/integration/test_actors.py`` proves a real worker runs it.

    One is built for every webhook request (whether it wakes is known only inside the script),
    so it is a string template: ids are a random per-process prefix and a counter, not a uuid4
    each, and the JSON is Dramatiq's ``JSONEncoder`` output for ``Message.asdict()`` (the unit
    tests compare the bytes). With another global encoder it falls back to ``Message.encode``."""

    def __init__(self, queue: QueueKeys, actor_name: str) -> None:
        self.queue_key = queue.ready
        self.messages_key = queue.messages
        self.queue_name = queue.queue
        self.actor_name = actor_name
        self._prefix = uuid4().hex
        self._counter = itertools.count()
        self._templated = type(dramatiq.get_encoder()) is dramatiq.JSONEncoder
        dumps = json.dumps
        self._head = (
            f'{{"queue_name":{dumps(queue.queue)},"actor_name":{dumps(actor_name)},"args":['
        )

    def __call__(self, conv: str) -> QueuedWake:
        message_id = f"{self._prefix}-{next(self._counter)}"
        return QueuedWake(
            self.queue_key, self.messages_key, message_id, self.encode(conv, message_id)
        )

    def encode(self, conv: str, message_id: str, timestamp: int | None = None) -> bytes:
        timestamp = current_millis() if timestamp is None else timestamp
        if not self._templated:
            return dramatiq.Message(
                queue_name=self.queue_name,
                actor_name=self.actor_name,
                args=(conv,),
                kwargs={},
                options={"redis_message_id": message_id},
                message_id=message_id,
                message_timestamp=timestamp,
            ).encode()
        return (
            f'{self._head}{json.dumps(conv)}],"kwargs":{{}},"options":{{"redis_message_id":'
            f'"{message_id}"}},"message_id":"{message_id}","message_timestamp":{timestamp}}}'
        ).encode()
