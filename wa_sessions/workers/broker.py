"""Dramatiq broker setup, called before the actors load.

``dramatiq wa_sessions.workers.broker:setup_broker wa_sessions.workers.actors`` runs it in every
worker process; the web process and the scheduler call it to enqueue wake-ups.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
from typing import Any
from uuid import uuid4

import dramatiq
from dramatiq import Broker, Middleware, Worker
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import current_millis

from wa_sessions.config import Settings
from wa_sessions.metrics.middleware import ActorMetrics
from wa_sessions.redaction import install_log_redaction
from wa_sessions.statemachine.redis.store import QueuedWake

#: Dramatiq queue of every actor here: wake-ups are tiny and uniform, one queue suffices.
QUEUE = "wa_sessions"
#: Dramatiq's own keys live under this prefix, beside (not inside) the session keys.
NAMESPACE = "wa-dramatiq"

#: Longest an idle worker waits between polls of the queue. Dramatiq backs off up to its worker
#: timeout (1 s, not settable from its CLI) when the queue is empty, which would put up to a
#: second of lag on the first message after a quiet spell; 50 ms costs ~20 cheap polls a second
#: per worker process when idle.
IDLE_POLL_MS = 50

_settings: Settings | None = None
_broker: RedisBroker | None = None


#: Dramatiq's own setting; when the deployment sets it, it wins over ``OneMessagePerThread``.
PREFETCH_ENV = "dramatiq_queue_prefetch"


class OneMessagePerThread(Middleware):
    """Caps each worker process at one wake-up per thread, running or waiting.

    Dramatiq prefetches twice as many messages as a process has threads. When a process' threads
    are all inside slow calls (OpenAI or Twilio hanging for some phones), the wake-ups it holds
    wait for them, up to a whole retry budget, while another process' threads sit idle. A
    wake-up is a few bytes and a drain does the real work, so nothing is gained by holding
    more: with this cap a process takes a message only when it has a thread for it.
    """

    def before_worker_boot(self, broker: Broker, worker: Worker) -> None:
        if not os.environ.get(PREFETCH_ENV):
            worker.queue_prefetch = worker.worker_threads


class LowLatencyRedisBroker(RedisBroker):
    """Dramatiq's Redis broker with the idle poll capped at ``IDLE_POLL_MS``."""

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> Any:
        return super().consume(queue_name, prefetch, timeout=min(timeout, IDLE_POLL_MS))


def setup_broker(settings: Settings | None = None) -> RedisBroker:
    """Creates the Redis broker from settings and makes it Dramatiq's global broker.

    Actors already imported are re-bound to it, so a process (or a test run) that sets the
    broker up again sends to the new one. Every process of the service (web, worker, scheduler)
    calls this first, so it also masks phone numbers in all of the process's log records:
    Dramatiq logs a failed message with its arguments, a conversation key."""
    global _settings, _broker
    install_log_redaction()
    from wa_sessions.bootstrap import load_settings

    _settings = settings or load_settings()
    broker = LowLatencyRedisBroker(url=_settings.redis_url, namespace=NAMESPACE)  # type: ignore[no-untyped-call]
    broker.add_middleware(ActorMetrics())
    broker.add_middleware(OneMessagePerThread())
    dramatiq.set_broker(broker)
    _broker = broker
    actors = sys.modules.get("wa_sessions.workers.actors")
    if actors is not None:
        actors.bind(broker)
    return broker


def require_broker() -> RedisBroker:
    """The broker set up by ``setup_broker``. Importing the actors before it is a bug: they would
    bind to Dramatiq's default broker, a server on localhost that is not ours."""
    if _broker is None:
        raise RuntimeError("call wa_sessions.workers.broker.setup_broker() before importing actors")
    return _broker


def queued_age_ms(broker: RedisBroker, queue: str = QUEUE) -> int | None:
    """Age of the oldest message waiting in a Dramatiq queue (by its ``message_timestamp``),
    None when the queue is empty. Reads Dramatiq's layout: ids in ``<ns>:<queue>``, bodies in
    ``<ns>:<queue>.msgs``."""
    client = broker.client
    key = f"{broker.namespace}:{queue}"
    head = client.lindex(key, 0)
    if head is None:
        return None
    data = client.hget(f"{key}.msgs", head)
    if data is None:
        return None
    raw = data.encode() if isinstance(data, str) else bytes(data)
    return max(0, current_millis() - dramatiq.Message.decode(raw).message_timestamp)


def current_settings() -> Settings:
    """The settings the broker was set up with (the worker's composition root reads them)."""
    global _settings
    if _settings is None:
        from wa_sessions.bootstrap import load_settings

        _settings = load_settings()
    return _settings


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

    def __init__(self, broker: RedisBroker, actor: dramatiq.Actor[[str], None]) -> None:
        self.queue_key = f"{broker.namespace}:{actor.queue_name}"
        self.messages_key = f"{self.queue_key}.msgs"
        self.queue_name = actor.queue_name
        self.actor_name = actor.actor_name
        self._prefix = uuid4().hex
        self._counter = itertools.count()
        self._templated = type(dramatiq.get_encoder()) is dramatiq.JSONEncoder
        dumps = json.dumps
        self._head = (
            f'{{"queue_name":{dumps(actor.queue_name)},"actor_name":{dumps(actor.actor_name)},'
            '"args":['
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
