"""Bearer tokens (the session API's admin token, the metrics token): one check, compared in
constant time, refused with the JSON ``unauthorized`` error (401, ``WWW-Authenticate: Bearer``)
that ``errors`` renders and counts."""

from __future__ import annotations

import hmac
from collections.abc import Callable

from fastapi import Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from wa_sessions.webhook.errors import UnauthorizedError


def require_bearer(token: str, scheme: HTTPBearer, refusal: str) -> Callable[..., None]:
    """A FastAPI dependency accepting only ``Authorization: Bearer <token>``, described in the
    OpenAPI document by ``scheme`` (built with ``auto_error=False``). An empty ``token``
    refuses every request: a route is opened by not guarding it, never by an unset secret."""
    expected = token.encode()

    # A default, not ``Annotated``: FastAPI resolves annotations in the module's globals, where
    # this closure's ``scheme`` is not.
    from_scheme = Security(scheme)

    def check(credentials: HTTPAuthorizationCredentials | None = from_scheme) -> None:
        if (
            not expected
            or credentials is None
            or not hmac.compare_digest(credentials.credentials.encode(), expected)
        ):
            raise UnauthorizedError(refusal)

    return check
