"""Settings, read from the environment once by the composition root and passed on as values.

Outside ``ENVIRONMENT=development`` the service refuses to start without the secrets that keep
it closed (Twilio's auth token for signatures, the admin token for the session API).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Self

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class InsecureSettings(ValueError):
    """A secret that production must have is missing."""


class Settings(BaseSettings):
    """Every knob of the service. Field names are the environment variables, upper-cased."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", frozen=True)

    #: Development mode: the service may start without secrets (``./run serve`` generates them).

    environment: Environment = Environment.PRODUCTION
    redis_url: str = "redis://localhost:6379/0"
    redis_key_prefix: str = "wa:"

    # Twilio
    twilio_auth_token: str = ""
    twilio_account_sid: str = ""
    public_base_url: str = ""
    trust_proxy_headers: bool = False
    business_number: str = "+14155238886"
    default_region: str | None = None

    # Session API
    admin_token: str = ""

    # Lifecycle
    session_timeout_hours: float = Field(default=24.0, gt=0)
    carry_over_context_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    max_messages_per_session: int = Field(default=5000, ge=1)
    retention_days: float = Field(default=30.0, gt=0)

    # Ingest and workers
    dedupe_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=60)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    max_inbox_depth: int = Field(default=10_000, ge=1)
    lease_seconds: float = Field(default=5.0, gt=0)
    drain_batch_size: int = Field(default=100, ge=1)
    redrive_interval_seconds: float = Field(default=1.0, gt=0)
    expiry_sweep_interval_seconds: float = Field(default=60.0, gt=0)

    @field_validator("carry_over_context_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    def check_secure(self) -> Self:
        """Refuses to serve outside development without the secrets that keep the service
        closed. Called by the web and worker entry points, not by operator scripts."""
        if self.environment is Environment.DEVELOPMENT:
            return self
        missing = [
            name
            for name, value in (
                ("TWILIO_AUTH_TOKEN", self.twilio_auth_token),
                ("ADMIN_TOKEN", self.admin_token),
            )
            if not value
        ]
        if missing:
            raise InsecureSettings(
                f"{', '.join(missing)} must be set outside ENVIRONMENT=development"
            )
        return self

    @property
    def session_timeout_seconds(self) -> float:
        return self.session_timeout_hours * 3600.0

    @property
    def retention_seconds(self) -> float:
        return self.retention_days * 86400.0
