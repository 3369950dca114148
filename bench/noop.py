"""The broker's ceiling for the workers benchmark: an actor that does nothing, run as
``dramatiq bench.noop:setup bench.noop`` with the worker's processes and threads, so it has the
service's own broker (``bootstrap.build_broker``), namespace and middleware; only the body differs.
"""

from __future__ import annotations

import dramatiq
from dramatiq import Broker

from wa_sessions import bootstrap

#: Its own queue beside the service's, in the service's Dramatiq namespace.
QUEUE = "bench_noop"


def noop(n: int) -> None:
    """Does nothing: what is measured is Dramatiq's fetch, decode, dispatch and ack."""


def declare_noop(broker: Broker) -> dramatiq.Actor[[int], None]:
    return dramatiq.actor(noop, broker=broker, queue_name=QUEUE, max_retries=0)


def setup() -> None:
    """The Dramatiq CLI hook of the no-op group, like the service's ``setup_worker``."""
    broker = bootstrap.build_broker(bootstrap.load_settings())
    declare_noop(broker)
    dramatiq.set_broker(broker)
