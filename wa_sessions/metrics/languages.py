"""Metrics of the customers' languages (issue #14): what the detector said of each message and
the language each automatic reply was written in. The label is one of the supported ISO 639-1
codes or ``unknown``: a bounded set."""

from __future__ import annotations

from prometheus_client import Counter

from wa_sessions.languages.detect import SUPPORTED

#: ``language`` values: the supported languages and ``unknown`` (not confident).
LANGUAGE_LABELS = (*SUPPORTED, "unknown")

LANGUAGE_DETECTIONS = Counter(
    "wa_sessions_language_detections_total",
    "Customers' messages by detected language (ISO 639-1; unknown: not confident).",
    ["language"],
)
REPLIES_BY_LANGUAGE = Counter(
    "wa_sessions_replies_by_language_total",
    "Automatic replies sent or logged, by the language they were written in (ISO 639-1).",
    ["language"],
)


def language_label(language: str | None) -> str:
    """The metric label of ``language``: itself when supported, else ``unknown``."""
    return language if language in SUPPORTED else "unknown"


def initialise_series() -> None:
    """Creates the known label sets at zero (``rate()`` sees the first increment)."""
    for language in LANGUAGE_LABELS:
        LANGUAGE_DETECTIONS.labels(language)
        if language != "unknown":
            REPLIES_BY_LANGUAGE.labels(language)
