"""The composition root's builders of the adapters to the outside: the order extractor (OpenAI
or the offline rules, behind the rate gate and the daily cap), the session analyser (OpenAI or
offline), the media fetcher for Twilio's images, the reply sender (Twilio or the log), the
reply templates and the outgoing events' consumer and sender (``EVENTS_WEBHOOK_URL``).
``bootstrap`` calls them;
they live apart to keep each module readable. Each SDK is imported only by a process that is
configured to use it.
"""

from __future__ import annotations

import logging
import ssl
from typing import TYPE_CHECKING

import redis.asyncio

from wa_sessions.analysis.models import Analyser
from wa_sessions.analysis.offline import OfflineAnalyser
from wa_sessions.analysis.service import SessionAnalyses
from wa_sessions.config import Settings
from wa_sessions.events.consumer import DeliveryPolicy, EventsConsumer
from wa_sessions.events.sender import WebhookSender
from wa_sessions.events.store import RedisEventStore
from wa_sessions.metrics.orders import DAILY_CAP_FALLBACKS
from wa_sessions.orders.daily_cap import DailyCappedExtractor
from wa_sessions.orders.extractor import OrderExtractor
from wa_sessions.orders.media_policy import MediaPolicy
from wa_sessions.orders.rule_based import RuleBasedOrderExtractor
from wa_sessions.ratelimit import RateGate
from wa_sessions.replies.sender import LogSender, OutboundSender
from wa_sessions.replies.templates import ReplyTemplates
from wa_sessions.retries import RetryPolicy
from wa_sessions.statemachine.redis.analysis_store import RedisAnalysisStore
from wa_sessions.statemachine.redis.keys import Keys
from wa_sessions.statemachine.redis.limits import RedisDailyCallCap, RedisSharedLimit
from wa_sessions.statemachine.service import SessionService

if TYPE_CHECKING:
    from wa_sessions.orders.media import TwilioMediaFetcher

log = logging.getLogger(__name__)


def build_extractor(
    settings: Settings, shared_limit_client: redis.asyncio.Redis | None = None
) -> OrderExtractor:
    """OpenAI when ``OPENAI_API_KEY`` is set, else the offline rule-based extractor. OpenAI
    calls pass a ``RateGate``: ``OPENAI_MAX_CONCURRENCY`` per process, and, with
    ``shared_limit_client``, ``OPENAI_REQUESTS_PER_MINUTE`` and 429 pauses across the
    deployment, and ``OPENAI_DAILY_CALLS_PER_PHONE`` per customer (then rule-based)."""
    if not settings.openai_api_key:
        return RuleBasedOrderExtractor()
    # Imported here: the OpenAI SDK is loaded only by processes configured to call it.
    from wa_sessions.orders.openai import OpenAIOrderExtractor

    keys = Keys(settings.redis_key_prefix)
    shared = (
        RedisSharedLimit(shared_limit_client, keys, "openai", settings.openai_requests_per_minute)
        if shared_limit_client is not None
        else None
    )
    openai_extractor = OpenAIOrderExtractor(
        api_key=settings.openai_api_key,
        model=settings.openai_model,
        base_url=settings.openai_base_url or None,
        policy=openai_policy(settings),
        history_limit=settings.openai_history_messages,
        media=build_media_fetcher(settings),
        gate=RateGate(max_concurrency=settings.openai_max_concurrency, shared=shared),
    )
    if shared_limit_client is None or not settings.openai_daily_calls_per_phone:
        return openai_extractor
    return DailyCappedExtractor(
        openai_extractor,
        RuleBasedOrderExtractor(),
        RedisDailyCallCap(
            shared_limit_client, keys, "openai", settings.openai_daily_calls_per_phone
        ),
        on_fallback=DAILY_CAP_FALLBACKS.inc,
    )


def openai_policy(settings: Settings) -> RetryPolicy:
    """The retry budget of every OpenAI call (extraction and analysis)."""
    return RetryPolicy(
        timeout_seconds=settings.openai_timeout_seconds,
        max_retries=settings.openai_max_retries,
        budget_seconds=settings.openai_retry_budget_seconds,
    )


