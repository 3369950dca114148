"""Twilio's request signatures: the URL Twilio signed, the ``X-Twilio-Signature`` check through
the twilio SDK's own validator, and the account check. Apart from the form parsing, which the
signature only reads."""

from __future__ import annotations

import hmac

from twilio.request_validator import RequestValidator, get_signature_algorithm

from wa_sessions.errors import InvalidSignature
from wa_sessions.webhook.twilio import FormParams

SIGNATURE_HEADER = "x-twilio-signature"
SIGNATURE_SETTINGS_HEADER = "x-twilio-webhooks-signature-settings"


class UnknownAccount(InvalidSignature):
    """A correctly signed request for another Twilio account than the configured one."""

    code = "unknown_account"


def signed_url(
    *,
    request_url: str,
    path: str,
    query: str,
    public_base_url: str,
    forwarded_proxy_count: int,
    forwarded_proto: str | None = None,
    forwarded_host: str | None = None,
) -> str:
    """The URL Twilio requested, which is what it signed.

    A configured public base URL wins (required outside development). Without it, forwarded
    headers are believed only from the ``forwarded_proxy_count`` proxies the deployment says
    are in front: each appends what it received, so the entry that many from the right is what
    the outermost of them saw from Twilio, and anything left of it came from the client. A
    header with fewer entries than proxies was not written by them and is ignored. Otherwise
    the URL as this server received it (its Host header: development only).
    """
    suffix = f"{path}?{query}" if query else path
    if public_base_url:
        return public_base_url.rstrip("/") + suffix
    if forwarded_proxy_count:
        proto = _from_right(forwarded_proto, forwarded_proxy_count).lower()
        host = _from_right(forwarded_host, forwarded_proxy_count)
        if proto in ("http", "https") and host:
            return f"{proto}://{host}{suffix}"
    return request_url


def _from_right(header: str | None, count: int) -> str:
    """The ``count``-th comma-separated entry from the right, or "" when there are fewer."""
    entries = (header or "").split(",")
    return entries[-count].strip() if len(entries) >= count else ""


class SignatureChecker:
    """Validates ``X-Twilio-Signature`` with the twilio SDK's own validator. Fails closed: no
    configured token, no signature header or any error during the check is a rejection."""

    __slots__ = ("_validator",)

    def __init__(self, auth_token: str) -> None:
        self._validator = RequestValidator(auth_token) if auth_token else None

    def check(
        self, url: str, params: FormParams, signature: str | None, settings_header: str | None
    ) -> None:
        if self._validator is None:
            raise InvalidSignature("no Twilio auth token is configured")
        if not signature:
            raise InvalidSignature("X-Twilio-Signature header is missing")
        try:
            algorithm = get_signature_algorithm(settings_header)
            # The URL exactly as Twilio requested it matches in practice: one HMAC. Only a
            # mismatch pays for the SDK's full check (URL with and without the port).
            expected = self._validator.compute_signature(url, params, algorithm)
            valid = hmac.compare_digest(expected.encode(), signature.encode()) or bool(
                self._validator.validate(url, params, signature, algorithm=algorithm)
            )
        except Exception:
            valid = False
        if not valid:
            raise InvalidSignature("X-Twilio-Signature does not match")


def check_account(params: FormParams, account_sid: str) -> None:
    """With an account configured, a request signed for another (sub-)account is refused."""
    if account_sid and params.get("AccountSid") != account_sid:
        raise UnknownAccount("AccountSid is not the configured Twilio account")
