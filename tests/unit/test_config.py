"""Settings: read from the environment, and closed by default outside development."""

from __future__ import annotations

import pytest

from wa_sessions.bootstrap import create_app
from wa_sessions.config import Environment, InsecureSettings, Settings

SECRETS = ("TWILIO_AUTH_TOKEN", "ADMIN_TOKEN", "ENVIRONMENT", "CARRY_OVER_CONTEXT_KEYS")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SECRETS:
        monkeypatch.delenv(name, raising=False)


def test_production_is_the_default_and_refuses_to_serve_without_secrets() -> None:
    """No ENVIRONMENT means production; without both tokens the check names what is missing."""
    settings = Settings()
    assert settings.environment is Environment.PRODUCTION
    with pytest.raises(InsecureSettings, match="TWILIO_AUTH_TOKEN, ADMIN_TOKEN"):
        settings.check_secure()


def test_one_missing_secret_is_still_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Twilio token alone does not open the session API."""
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "t")
    with pytest.raises(InsecureSettings, match="ADMIN_TOKEN"):
        Settings().check_secure()


def test_web_app_factory_refuses_to_start_without_secrets() -> None:
    """uvicorn's factory raises before any client or broker is built."""
    with pytest.raises(InsecureSettings):
        create_app(Settings(redis_url="redis://127.0.0.1:1/0"))


def test_development_mode_starts_without_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """ENVIRONMENT=development is the explicit opt-out."""
    monkeypatch.setenv("ENVIRONMENT", "development")
    settings = Settings().check_secure()
    assert settings.environment is Environment.DEVELOPMENT


def test_settings_read_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Comma-separated context keys and numbers come from the environment."""
    monkeypatch.setenv("CARRY_OVER_CONTEXT_KEYS", "customer_name, language,,")
    monkeypatch.setenv("SESSION_TIMEOUT_HOURS", "0.5")
    settings = Settings()
    assert settings.carry_over_context_keys == ["customer_name", "language"]
    assert settings.session_timeout_seconds == 1800


def test_nonsense_values_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    """A zero timeout is an error, not a service that expires everything."""
    monkeypatch.setenv("SESSION_TIMEOUT_HOURS", "0")
    with pytest.raises(ValueError, match="session_timeout_hours"):
        Settings()
