"""The broker's ceiling for the workers benchmark: an actor that does nothing, run as
``dramatiq wa_sessions.workers.broker:setup_broker bench.noop`` with the worker's processes and
threads, so it has the service's own broker setup, namespace and middleware; only the body differs.
"""

from __future__ import annotations

import dramatiq

from wa_sessions.workers.broker import require_broker

#: Its own queue beside the service's, in the service's Dramatiq namespace.
QUEUE = "bench_noop"


@dramatiq.actor(broker=require_broker(), queue_name=QUEUE, max_retries=0)
def noop(n: int) -> None:
    """Does nothing: what is measured is Dramatiq's fetch, decode, dispatch and ack."""
