"""Dramatiq actors: thin wrappers over ``handlers``, declared on a broker by the composition root.

Importing this module builds nothing: ``declare_actors`` (called by ``bootstrap``, in worker
processes from the Dramatiq CLI's ``setup_worker`` hook) declares them on the broker it is given
and runs them over the dependencies it is given. A ``drain_conversation`` message is only a
wake-up: order and exactly-once come from the conversation's inbox and lease, so duplicates,
retries and reordering of these messages are harmless.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import dramatiq
from dramatiq import Broker
from dramatiq.actor import ActorDecorator

from wa_sessions.errors import SessionNotFound
from wa_sessions.workers import handlers
from wa_sessions.workers.queues import QUEUE

log = logging.getLogger(__name__)

#: Actor names: they are what Dramatiq's messages carry, so producers may send by name.
DRAIN_CONVERSATION = "drain_conversation"
COMPLETE_SESSION = "complete_session"
EXPIRE_SESSION = "expire_session"

# Transient failures (Redis down) retry with backoff; the re-drive pass covers what they miss.
_MAX_RETRIES = 10
_MIN_BACKOFF_MS = 200
_MAX_BACKOFF_MS = 10_000


@dataclass(frozen=True)
class Actors:
    """The service's actors as declared on one broker."""

    drain_conversation: dramatiq.Actor[[str], None]
    complete_session: dramatiq.Actor[[str, str], None]
    expire_session: dramatiq.Actor[[str, str], None]


def declare_actors(broker: Broker, deps: handlers.WorkerDeps) -> Actors:
    """Declares every actor on ``broker``, each running its handler over ``deps``."""

    def declare(name: str) -> ActorDecorator:
        return dramatiq.actor(
            broker=broker,
            actor_name=name,
            queue_name=QUEUE,
            max_retries=_MAX_RETRIES,
            min_backoff=_MIN_BACKOFF_MS,
            max_backoff=_MAX_BACKOFF_MS,
        )

    def drain_conversation(conv: str) -> None:
        # Handed to the process' drain loop: the thread is free again once a drain slot is.
        deps.runner().submit(conv)

    def complete_session(session_id: str, reason: str = "operator") -> None:
        _request(deps, "complete", session_id, reason)

    def expire_session(session_id: str, reason: str = "operator") -> None:
        _request(deps, "expire", session_id, reason)

    return Actors(
        drain_conversation=declare(DRAIN_CONVERSATION)(drain_conversation),
        complete_session=declare(COMPLETE_SESSION)(complete_session),
        expire_session=declare(EXPIRE_SESSION)(expire_session),
    )


def _request(deps: handlers.WorkerDeps, trigger: str, session_id: str, reason: str) -> None:
    try:
        handlers.request_transition(deps, trigger, session_id, reason)
    except SessionNotFound:
        # Permanent: retrying will not make the session exist.
        log.warning("operator %s for an unknown session was dropped", trigger)


def drain_sender(broker: Broker) -> Callable[[str], None]:
    """Sends a drain wake-up for a conversation key by the actor's name (``WorkerDeps.wake``),
    so the dependencies can be built before the actors that run over them."""

    def wake(conv: str) -> None:
        broker.enqueue(
            dramatiq.Message(
                queue_name=QUEUE,
                actor_name=DRAIN_CONVERSATION,
                args=(conv,),
                kwargs={},
                options={},
            )
        )

    return wake
