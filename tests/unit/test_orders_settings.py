"""Settings and wiring of orders and replies: which extractor and sender the workers get, the
status callback URL, and settings refused at start-up."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from pydantic import ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from wa_sessions.bootstrap import build_extractor, build_reply_templates, build_sender
from wa_sessions.config import STATUS_CALLBACK_PATH, Settings
from wa_sessions.orders.openai import OpenAIOrderExtractor
from wa_sessions.orders.rule_based import RuleBasedOrderExtractor
from wa_sessions.replies.sender import LogSender
from wa_sessions.replies.twilio import TwilioSender
from wa_sessions.webhook.status import STATUS_PATH


class _ExplicitSettings(Settings):
    """Settings from constructor arguments only: the test process's environment is ignored."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def settings(**values: Any) -> Settings:
    return _ExplicitSettings(**values)


def test_offline_defaults_are_rule_based_extraction_and_logged_replies() -> None:
    """No OpenAI key and no Twilio account SID: the service works without network or keys
    (the auth token alone, which signs webhooks, does not send)."""
    offline = settings(twilio_auth_token="token")

    assert isinstance(build_extractor(offline), RuleBasedOrderExtractor)
    assert isinstance(build_sender(offline), LogSender)


def test_keys_switch_on_openai_and_twilio() -> None:
    """OPENAI_API_KEY selects OpenAI; TWILIO_ACCOUNT_SID with the token selects Twilio, with
    the status callback under PUBLIC_BASE_URL and the configured API base URL."""
    online = settings(
        openai_api_key="sk-x",
        openai_model="gpt-test",
        openai_timeout_seconds=3,
        openai_retry_budget_seconds=9,
        twilio_account_sid="AC" + "1" * 32,
        twilio_auth_token="token",
        twilio_api_base_url="http://127.0.0.1:9/",
        public_base_url="https://wa.example.test/",
    )

    extractor = build_extractor(online)
    sender = build_sender(online)

    assert isinstance(extractor, OpenAIOrderExtractor)
    assert (extractor.model, extractor.budget_seconds) == ("gpt-test", 9)
    assert extractor.policy.timeout_seconds == 3
    assert isinstance(sender, TwilioSender)
    assert sender.status_callback_url == "https://wa.example.test/twilio-status"
    assert sender.api_base_url == "http://127.0.0.1:9"
    # The SDK logs every request's headers at INFO: quiet unless the deployment asks.
    assert logging.getLogger("twilio.async_http_client").getEffectiveLevel() == logging.WARNING


def test_the_status_callback_url_is_the_route_the_web_serves() -> None:
    """The URL given to Twilio and the route registered are the same path."""
    assert STATUS_PATH == STATUS_CALLBACK_PATH
    assert settings().status_callback_url is None


def test_a_retry_budget_below_one_timeout_is_refused() -> None:
    """A budget that cannot cover a single attempt is a configuration error."""
    with pytest.raises(ValidationError, match="OPENAI_RETRY_BUDGET_SECONDS"):
        settings(openai_timeout_seconds=30, openai_retry_budget_seconds=10)
    with pytest.raises(ValidationError, match="TWILIO_RETRY_BUDGET_SECONDS"):
        settings(twilio_timeout_seconds=30, twilio_retry_budget_seconds=10)


def test_reply_templates_come_from_settings_and_are_checked() -> None:
    """REPLY_* templates reach the workers; an unknown placeholder fails at start-up."""
    templates = build_reply_templates(settings(reply_order_template="Noted: {items}"))
    assert templates.order == "Noted: {items}"
    with pytest.raises(ValidationError, match="template"):
        settings(reply_order_template="Hi {name}")
