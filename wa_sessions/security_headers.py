"""Security headers on every response of the app except Twilio's POSTs (answered ahead of the
middleware stack, see ``app.WebApp``): no content sniffing, no framing, no referrer, and a
Content-Security-Policy that lets a JSON answer load nothing at all.

A response that sets one of these headers itself keeps its own value: a page (the API docs
here, an operators' console later) sends the policy its own scripts and styles need, and every
other response gets the strict default without having to ask.
"""

from __future__ import annotations

import base64
import hashlib
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: For JSON (and anything else that is not a page): nothing may be loaded, nothing may frame it.
STRICT_CSP = "default-src 'none'; frame-ancestors 'none'"

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", STRICT_CSP.encode()),
)

# Inline elements without attributes, as FastAPI's documentation pages write them.
_INLINE = {tag: re.compile(rf"<{tag}>(.*?)</{tag}>", re.DOTALL) for tag in ("script", "style")}


def inline_hashes(html: str, tag: str) -> list[str]:
    """CSP sources (``'sha256-...'``) that allow exactly the inline ``<script>`` or ``<style>``
    elements of ``html``, so a page's policy need not say ``'unsafe-inline'`` for them."""
    return [
        "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"
        for body in _INLINE[tag].findall(html)
    ]


def page_policy(html: str, **directives: str) -> str:
    """A page's Content-Security-Policy: nothing by default, scripts and styles from the site
    and its own inline ones by hash, no ``<base>``, no form posts, never framed. ``directives``
    set or replace one directive each (``img_src="'self' data:"`` is ``img-src 'self' data:``);
    a replaced ``script-src`` or ``style-src`` loses the hashes (browsers ignore
    ``'unsafe-inline'`` where a hash is given)."""
    sources = {
        "default-src": "'none'",
        "script-src": " ".join(["'self'", *inline_hashes(html, "script")]),
        "style-src": " ".join(["'self'", *inline_hashes(html, "style")]),
        "base-uri": "'none'",
        "form-action": "'none'",
        "frame-ancestors": "'none'",
    }
    sources.update({name.replace("_", "-"): value for name, value in directives.items()})
    return "; ".join(f"{name} {value}" for name, value in sources.items())


class SecurityHeaders:
    """Pure ASGI (no request object, one pass over the response's headers): adds each of
    ``SECURITY_HEADERS`` that the response did not set itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers.extend(item for item in SECURITY_HEADERS if item[0] not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
