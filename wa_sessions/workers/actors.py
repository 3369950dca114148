"""Dramatiq actors: thin wrappers over ``handlers``; the broker must be set up first.

A ``drain_conversation`` message is only a wake-up: order and exactly-once come from the
conversation's inbox and lease, so duplicates, retries and reordering of these messages are
harmless.
"""

from __future__ import annotations

import logging

import dramatiq
from dramatiq import Broker

from wa_sessions.errors import SessionNotFound
from wa_sessions.workers import handlers
from wa_sessions.workers.broker import QUEUE, current_settings, require_broker

log = logging.getLogger(__name__)
_broker = require_broker()

_deps: handlers.WorkerDeps | None = None


def configure(deps: handlers.WorkerDeps | None) -> None:
    """Injects the worker's dependencies (tests do; workers build them on first use)."""
    global _deps
    _deps = deps


def deps() -> handlers.WorkerDeps:
    global _deps
    if _deps is None:
        from wa_sessions.bootstrap import build_worker_deps

        _deps = build_worker_deps(current_settings().check_secure())
    return _deps


# Transient failures (Redis down) retry with backoff; the re-drive pass covers what they miss.
_MAX_RETRIES = 10
_MIN_BACKOFF_MS = 200
_MAX_BACKOFF_MS = 10_000


@dramatiq.actor(
    broker=_broker,
    queue_name=QUEUE,
    max_retries=_MAX_RETRIES,
    min_backoff=_MIN_BACKOFF_MS,
    max_backoff=_MAX_BACKOFF_MS,
)
def drain_conversation(conv: str) -> None:
    # Handed to the process' drain loop: the thread is free again as soon as a drain slot is.
    deps().runner().submit(conv)


@dramatiq.actor(
    broker=_broker,
    queue_name=QUEUE,
    max_retries=_MAX_RETRIES,
    min_backoff=_MIN_BACKOFF_MS,
    max_backoff=_MAX_BACKOFF_MS,
)
def complete_session(session_id: str, reason: str = "operator") -> None:
    _request("complete", session_id, reason)


@dramatiq.actor(
    broker=_broker,
    queue_name=QUEUE,
    max_retries=_MAX_RETRIES,
    min_backoff=_MIN_BACKOFF_MS,
    max_backoff=_MAX_BACKOFF_MS,
)
def expire_session(session_id: str, reason: str = "operator") -> None:
    _request("expire", session_id, reason)


def _request(trigger: str, session_id: str, reason: str) -> None:
    try:
        handlers.request_transition(deps(), trigger, session_id, reason)
    except SessionNotFound:
        # Permanent: retrying will not make the session exist.
        log.warning("operator %s for an unknown session was dropped", trigger)


def bind(broker: Broker) -> None:
    """Points every actor here at ``broker`` (``setup_broker`` calls it)."""
    for actor in (drain_conversation, complete_session, expire_session):
        actor.broker = broker
        broker.declare_actor(actor)


def wake(conv: str) -> None:
    """Enqueues a drain for one conversation (what the webhook and the re-drive pass call)."""
    drain_conversation.send(conv)
