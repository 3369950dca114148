"""Settings, read from the environment once by the composition root and passed on as values.

Outside ``ENVIRONMENT=development`` the service refuses to start without the secrets that keep
it closed (Twilio's auth token for signatures, an admin token of at least 32 characters for the
session API), without the https URL Twilio signs, and with a dedupe window shorter than the
retention period (``check_secure``).
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Self
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from wa_sessions.events.settings import EventsSettings
from wa_sessions.orders.media_policy import (
    DEFAULT_MAX_IMAGE_BYTES,
    DEFAULT_MEDIA_FETCH_DEADLINE_SECONDS,
    DEFAULT_TWILIO_MEDIA_HOSTS,
    DEFAULT_TWILIO_MEDIA_REDIRECT_HOSTS,
    check_host_entries,
)
from wa_sessions.outreach_settings import OutreachSettings
from wa_sessions.replies.templates import check_template
from wa_sessions.security_checks import insecure_settings
from wa_sessions.statemachine.queries import DEFAULT_BUSINESS_NUMBER
from wa_sessions.statemachine.redis.inbox import DEFAULT_DEDUPE_TTL_SECONDS, DEFAULT_LEASE_SECONDS

#: Where Twilio posts delivery status callbacks (``webhook/status.py`` serves it).
STATUS_CALLBACK_PATH = "/twilio-status"

#: Where ``wa-sessions serve`` keeps a development run's state (relative to where it runs).
RUN_DIR = Path(".run")
#: A development run's generated settings (secrets, the embedded Redis' URL), ``NAME=value``.
DEV_ENV_FILE = RUN_DIR / "dev.env"


#: ``RETENTION_DAYS`` unless set (the default dedupe window covers it).
DEFAULT_RETENTION_DAYS = 30


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class InsecureSettings(ValueError):
    """A secret that production must have is missing."""


#: An operator's name as the console shows it and records it (``OPERATOR_TOKENS``).
OPERATOR_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")
#: The operator the admin token signs in as.
ADMIN_OPERATOR = "admin"


def parse_operator_tokens(value: str) -> dict[str, str]:
    """``name:token,name:token`` as a mapping; refuses malformed pairs, bad or repeated names
    and a token used twice (it would sign in as either), naming the pair but never the token."""
    operators: dict[str, str] = {}
    for position, pair in enumerate((p.strip() for p in value.split(",")), start=1):
        if not pair:
            continue
        name, sep, token = pair.partition(":")
        name, token = name.strip(), token.strip()
        if not sep or not token:
            raise ValueError(f"OPERATOR_TOKENS pair {position} is not name:token")
        if not OPERATOR_NAME.match(name):
            raise ValueError(
                f"OPERATOR_TOKENS pair {position}: the name must be 1-40 letters, digits, "
                "'_', '.' or '-'"
            )
        if name == ADMIN_OPERATOR or name in operators:
            raise ValueError(f"OPERATOR_TOKENS names {name!r} twice (admin is ADMIN_TOKEN's)")
        if token in operators.values():
            raise ValueError(f"OPERATOR_TOKENS pair {position} repeats another's token")
        operators[name] = token
    return operators


class Settings(EventsSettings, OutreachSettings):
    """Every knob of the service. Field names are the environment variables, upper-cased.
    The outgoing events' settings come from ``events.settings.EventsSettings``, the nudge's
    from ``outreach_settings.OutreachSettings``."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", frozen=True)

    #: Development mode: the service may start without secrets (``./run serve`` generates them).

    environment: Environment = Environment.PRODUCTION
    redis_url: str = "redis://localhost:6379/0"
    redis_key_prefix: str = "wa:"

    # Twilio
    twilio_auth_token: str = ""
    twilio_account_sid: str = ""
    #: The https URL Twilio calls (signatures cover it); required outside development.
    public_base_url: str = ""
    #: Reverse proxies in front of the web process that append to X-Forwarded-Proto/-Host:
    #: without PUBLIC_BASE_URL, the entry this many from the right names the signed URL.
    forwarded_proxy_count: int = Field(default=0, ge=0, le=10)
    #: Deprecated: ``true`` means FORWARDED_PROXY_COUNT=1 (``trusted_proxies``).
    trust_proxy_headers: bool = False
    business_number: str = DEFAULT_BUSINESS_NUMBER
    default_region: str | None = None

    # Session API
    admin_token: str = ""

    # Lifecycle
    session_timeout_hours: float = Field(default=24.0, gt=0)
    carry_over_context_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    max_messages_per_session: int = Field(default=5000, ge=1)
    retention_days: float = Field(default=float(DEFAULT_RETENTION_DAYS), gt=0)

    # Ingest and workers
    #: How long a MessageSid is remembered (replays refused): at least the retention period
    #: outside development, since a request the service still holds data for must not apply again.
    dedupe_ttl_seconds: int = Field(default=DEFAULT_DEDUPE_TTL_SECONDS, ge=60)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    max_inbox_depth: int = Field(default=10_000, ge=1)
    #: Inbound messages one conversation may send a minute (up to that many at once, then one
    #: every 60/N s); more are refused with 429 ``rate_limited``. 0: no limit.
    ingest_messages_per_minute: int = Field(default=60, ge=0, le=60_000)
    lease_seconds: float = Field(default=DEFAULT_LEASE_SECONDS, gt=0)
    drain_batch_size: int = Field(default=100, ge=1)
    redrive_interval_seconds: float = Field(default=1.0, gt=0)
    expiry_sweep_interval_seconds: float = Field(default=60.0, gt=0)
    #: Dramatiq's own variable (Dramatiq reads it too): messages a worker process prefetches.
    #: Unset (0), each process takes one wake-up per thread (``broker.OneMessagePerThread``).
    dramatiq_queue_prefetch: int = Field(default=0, ge=0)

    # Metrics
    #: How often the scheduler turns session ends into metrics.
    metrics_events_interval_seconds: float = Field(default=5.0, gt=0)
    #: prometheus_client's multiprocess directory (the library reads the variable itself too).
    prometheus_multiproc_dir: str = ""

    # Order extraction (OpenAI when a key is set, else the offline rule-based extractor)
    openai_api_key: str = ""
    openai_model: str = "gpt-5.4-mini"
    openai_base_url: str = ""
    openai_timeout_seconds: float = Field(default=10.0, gt=0)
    openai_max_retries: int = Field(default=2, ge=0, le=10)
    openai_retry_budget_seconds: float = Field(default=25.0, gt=0)
    openai_history_messages: int = Field(default=20, ge=0, le=200)
    #: OpenAI calls one worker process keeps in flight at once.
    openai_max_concurrency: int = Field(default=256, ge=1)
    #: Requests per minute the whole deployment may start (a token bucket in Redis); 0: no cap.
    openai_requests_per_minute: int = Field(default=0, ge=0)

    # Worker processes
    #: Drains one worker process keeps in flight at once (each may wait for OpenAI or Twilio).
    worker_max_in_flight: int = Field(default=256, ge=1)

    # Web process (the HTTP server and what it answers besides Twilio)
    #: Longest a client may take to send one whole request, headers and body, from its first
    #: byte (or from connecting); then the server answers 408 and closes the connection.
    request_timeout_seconds: float = Field(default=10.0, gt=0, le=30)
    #: When set, ``/metrics`` needs ``Authorization: Bearer <token>``; empty, it is public.
    metrics_token: str = ""

    # Analytics (issue #13, the operator console's figures: wa_sessions/analytics/)
    #: How long the hourly analytics rollups are kept after their hour closes.
    analytics_retention_days: float = Field(default=90.0, gt=0, le=3660)

    # Replies (through Twilio when TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN are set, else logged)
    twilio_api_base_url: str = "https://api.twilio.com"
    twilio_timeout_seconds: float = Field(default=5.0, gt=0)
    twilio_max_retries: int = Field(default=2, ge=0, le=10)
    twilio_retry_budget_seconds: float = Field(default=15.0, gt=0)
    #: The business's own reply texts, for every language; unset (or empty): the message
    #: catalogs' text in the customer's language (wa_sessions/replies/locales).
    reply_order_template: str | None = None
    reply_empty_order_template: str | None = None
    reply_nothing_template: str | None = None

    # Media fetching and the per-phone OpenAI cap (orders/media.py, orders/daily_cap.py)
    #: Hosts of Twilio's media URLs: only ``https`` URLs on them are fetched, and only they are
    #: sent the account's credentials. Comma-separated; a leading dot matches any subdomain.
    twilio_media_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_TWILIO_MEDIA_HOSTS)
    )
    #: Where a media URL may redirect to (Twilio's CDN), besides the media hosts themselves.
    twilio_media_redirect_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_TWILIO_MEDIA_REDIRECT_HOSTS)
    )
    #: One deadline for fetching all of a message's images, redirects and bytes included.
    media_fetch_deadline_seconds: float = Field(
        default=DEFAULT_MEDIA_FETCH_DEADLINE_SECONDS, gt=0, le=60
    )
    #: Larger images are left out (WhatsApp's own cap is 5 MB).
    max_image_bytes: int = Field(default=DEFAULT_MAX_IMAGE_BYTES, ge=1024)
    #: OpenAI extractions one customer may cause per UTC day; past it, rule-based. 0: no cap.
    openai_daily_calls_per_phone: int = Field(default=500, ge=0)

    @field_validator("twilio_media_hosts", "twilio_media_redirect_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        return check_host_entries(value) if isinstance(value, list) else value

    # ---- Operator console (issue #13, console core: wa_sessions/console) -------------------
    #: Named operators besides ``admin`` (who signs in with ADMIN_TOKEN): ``name:token,...``.
    operator_tokens: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    #: How long a console sign-in lasts (the server-side console session's TTL).
    console_session_hours: float = Field(default=12.0, gt=0, le=24 * 30)
    #: A failed sign-in is answered after this delay (slows token guessing).
    console_sign_in_delay_seconds: float = Field(default=1.0, ge=0, le=10)
    #: Failed sign-ins one client address may make per minute before the form answers 429
    #: (0: no limit).
    console_sign_in_failures_per_minute: int = Field(default=10, ge=0, le=10_000)

    # ---- Session analysis (issue #14: wa_sessions/analysis/) ----
    #: Analyse every session when it ends (the scheduler); else only on demand.
    analysis_on_session_end: bool = True
    #: The latest messages of a session an analysis reads.
    analysis_max_messages: int = Field(default=200, ge=1, le=5000)

    # ---- Agent takeover (issue #13, takeover part) ----
    #: Longest operator reply the session API accepts (Twilio refuses bodies over 1,600).
    operator_reply_max_chars: int = Field(default=1600, ge=1, le=1600)

    # ---- Conversation templates (issue #15, flows part: docs/TEMPLATES.md) ----
    #: Every business number's default flow: a shipped template's name (``order``) or a TOML
    #: file's path; unset: no flow (the replies of a session without a template).
    conversation_template: str | None = None
    #: A directory of ``<business number>.toml`` templates (and an optional
    #: ``templates.toml`` mapping numbers to names or files), each number's own flow.
    conversation_templates_dir: Path | None = None
    # ---- Archive and outbox (issue #16: wa_sessions/archive/, wa_sessions/outbox/) ----
    #: The SQL archive: SQLite (relative to where the service runs) or postgresql+psycopg://.
    database_url: str = "sqlite:///.run/archive.db"
    outbox_batch_size: int = Field(default=100, ge=1, le=10_000)
    #: How long an entry stays with a dead consumer before another takes it over (XAUTOCLAIM).
    outbox_claim_idle_seconds: float = Field(default=60.0, gt=0)
    #: First wait before a batch the consumer did not finish is tried again (doubling to 30 s).
    outbox_retry_seconds: float = Field(default=1.0, gt=0, le=60)
    outbox_trim_interval_seconds: float = Field(default=10.0, gt=0)
    #: This process' consumer name in the groups (a restart under it resumes its own entries).
    outbox_consumer_name: str = ""

    @classmethod
    def load(cls, *, dev_env_file: Path | None = None) -> Self:
        """The settings from the environment. With ``dev_env_file`` (a development run's saved
        values, written by ``wa-sessions serve``), its values fill in what the environment
        leaves unset, but only when that makes a development configuration: an environment
        that says ``ENVIRONMENT=production`` never picks up a development Redis."""
        if dev_env_file is not None and dev_env_file.is_file():
            settings = cls(_env_file=dev_env_file)  # type: ignore[call-arg]
            if settings.environment is Environment.DEVELOPMENT:
                return settings
        return cls()

    @field_validator("carry_over_context_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("operator_tokens", mode="before")
    @classmethod
    def _parse_operator_tokens(cls, value: object) -> object:
        if isinstance(value, str):
            return parse_operator_tokens(value)
        return value

    @field_validator("reply_order_template", "reply_empty_order_template", "reply_nothing_template")
    @classmethod
    def _check_template(cls, value: str | None) -> str | None:
        return check_template(value) if value else None

    @model_validator(mode="after")
    def _budgets_cover_a_timeout(self) -> Self:
        for name, timeout, budget in (
            ("OPENAI", self.openai_timeout_seconds, self.openai_retry_budget_seconds),
            ("TWILIO", self.twilio_timeout_seconds, self.twilio_retry_budget_seconds),
        ):
            if budget < timeout:
                raise ValueError(
                    f"{name}_RETRY_BUDGET_SECONDS must be at least {name}_TIMEOUT_SECONDS"
                )
        return self

    @model_validator(mode="after")
    def _nudge_before_expiry(self) -> Self:
        self.check_nudge_timing(self.session_timeout_hours)
        return self

    def check_secure(self) -> Self:
        """Refuses to serve outside development without what keeps the service closed
        (``security_checks.insecure_settings``: the secrets and their length, the https URL
        Twilio signs, a dedupe window covering retention), naming every problem at once.
        Called by every process at start (web, worker, scheduler), not by operator scripts."""
        if self.environment is Environment.DEVELOPMENT:
            return self
        problems = insecure_settings(
            twilio_auth_token=self.twilio_auth_token,
            admin_token=self.admin_token,
            operator_tokens=self.operator_tokens,
            public_base_url=self.public_base_url,
            dedupe_ttl_seconds=self.dedupe_ttl_seconds,
            retention_days=self.retention_days,
        )
        if problems:
            raise InsecureSettings("; ".join(problems))
        return self

    @property
    def trusted_proxies(self) -> int:
        """How many proxies' forwarded headers are believed (``TRUST_PROXY_HEADERS=true``, the
        deprecated form, counts as one)."""
        return self.forwarded_proxy_count or (1 if self.trust_proxy_headers else 0)

    @property
    def sends_through_twilio(self) -> bool:
        """Replies go out through Twilio only with the account's full credentials."""
        return bool(self.twilio_account_sid and self.twilio_auth_token)

    @property
    def status_callback_url(self) -> str | None:
        """The status callback URL given to Twilio with each reply (needs PUBLIC_BASE_URL)."""
        if not self.public_base_url:
            return None
        return self.public_base_url.rstrip("/") + STATUS_CALLBACK_PATH

    @property
    def redis_location(self) -> str:
        """``REDIS_URL`` without its password, for messages to people."""
        parts = urlsplit(self.redis_url)
        if parts.password is None:
            return self.redis_url
        netloc = parts.netloc.rpartition("@")[2]
        user = f"{parts.username}:***@" if parts.username else ":***@"
        return urlunsplit(parts._replace(netloc=user + netloc))
