"""A Dramatiq middleware counting worker messages in our metrics, instead of Dramatiq's own.

Dramatiq's ``Prometheus`` middleware forks an extra HTTP server per worker group (port 9191,
bound to all interfaces), points ``PROMETHEUS_MULTIPROC_DIR`` at its own directory and reports
milliseconds. These few counters land in the shared multiprocess directory instead, so the web
process' ``/metrics`` carries them with everything else; queue depth is read from Redis at scrape
time (``collectors``).
"""

from __future__ import annotations

from time import perf_counter
from typing import Any

from dramatiq import Broker, Middleware
from dramatiq.broker import MessageProxy

from wa_sessions.metrics import ACTOR_DURATION, ACTOR_MESSAGES


class ActorMetrics(Middleware):
    """Counts processed messages by actor and outcome and observes their duration."""

    def __init__(self) -> None:
        # Keyed by message id: a worker process runs several threads, each on its own message.
        self._started: dict[str, float] = {}

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        self._started[message.message_id] = perf_counter()

    def after_process_message(
        self,
        broker: Broker,
        message: MessageProxy,
        *,
        result: Any | None = None,
        exception: BaseException | None = None,
    ) -> None:
        self._finish(message, "ok" if exception is None else "failed")

    def after_skip_message(self, broker: Broker, message: MessageProxy) -> None:
        self._finish(message, "skipped")

    def _finish(self, message: MessageProxy, outcome: str) -> None:
        started = self._started.pop(message.message_id, None)
        ACTOR_MESSAGES.labels(message.actor_name, outcome).inc()
        if started is not None:
            ACTOR_DURATION.labels(message.actor_name).observe(perf_counter() - started)
