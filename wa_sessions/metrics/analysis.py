"""Metrics of the session analysis (issue #14): analyses by analyser and outcome, failures by
reason, and what the stored ones found (intent x sentiment). Every label is a small fixed set."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from wa_sessions.analysis.models import AnalyserName, Intent, Sentiment
from wa_sessions.retries import FailureReason

#: ``outcome`` values of ``ANALYSES``: stored; unchanged (the stored one read the same
#: messages, nothing computed); stale (a message arrived while it ran: not stored); failed (a
#: system note says why); missing (the session was purged meanwhile).
ANALYSIS_OUTCOMES = ("stored", "unchanged", "stale", "failed", "missing")

ANALYSES = Counter(
    "wa_sessions_analyses_total",
    "Session analyses by analyser (openai, offline) and outcome (stored, unchanged, stale, "
    "failed, missing).",
    ["analyser", "outcome"],
)
ANALYSIS_FAILURES = Counter(
    "wa_sessions_analysis_failures_total",
    "Failed session analyses by analyser and reason (timeout, rate_limited, server_error, "
    "invalid_output, connection, other).",
    ["analyser", "reason"],
)
ANALYSIS_FINDINGS = Counter(
    "wa_sessions_analysis_findings_total",
    "Stored session analyses by the intent and sentiment they found.",
    ["intent", "sentiment"],
)
ANALYSIS_DURATION = Histogram(
    "wa_sessions_analysis_duration_seconds",
    "Time one analysis took (the analyser's call, retries included), by analyser.",
    ["analyser"],
    buckets=(0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)


def initialise_series() -> None:
    """Creates the known label sets at zero (``rate()`` sees the first increment)."""
    for analyser in AnalyserName:
        for outcome in ANALYSIS_OUTCOMES:
            ANALYSES.labels(analyser.value, outcome)
        for reason in FailureReason:
            ANALYSIS_FAILURES.labels(analyser.value, reason.value)
    for intent in Intent:
        for sentiment in Sentiment:
            ANALYSIS_FINDINGS.labels(intent.value, sentiment.value)