def build_media_fetcher(
    settings: Settings, ssl_context: ssl.SSLContext | None = None
) -> TwilioMediaFetcher:
    """The image fetcher of the OpenAI extractor and of the console's media proxy: Twilio's
    media hosts only, with the account's credentials when both are set, trusting the system's
    CAs unless told otherwise."""
    # Imported here: aiohttp is loaded only by processes that fetch media.
    from wa_sessions.orders.media import MediaCredentials, TwilioMediaFetcher

    credentials = None
    if settings.twilio_account_sid and settings.twilio_auth_token:
        credentials = MediaCredentials(settings.twilio_account_sid, settings.twilio_auth_token)
    return TwilioMediaFetcher(
        MediaPolicy(
            hosts=tuple(settings.twilio_media_hosts),
            redirect_hosts=tuple(settings.twilio_media_redirect_hosts),
            deadline_seconds=settings.media_fetch_deadline_seconds,
            max_bytes=settings.max_image_bytes,
        ),
        credentials=credentials,
        ssl_context=ssl_context or ssl.create_default_context(),
    )


def build_sender(settings: Settings) -> OutboundSender:
    """Twilio when the account SID and auth token are both set, else replies are only logged."""
    if not settings.sends_through_twilio:
        return LogSender()
    # Imported here: the Twilio REST client is loaded only by processes configured to send.
    from wa_sessions.replies.twilio import TwilioSender

    if settings.status_callback_url is None:
        log.warning("PUBLIC_BASE_URL is not set: replies are sent without status callbacks")
    return TwilioSender(
        account_sid=settings.twilio_account_sid,
        auth_token=settings.twilio_auth_token,
        status_callback_url=settings.status_callback_url,
        api_base_url=settings.twilio_api_base_url,
        policy=RetryPolicy(
            timeout_seconds=settings.twilio_timeout_seconds,
            max_retries=settings.twilio_max_retries,
            budget_seconds=settings.twilio_retry_budget_seconds,
        ),
    )


def build_reply_templates(settings: Settings) -> ReplyTemplates:
    return ReplyTemplates(
        order=settings.reply_order_template,
        empty_order=settings.reply_empty_order_template,
        nothing=settings.reply_nothing_template,
    )


def build_analyser(
    settings: Settings, shared_limit_client: redis.asyncio.Redis | None = None
) -> Analyser:
    """OpenAI when ``OPENAI_API_KEY`` is set (the extractor's model, timeout and retry budget,
    behind a rate gate of its own process' size and, with ``shared_limit_client``, the
    deployment's request rate and 429 pauses), else the offline analyser."""
    if not settings.openai_api_key:
        return OfflineAnalyser()
    # Imported here: the OpenAI SDK is loaded only by processes configured to call it.
    from wa_sessions.analysis.openai import OpenAISessionAnalyser

    shared = (
        RedisSharedLimit(
            shared_limit_client,
            Keys(settings.redis_key_prefix),
            "openai",
            settings.openai_requests_per_minute,
        )
        if shared_limit_client is not None
        else None
    )
    return OpenAISessionAnalyser(
        api_key=settings.openai_api_key,
        model=settings.openai_model,
        base_url=settings.openai_base_url or None,
        policy=openai_policy(settings),
        max_messages=settings.analysis_max_messages,
        gate=RateGate(max_concurrency=settings.openai_max_concurrency, shared=shared),
    )


def build_analyses(
    settings: Settings,
    service: SessionService,
    shared_limit_client: redis.asyncio.Redis | None = None,
) -> SessionAnalyses:
    """The session analyses over ``service``'s Redis and the configured analyser."""
    return SessionAnalyses(
        service,
        RedisAnalysisStore(service.store.client, service.store.keys),
        build_analyser(settings, shared_limit_client),
        max_messages=settings.analysis_max_messages,
    )


def build_event_store(settings: Settings, client: redis.asyncio.Redis) -> RedisEventStore:
    """The events' Redis state over ``client`` (``decode_responses=True``)."""
    return RedisEventStore(client, Keys(settings.redis_key_prefix))


def build_webhook_sender(settings: Settings) -> WebhookSender:
    return WebhookSender(
        settings.events_webhook_url,
        settings.events_webhook_secret,
        settings.events_timeout_seconds,
    )


def build_events_consumer(settings: Settings, client: redis.asyncio.Redis) -> EventsConsumer | None:
    """The outbox's ``events`` consumer when ``EVENTS_WEBHOOK_URL`` is set, else None (no
    group is then created, so nothing holds the outbox's trimming back for it)."""
    if not settings.sends_events:
        return None
    policy = DeliveryPolicy(
        timeout_seconds=settings.events_timeout_seconds,
        retry_window_seconds=settings.events_retry_hours * 3600,
        backoff_seconds=settings.events_retry_base_seconds,
    )
    return EventsConsumer(
        build_event_store(settings, client),
        build_webhook_sender(settings),
        policy,
        max_in_flight=settings.events_max_in_flight,
    )
