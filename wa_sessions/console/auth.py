"""Who may use the console: operators sign in with a token (ADMIN_TOKEN as ``admin``, or one
of OPERATOR_TOKENS) and get a server-side console session in Redis, named by an HttpOnly,
SameSite=Strict cookie; each console session carries the CSRF token its forms and htmx
requests must send back. Sign-out deletes the Redis hash, so a copied cookie stops working.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, cast
from urllib.parse import parse_qsl

import redis
from fastapi import Depends, Request

from wa_sessions.config import ADMIN_OPERATOR
from wa_sessions.console.throttle import SignInThrottle
from wa_sessions.metrics import CONSOLE_REFUSALS
from wa_sessions.statemachine.redis.keys import ConsoleField, Keys

#: The cookie naming an operator's console session (its value is the session's secret).
COOKIE = "wa_console"
#: Before sign-in: the double-submit cookie that the sign-in form's hidden field must match.
PRE_COOKIE = "wa_console_pre"
#: The form field and the header (htmx's ``hx-headers``) that carry the CSRF token.
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
#: Console forms are a few short fields; a bigger body is refused before it is parsed.
MAX_FORM_BYTES = 8 * 1024


@dataclass(frozen=True, slots=True)
class Operator:
    """A person signed in to the console; ``name`` is recorded with what they do."""

    name: str


@dataclass(frozen=True, slots=True)
class SignIn:
    """One console session: who, and the CSRF token its pages embed."""

    operator: Operator
    csrf: str


class ConsoleRefusal(Exception):
    """A console request refused with a readable page (``pages.py`` renders it)."""

    status = 400
    code = "bad_request"
    title = "Bad request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SignInRequired(ConsoleRefusal):
    """No valid console session: pages redirect to sign-in, partials and streams get 401."""

    status = 401
    code = "unauthorized"
    title = "Sign-in required"

    def __init__(self, *, partial: bool) -> None:
        super().__init__("sign in to use the console")
        self.partial = partial


class CsrfRefused(ConsoleRefusal):
    status = 403
    code = "csrf_refused"
    title = "Request refused"


class NotFound(ConsoleRefusal):
    status = 404
    code = "not_found"
    title = "Not found"


class Conflict(ConsoleRefusal):
    status = 409
    code = "conflict"
    title = "Not possible now"


class ArchiveUnavailable(ConsoleRefusal):
    status = 503
    code = "unavailable"
    title = "Archive unavailable"


class OperatorDirectory:
    """The tokens that sign in, and as whom."""

    def __init__(self, admin_token: str, operator_tokens: Mapping[str, str]) -> None:
        # An unset admin token signs nobody in (as the session API refuses every request).
        pairs = [(ADMIN_OPERATOR, admin_token)] if admin_token else []
        self._tokens = [
            (name, token.encode()) for name, token in [*pairs, *operator_tokens.items()]
        ]

    def authenticate(self, token: str) -> Operator | None:
        """The operator whose token this is; every token is compared (no early exit)."""
        given = token.encode()
        found: Operator | None = None
        for name, expected in self._tokens:
            if hmac.compare_digest(given, expected) and found is None:
                found = Operator(name)
        return found


class ConsoleSessions:
    """Console sessions in Redis (``Keys.console_session``), keyed by the SHA-256 of the
    cookie's secret: a Redis dump or a replica does not hand out usable cookies."""

    def __init__(self, client: redis.Redis, keys: Keys, ttl_seconds: int) -> None:
        self.client = client
        self.keys = keys
        self.ttl_seconds = ttl_seconds

    def _key(self, secret: str) -> str:
        return self.keys.console_session(hashlib.sha256(secret.encode()).hexdigest())

    def create(self, operator: Operator) -> tuple[str, SignIn]:
        """A new console session; returns the cookie's secret and the session."""
        secret = secrets.token_urlsafe(32)
        sign_in = SignIn(operator, secrets.token_urlsafe(32))
        key = self._key(secret)
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(
            key,
            mapping={
                ConsoleField.OPERATOR: operator.name,
                ConsoleField.CSRF: sign_in.csrf,
                ConsoleField.AT: int(time.time() * 1000),
            },
        )
        pipe.expire(key, self.ttl_seconds)
        pipe.execute()
        return secret, sign_in

    def get(self, secret: str) -> SignIn | None:
        if not secret or len(secret) > 128:
            return None
        values = cast(
            list[str | None],
            self.client.hmget(self._key(secret), [ConsoleField.OPERATOR, ConsoleField.CSRF]),
        )
        name, csrf = values
        if not name or not csrf:
            return None
        return SignIn(Operator(name), csrf)

    def alive(self, secret: str) -> bool:
        return bool(secret) and bool(self.client.exists(self._key(secret)))

    def revoke(self, secret: str) -> None:
        if secret:
            self.client.delete(self._key(secret))


