"""Metrics of agent takeover (issue #13): operators taking conversations over, handing them back
and replying themselves. Labels are small fixed sets; never an operator, phone or session id.
How many sessions are held right now is read from Redis at scrape time (``collectors``)."""

from __future__ import annotations

from prometheus_client import Counter

#: ``action`` values of ``TAKEOVERS``.
TAKEOVER_ACTIONS = ("take_over", "hand_back")
#: ``result`` values of ``TAKEOVERS``: done, or refused because the session is unknown, ended,
#: held by another operator, or (handing back) held by nobody.
TAKEOVER_RESULTS = ("ok", "missing", "ended", "held", "free")
#: ``outcome`` values of ``OPERATOR_REPLIES``: refused up front by the API, queued in the
#: inbox, then what the drain did with it.
OPERATOR_REPLY_OUTCOMES = (
    "refused_outside_window",
    "refused_not_taken_over",
    "queued",
    "sent",
    "logged",
    "failed",
    "outside_window",
    "not_taken_over",
    "session_ended",
    "dropped",
)

TAKEOVERS = Counter(
    "wa_sessions_takeovers_total",
    "Operators taking sessions over and handing them back, by action (take_over, hand_back) "
    "and result (ok, missing, ended, held by another operator, free: held by nobody).",
    ["action", "result"],
)
OPERATOR_REPLIES = Counter(
    "wa_sessions_operator_replies_total",
    "Operators' replies by outcome: refused by the API (refused_outside_window, "
    "refused_not_taken_over), queued, then sent, logged (no Twilio credentials), failed, "
    "outside_window, not_taken_over or session_ended when the drain re-checked, dropped "
    "(a worker without a sender).",
    ["outcome"],
)


def initialise_series() -> None:
    """Creates the known label sets at zero (``rate()`` sees the first increment)."""
    for action in TAKEOVER_ACTIONS:
        for result in TAKEOVER_RESULTS:
            TAKEOVERS.labels(action, result)
    for outcome in OPERATOR_REPLY_OUTCOMES:
        OPERATOR_REPLIES.labels(outcome)
