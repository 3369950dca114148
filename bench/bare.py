"""The HTTP ceiling for the webhook benchmark: a raw ASGI app on the same uvicorn settings that
reads and parses the same form and answers the same TwiML, with no signature, Redis or queue."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

_TWIML = b'<?xml version="1.0" encoding="UTF-8"?><Response/>'


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    form = dict(parse_qsl(body.decode(), keep_blank_values=True))
    status = 200 if form or scope["path"] == "/healthz" else 400
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/xml"),
                (b"content-length", str(len(_TWIML)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": _TWIML})
