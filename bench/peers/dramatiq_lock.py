"""Peer 2, one Dramatiq message per inbound message with a per-phone Redis lock in the actor:
the webhook checks the signature and enqueues the form; the actor takes the phone's lock
(``SET NX PX`` with a token of its own, released by a compare-and-delete script), runs the
design document's flow (``common.handle_message``), and releases it. A message whose phone is
busy is retried shortly through Dramatiq's ``Retry(delay=...)``.

Web: ``uvicorn bench.peers.dramatiq_lock:app`` (one process); workers: ``dramatiq
bench.peers.dramatiq_lock --processes 2 --threads 8``, the Procfile's defaults, with ours'
broker tuning (``LowLatencyRedisBroker``, ``OneMessagePerThread``). The broker is set up at
import (a bench module, not the service).
"""

from __future__ import annotations

import os
import uuid

import dramatiq
import redis

from wa_sessions.workers.broker import LowLatencyRedisBroker, OneMessagePerThread

from .common import PEER_NAMESPACE, PEER_QUEUE, create_app, deps, handle_message

LOCK_MS = 60_000
BUSY_RETRY_MS = 100
_RELEASE = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)

# Ours' broker tuning, so only the design differs: idle polls capped at 50 ms (Dramatiq's own
# back off to a second when the queue is empty) and one message per worker thread.
broker = LowLatencyRedisBroker(url=os.environ["REDIS_URL"], namespace=PEER_NAMESPACE)
broker.add_middleware(OneMessagePerThread())
dramatiq.set_broker(broker)
_client = redis.Redis.from_url(os.environ["REDIS_URL"])
_release = _client.register_script(_RELEASE)


@dramatiq.actor(
    queue_name=PEER_QUEUE, max_retries=1000, min_backoff=BUSY_RETRY_MS, max_backoff=1000
)
def handle_inbound(form: dict[str, str]) -> None:
    key = f"peer:lock:{form['From']}"
    token = uuid.uuid4().hex
    if not _client.set(key, token, nx=True, px=LOCK_MS):
        raise dramatiq.Retry("phone busy", delay=BUSY_RETRY_MS)
    try:
        handle_message(deps(), form)
    finally:
        _release(keys=[key], args=[token])


app = create_app(handle_inbound.send)
