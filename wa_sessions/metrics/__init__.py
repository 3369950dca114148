"""Every Prometheus metric of the service, defined once here (orders and replies in ``orders``).

Names are ``wa_sessions_*`` in base units. No label ever carries a phone number, message text or
session id. Web, worker and scheduler processes share totals through prometheus_client's
multiprocess mode when ``PROMETHEUS_MULTIPROC_DIR`` is set (``./run serve`` and the Procfile
deployment do so): the web process' ``/metrics`` adds them up, together with the values read
from Redis at scrape time (``collectors``, handed to ``render_metrics`` by the composition
root), which no single process could count right.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from wa_sessions.metrics.analysis import initialise_series as _initialise_analysis_series
from wa_sessions.metrics.console import (
    CONSOLE_LIVE_STREAMS,
    CONSOLE_REFUSALS,
    CONSOLE_SIGN_INS,
)
from wa_sessions.metrics.languages import LANGUAGE_DETECTIONS, REPLIES_BY_LANGUAGE
from wa_sessions.metrics.languages import initialise_series as _initialise_language_series
from wa_sessions.metrics.orders import (
    DELIVERY_FAILURES,
    DELIVERY_STATUS,
    EXTRACTION_FAILURES,
    EXTRACTION_FALLBACKS,
    EXTRACTION_LATENCY,
    EXTRACTIONS,
    MEDIA_SKIPPED,
    ORDERS_EXTRACTED,
    REPLIES,
)
from wa_sessions.metrics.outgoing_events import EVENT_DELIVERY_LATENCY, EVENTS
from wa_sessions.metrics.outgoing_events import initialise_series as _initialise_event_series
from wa_sessions.metrics.outreach import initialise_series as _initialise_outreach_series
from wa_sessions.metrics.takeover import OPERATOR_REPLIES, TAKEOVERS
from wa_sessions.metrics.takeover import initialise_series as _initialise_takeover_series
from wa_sessions.statemachine.models import MessageDirection, MessageType

__all__ = [
    "ACTOR_DURATION",
    "ACTOR_MESSAGES",
    "API_ERRORS",
    "API_REQUESTS",
    "CONSOLE_LIVE_STREAMS",
    "CONSOLE_REFUSALS",
    "CONSOLE_SIGN_INS",
    "DELIVERY_FAILURES",
    "DELIVERY_STATUS",
    "DRAINS",
    "EVENTS",
    "EVENT_DELIVERY_LATENCY",
    "EXTRACTIONS",
    "EXTRACTION_FAILURES",
    "EXTRACTION_FALLBACKS",
    "EXTRACTION_LATENCY",
    "LANGUAGE_DETECTIONS",
    "MEDIA_SKIPPED",
    "MESSAGES",
    "OPERATIONS",
    "OPERATOR_REPLIES",
    "ORDERS_EXTRACTED",
    "QUEUE_LAG",
    "REDRIVES",
    "REPLIES",
    "REPLIES_BY_LANGUAGE",
    "REQUEST_TIMEOUTS",
    "SESSIONS_ENDED",
    "SESSIONS_STARTED",
    "SESSION_DURATION",
    "SESSION_MESSAGES",
    "SESSION_OUTCOMES",
    "SWEEP_EXPIRED",
    "TAKEOVERS",
    "WEBHOOK_LATENCY",
    "WEBHOOK_REQUESTS",
    "render_metrics",
]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
# Sessions last from seconds (a quick order) to the idle timeout and beyond (24 h by default).
_SESSION_DURATION_BUCKETS = (
    1.0,
    10.0,
    30.0,
    60.0,
    300.0,
    600.0,
    1800.0,
    3600.0,
    7200.0,
    14400.0,
    43200.0,
    86400.0,
    172800.0,
)
_SESSION_MESSAGES_BUCKETS = (1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0, 250.0, 1000.0, 5000.0)
_ACTOR_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0)

#: Final statuses a session can end in; anything else (a future status) is counted as ``other``.
SESSION_OUTCOMES = ("completed", "expired")
#: What a request still lacked when the web process' deadline closed its connection.
REQUEST_TIMEOUT_PHASES = ("headers", "body", "idle")

WEBHOOK_REQUESTS = Counter(
    "wa_sessions_webhook_requests_total",
    "Twilio webhook requests by endpoint (inbound, status) and outcome (accepted, duplicate, "
    "bad_signature, bad_request, too_large, inbox_full, rate_limited, unavailable, error; "
    "status callbacks: "
    "applied, stale, unknown_sid, ...).",
    ["endpoint", "outcome"],
)
WEBHOOK_LATENCY = Histogram(
    "wa_sessions_webhook_duration_seconds",
    "Time to answer a Twilio webhook request.",
    ["endpoint"],
    buckets=_LATENCY_BUCKETS,
)
API_REQUESTS = Counter(
    "wa_sessions_api_requests_total",
    "Session API requests by route and status code class.",
    ["route", "status"],
)
API_ERRORS = Counter(
    "wa_sessions_api_errors_total",
    "Requests refused with an error body, by error code.",
    ["code"],
)
REQUEST_TIMEOUTS = Counter(
    "wa_sessions_request_timeouts_total",
    "Connections the web process closed because a request was not received within "
    "REQUEST_TIMEOUT_SECONDS, by what was still missing (headers, body, or idle: stray bytes "
    "between requests). Those with no response started were answered 408 first.",
    ["phase"],
)
MESSAGES = Counter(
    "wa_sessions_messages_total",
    "Messages stored in sessions by the workers, by direction and type: inbound ones applied "
    "from inboxes, outbound replies and system notes committed by the drain.",
    ["direction", "type"],
)
QUEUE_LAG = Histogram(
    "wa_sessions_queue_lag_seconds",
    "Time from webhook acceptance to the message being applied to its session.",
    buckets=_LAG_BUCKETS,
)
SESSIONS_STARTED = Counter("wa_sessions_sessions_started_total", "Sessions opened.")
SESSIONS_ENDED = Counter(
    "wa_sessions_sessions_ended_total",
    "Sessions ended, by outcome (completed, expired), whichever path ended them.",
    ["outcome"],
)
SESSION_DURATION = Histogram(
    "wa_sessions_session_duration_seconds",
    "Time from a session's creation to its end, observed when it ends, by outcome.",
    ["outcome"],
    buckets=_SESSION_DURATION_BUCKETS,
)
SESSION_MESSAGES = Histogram(
    "wa_sessions_session_messages",
    "Messages a session held when it ended, by outcome.",
    ["outcome"],
    buckets=_SESSION_MESSAGES_BUCKETS,
)
OPERATIONS = Counter(
    "wa_sessions_operations_total",
    "Operator complete/expire tasks applied through the inbox, by trigger and result.",
    ["trigger", "result"],
)
DRAINS = Counter(
    "wa_sessions_drains_total",
    "Drain runs by outcome (drained, busy, lease_lost).",
    ["outcome"],
)
REDRIVES = Counter(
    "wa_sessions_redrives_total",
    "Conversations re-woken because their inbox had entries and no drain.",
)
SWEEP_EXPIRED = Counter("wa_sessions_sweep_expired_total", "Sessions expired by the idle sweep.")
ACTOR_MESSAGES = Counter(
    "wa_sessions_actor_messages_total",
    "Dramatiq messages processed by worker processes, by actor and outcome (ok, failed, "
    "skipped). A failed message is retried with backoff until its retries run out.",
    ["actor", "outcome"],
)
ACTOR_DURATION = Histogram(
    "wa_sessions_actor_duration_seconds",
    "Time a worker spent on one Dramatiq message, by actor.",
    ["actor"],
    buckets=_ACTOR_BUCKETS,
)


def _initialise_series() -> None:
    """Creates the known label sets at zero, so ``rate()`` and ``increase()`` see a series'
    first increment and dashboards show 0 rather than no data."""
    for outcome in SESSION_OUTCOMES:
        SESSIONS_ENDED.labels(outcome)
        SESSION_DURATION.labels(outcome)
        SESSION_MESSAGES.labels(outcome)
    for phase in REQUEST_TIMEOUT_PHASES:
        REQUEST_TIMEOUTS.labels(phase)
    for direction in MessageDirection:
        for message_type in MessageType:
            MESSAGES.labels(direction.value, message_type.value)
    _initialise_takeover_series()
    _initialise_outreach_series()
    _initialise_language_series()
    _initialise_analysis_series()
    _initialise_event_series()


_initialise_series()


class _ProcessRegistry(Collector):
    """This process's default registry, for single-process mode."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()

    def describe(self) -> Iterator[Metric]:
        return iter(())


def render_metrics(
    scrape_collectors: Iterable[Collector] = (), *, multiprocess_dir: str = ""
) -> tuple[bytes, str]:
    """The exposition for ``/metrics``: every process's totals when ``multiprocess_dir`` (the
    ``PROMETHEUS_MULTIPROC_DIR`` all of them write) is given, this process's own otherwise,
    plus the collectors that read shared state (Redis) at scrape time."""
    # auto_describe off: registering must not run a collector (and so reach Redis) early.
    registry = CollectorRegistry(auto_describe=False)
    if multiprocess_dir:
        multiprocess.MultiProcessCollector(registry, path=multiprocess_dir)  # type: ignore[no-untyped-call]
    else:
        registry.register(_ProcessRegistry())
    for collector in scrape_collectors:
        registry.register(collector)
    return generate_latest(registry), CONTENT_TYPE_LATEST