@dataclass(frozen=True)
class ConsoleAuth:
    """What the dependencies below need, kept on ``app.state.console_auth``."""

    sessions: ConsoleSessions
    directory: OperatorDirectory
    #: The cookie gets ``Secure`` when the service is reached over https (PUBLIC_BASE_URL).
    secure_cookie: bool
    throttle: SignInThrottle
    #: How many proxies in front of the service append to ``X-Forwarded-For``
    #: (FORWARDED_PROXY_COUNT, or 1 for the deprecated TRUST_PROXY_HEADERS).
    forwarded_proxy_count: int = 0

    def client_address(self, request: Request) -> str:
        """Whom a failed sign-in counts against: the peer, or behind ``N`` trusted proxies the
        ``N``-th address from the right of ``X-Forwarded-For``, the one the outermost trusted
        proxy appended (entries left of it are whatever the client sent)."""
        count = self.forwarded_proxy_count
        if count:
            entries = request.headers.get("x-forwarded-for", "").split(",")
            forwarded = entries[-count].strip() if len(entries) >= count else ""
            if forwarded:
                return forwarded[:64]
        return request.client.host if request.client else "unknown"


def console_auth(request: Request) -> ConsoleAuth:
    return cast(ConsoleAuth, request.app.state.console_auth)


def is_partial(request: Request) -> bool:
    """An htmx swap or an event stream: answered 401 rather than redirected to sign-in."""
    return "hx-request" in request.headers or request.url.path.startswith(
        ("/console/events", "/console/media/")
    )


def current_sign_in(request: Request) -> SignIn:
    """The request's console session, else ``SignInRequired``."""
    sign_in = console_auth(request).sessions.get(request.cookies.get(COOKIE, ""))
    if sign_in is None:
        CONSOLE_REFUSALS.labels("signed_out").inc()
        raise SignInRequired(partial=is_partial(request))
    request.state.sign_in = sign_in
    return sign_in


def require_operator(sign_in: Annotated[SignIn, Depends(current_sign_in)]) -> Operator:
    """The FastAPI dependency of every console route but sign-in: the signed-in operator."""
    return sign_in.operator


async def read_form(request: Request) -> dict[str, str]:
    """A small urlencoded form (the console's forms have no files); the last value of a
    repeated field wins."""
    if int(request.headers.get("content-length") or 0) > MAX_FORM_BYTES:
        raise ConsoleRefusal(f"the form is over {MAX_FORM_BYTES} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise ConsoleRefusal(f"the form is over {MAX_FORM_BYTES} bytes")
    try:
        return dict(parse_qsl(body.decode(), keep_blank_values=True, max_num_fields=20))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ConsoleRefusal("the form is not a valid urlencoded form") from exc


def check_csrf(expected: str, form: Mapping[str, str], request: Request) -> None:
    given = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER, "")
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        CONSOLE_REFUSALS.labels("csrf").inc()
        raise CsrfRefused(
            "the form's CSRF token does not match your console session; reload the page and "
            "try again"
        )


async def operator_form(
    request: Request, sign_in: Annotated[SignIn, Depends(current_sign_in)]
) -> tuple[Operator, dict[str, str]]:
    """The dependency of every console POST: the operator and their form, CSRF checked."""
    form = await read_form(request)
    check_csrf(sign_in.csrf, form, request)
    return sign_in.operator, form
