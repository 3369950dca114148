"""The outgoing events' settings, a part of ``config.Settings`` (field name = environment
variable): kept here so the events' knobs and their checks read together."""

from __future__ import annotations

import base64
import binascii
from typing import Self
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings

#: Standard Webhooks' secret prefix: ``whsec_`` + base64 of the key.
SECRET_PREFIX = "whsec_"  # noqa: S105 (a format prefix, not a secret)
#: The shortest key accepted (Standard Webhooks asks for 24 to 64 bytes).
MIN_SECRET_BYTES = 24


def secret_key_bytes(secret: str) -> bytes:
    """The key in a ``whsec_<base64>`` secret; ``ValueError`` naming what is wrong (never the
    secret itself)."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"EVENTS_WEBHOOK_SECRET must start with {SECRET_PREFIX!r}")
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("EVENTS_WEBHOOK_SECRET is not whsec_ followed by base64") from None
    if len(key) < MIN_SECRET_BYTES:
        raise ValueError(
            f"EVENTS_WEBHOOK_SECRET holds {len(key)} bytes; at least {MIN_SECRET_BYTES} needed"
        )
    return key


class EventsSettings(BaseSettings):
    """Where events go and how long they are retried (``wa_sessions/events``)."""

    #: The business's endpoint; empty: no events are sent (and no ``events`` group is read).
    events_webhook_url: str = ""
    #: ``whsec_`` + base64 of at least 24 bytes; required when the URL is set.
    events_webhook_secret: str = ""
    #: One delivery attempt, connecting and reading the answer included.
    events_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    #: How long an event is retried after its first attempt before it is given up.
    events_retry_hours: float = Field(default=24.0, gt=0, le=24 * 7)
    #: First wait after a failed attempt; doubled per attempt (jittered), at most an hour.
    events_retry_base_seconds: float = Field(default=5.0, gt=0, le=3600)
    #: Deliveries in flight at once (each to a different session: one session's are in order).
    events_max_in_flight: int = Field(default=16, ge=1, le=1000)

    @field_validator("events_webhook_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if value:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("EVENTS_WEBHOOK_URL must be an http(s) URL with a host")
        return value

    @field_validator("events_webhook_secret")
    @classmethod
    def _check_secret(cls, value: str) -> str:
        if value:
            secret_key_bytes(value)
        return value

    @model_validator(mode="after")
    def _secret_with_url(self) -> Self:
        if self.events_webhook_url and not self.events_webhook_secret:
            raise ValueError("EVENTS_WEBHOOK_SECRET is required when EVENTS_WEBHOOK_URL is set")
        return self

    @property
    def sends_events(self) -> bool:
        return bool(self.events_webhook_url)
