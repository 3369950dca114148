"""What production refuses to start with (``Settings.check_secure``), one sentence a problem
so one start names everything to fix. Plain values in, so the settings module stays a list of
settings."""

from __future__ import annotations

import math
from collections.abc import Mapping
from urllib.parse import urlsplit

#: The shortest admin or operator token served outside development (``openssl rand -hex 16``).
MIN_TOKEN_LENGTH = 32


def insecure_settings(
    *,
    twilio_auth_token: str,
    admin_token: str,
    operator_tokens: Mapping[str, str],
    public_base_url: str,
    dedupe_ttl_seconds: int,
    retention_days: float,
) -> list[str]:
    """The problems of a production configuration, empty when it may serve: the secrets (an
    admin token long enough not to be guessed), the https URL Twilio signs (so no client-sent
    Host or forwarded header names it) and a dedupe window that covers the retention period
    (Twilio's signature has no timestamp: a captured request is refused only while its
    MessageSid is remembered)."""
    problems = []
    missing = [
        name
        for name, value in (
            ("TWILIO_AUTH_TOKEN", twilio_auth_token),
            ("ADMIN_TOKEN", admin_token),
            ("PUBLIC_BASE_URL", public_base_url),
        )
        if not value
    ]
    if missing:
        problems.append(f"{', '.join(missing)} must be set outside ENVIRONMENT=development")
    if admin_token and len(admin_token) < MIN_TOKEN_LENGTH:
        problems.append(
            f"ADMIN_TOKEN must be at least {MIN_TOKEN_LENGTH} characters (it has "
            f"{len(admin_token)}), e.g. from `openssl rand -hex 32`"
        )
    if public_base_url:
        parts = urlsplit(public_base_url)
        if parts.scheme != "https" or not parts.hostname:
            problems.append(
                "PUBLIC_BASE_URL must be the https URL Twilio calls, e.g. https://hooks.example.com"
            )
    retention_seconds = math.ceil(retention_days * 24 * 3600)
    if dedupe_ttl_seconds < retention_seconds:
        problems.append(
            f"DEDUPE_TTL_SECONDS ({dedupe_ttl_seconds}) must be at least the retention period "
            f"(RETENTION_DAYS={retention_days:g}: {retention_seconds}), or a replayed request "
            "would be applied again once its MessageSid is forgotten"
        )
    short = [name for name, token in operator_tokens.items() if len(token) < MIN_TOKEN_LENGTH]
    if short:
        problems.append(
            f"OPERATOR_TOKENS: the tokens of {', '.join(sorted(short))} must be at least "
            f"{MIN_TOKEN_LENGTH} characters outside ENVIRONMENT=development"
        )
    return problems
