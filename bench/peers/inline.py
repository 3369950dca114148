"""Peer 1, the design document's inline webhook: ``POST /twilio-webhook-opt`` checks the
signature, then stores the message, extracts the order with OpenAI, sends the reply through
Twilio and stores it, all before it answers Twilio with TwiML.

The route is a plain ``def``, the idiomatic FastAPI way to call blocking SDKs: FastAPI runs it
in its thread pool (anyio's default limiter: 40 threads), so one uvicorn process holds at most
40 messages in flight. Run with one uvicorn process, as the Procfile's ``web`` line runs ours:
``uvicorn bench.peers.inline:app``.
"""

from __future__ import annotations

from .common import create_app, deps, handle_message


def _handle(form: dict[str, str]) -> None:
    handle_message(deps(), form)


app = create_app(_handle)
