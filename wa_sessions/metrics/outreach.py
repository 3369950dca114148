"""Metrics of business-initiated messages (issue #15): opt-outs, nudges before expiry and
conversations started through the session API or the operators' script. Labels are small
fixed sets; never a phone, template or session id."""

from __future__ import annotations

from prometheus_client import Counter

#: ``outcome`` values of ``NUDGES``: the scheduler's decision (queued, or skipped because
#: the window closed and no ``NUDGE_CONTENT_SID`` is set), then what the drain did with it.
#: What the drain did with a queued business-initiated message.
DRAIN_OUTCOMES = (
    "sent",
    "logged",
    "failed",
    "opted_out",
    "outside_window",
    "session_ended",
    "dropped",
)
NUDGE_OUTCOMES = ("queued", "skipped_no_content_sid", *DRAIN_OUTCOMES)
#: ``outcome`` values of ``BUSINESS_MESSAGES`` (``POST /conversations`` and the script):
#: refused up front, queued, then what the drain did with it.
BUSINESS_MESSAGE_OUTCOMES = (
    "refused_opted_out",
    "refused_outside_window",
    "refused_flow_in_progress",
    "refused_invalid_transition",
    "queued",
    *DRAIN_OUTCOMES,
)

OPT_OUTS = Counter(
    "wa_sessions_opt_outs_total",
    "Customers' STOP messages (or a translation, or another Twilio opt-out keyword): the "
    "conversation gets no nudge or business-initiated message again.",
)
NUDGES = Counter(
    "wa_sessions_nudges_total",
    "Reminders before an unconfirmed order's session expires, by outcome: queued by the "
    "scheduler or skipped_no_content_sid (window closed, NUDGE_CONTENT_SID unset), then sent, "
    "logged (no Twilio credentials), failed, opted_out, outside_window, session_ended or "
    "dropped when the drain ran it.",
    ["outcome"],
)
BUSINESS_MESSAGES = Counter(
    "wa_sessions_business_messages_total",
    "Business-initiated messages (POST /conversations, wa-sessions-enqueue "
    "start-conversation) by outcome: refused_opted_out, refused_outside_window, "
    "refused_flow_in_progress or refused_invalid_transition (the session ended meanwhile) "
    "up front, "
    "queued, then sent, logged, failed, opted_out, outside_window, session_ended or dropped "
    "when the drain ran it.",
    ["outcome"],
)


def initialise_series() -> None:
    """Creates the known label sets at zero (``rate()`` sees the first increment)."""
    for outcome in NUDGE_OUTCOMES:
        NUDGES.labels(outcome)
    for outcome in BUSINESS_MESSAGE_OUTCOMES:
        BUSINESS_MESSAGES.labels(outcome)
