"""Metrics of the operators' console (``wa_sessions/console``): sign-ins and live views.

Labels are small fixed sets (outcomes); never an operator's token, a phone number or a session id.
"""

from __future__ import annotations

from prometheus_client import Counter

CONSOLE_SIGN_INS = Counter(
    "wa_sessions_console_sign_ins_total",
    "Console sign-in attempts by outcome (ok, refused: a wrong token, bad_request: a form "
    "without a token or with a forged pre-sign-in CSRF token).",
    ["outcome"],
)
CONSOLE_REFUSALS = Counter(
    "wa_sessions_console_refusals_total",
    "Console requests refused by reason (signed_out, csrf).",
    ["reason"],
)
CONSOLE_LIVE_STREAMS = Counter(
    "wa_sessions_console_live_streams_total",
    "Live-update streams (server-sent events) opened and closed, by event (opened, closed).",
    ["event"],
)
