"""Metrics of order extraction, outbound replies and their delivery (issue: orders and replies).

Labels are small fixed sets: extractor and sender names, outcomes, failure reasons, Twilio
delivery statuses and error codes. Never a phone number, message text or session id.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

EXTRACTIONS = Counter(
    "wa_sessions_extractions_total",
    "Order extractions by extractor (openai, rule_based) and outcome (found, nothing, failed).",
    ["extractor", "outcome"],
)
EXTRACTION_LATENCY = Histogram(
    "wa_sessions_extraction_duration_seconds",
    "Time to extract order details from one message, retries included.",
    ["extractor"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
EXTRACTION_FAILURES = Counter(
    "wa_sessions_extraction_failures_total",
    "Extractions given up, by reason (timeout, rate_limited, server_error, invalid_output, "
    "connection, other).",
    ["reason"],
)
ORDERS_EXTRACTED = Counter(
    "wa_sessions_orders_extracted_total",
    "Messages that added to or changed a session's order details.",
)
REPLIES = Counter(
    "wa_sessions_replies_total",
    "Outbound replies by sender (twilio, log) and outcome (sent, logged, failed, outside_window, "
    "session_ended, taken_over: an operator holds the session).",
    ["sender", "outcome"],
)
DELIVERY_STATUS = Counter(
    "wa_sessions_delivery_status_total",
    "Twilio status callbacks applied, by MessageStatus (queued, sent, delivered, read, "
    "failed, undelivered, ...).",
    ["status"],
)
DELIVERY_FAILURES = Counter(
    "wa_sessions_delivery_failures_total",
    "Outbound messages that failed or were undelivered, by Twilio ErrorCode.",
    ["error_code"],
)
MEDIA_SKIPPED = Counter(
    "wa_sessions_media_skipped_total",
    "Images of inbound messages left out of an OpenAI extraction (the model read the text "
    "alone), by reason (not_https, host_not_allowed, bad_url, redirect_refused, "
    "too_many_redirects, too_large, too_slow, refused, unavailable).",
    ["reason"],
)
EXTRACTION_FALLBACKS = Counter(
    "wa_sessions_extraction_fallbacks_total",
    "Messages extracted by the rule-based extractor instead of OpenAI, by reason (daily_cap: "
    "the customer is over OPENAI_DAILY_CALLS_PER_PHONE today).",
    ["reason"],
)
#: The fallback of ``orders.daily_cap`` (at zero from the start, so ``rate()`` sees the first).
DAILY_CAP_FALLBACKS = EXTRACTION_FALLBACKS.labels("daily_cap")
