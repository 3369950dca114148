"""Peer 1, the design document's inline webhook: ``POST /twilio-webhook-opt`` checks the
signature, then stores the message, extracts the order with OpenAI, sends the reply through
Twilio and stores it, all before it answers Twilio with TwiML.

The route is a plain ``def``, the idiomatic FastAPI way to call blocking SDKs: FastAPI runs it
in its thread pool (anyio's default limiter: 40 threads), so one uvicorn process holds at most
40 messages in flight. Run with one uvicorn process, as the Procfile's ``web`` line runs ours:
``uvicorn bench.peers.inline:app``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI, Response

from .common import TWIML, deps, handle_message, signed_form

app = FastAPI()


@app.get("/healthz")
def healthz() -> dict[str, str]:
    deps()
    return {"status": "ok"}


@app.post("/twilio-webhook-opt")
def webhook(form: Annotated[dict[str, str], Depends(signed_form)]) -> Response:
    handle_message(deps(), form)
    return Response(TWIML, media_type="text/xml")
