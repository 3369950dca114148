"""Every Prometheus metric of the service, defined once here.

Names are ``wa_sessions_*`` in base units. No label ever carries a phone number, message text or
session id. Web and worker processes share totals through prometheus_client's multiprocess mode
when ``PROMETHEUS_MULTIPROC_DIR`` is set (``./run serve`` and the Procfile deployment do so).
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

WEBHOOK_REQUESTS = Counter(
    "wa_sessions_webhook_requests_total",
    "Twilio webhook requests by outcome (accepted, duplicate, bad_signature, bad_request, "
    "too_large, inbox_full, unavailable, error).",
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
MESSAGES = Counter(
    "wa_sessions_messages_total",
    "Messages applied to sessions, by direction and type.",
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
    "Sessions ended, by outcome (completed, expired).",
    ["outcome"],
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


def render_metrics() -> tuple[bytes, str]:
    """The exposition for ``/metrics``: every process's totals in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
