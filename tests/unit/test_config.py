"""Settings: read from the environment, and closed by default outside development."""

from __future__ import annotations

from pathlib import Path

import pytest

from wa_sessions.bootstrap import create_app
from wa_sessions.config import Environment, InsecureSettings, Settings

SECRETS = (
    "TWILIO_AUTH_TOKEN",
    "ADMIN_TOKEN",
    "ENVIRONMENT",
    "CARRY_OVER_CONTEXT_KEYS",
    "REDIS_URL",
    "METRICS_EVENTS_INTERVAL_SECONDS",
)


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
    assert settings.session_timeout_hours == 0.5


def test_nonsense_values_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    """A zero timeout is an error, not a service that expires everything."""
    monkeypatch.setenv("SESSION_TIMEOUT_HOURS", "0")
    with pytest.raises(ValueError, match="session_timeout_hours"):
        Settings()


def test_metrics_events_interval_is_a_setting_with_a_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """METRICS_EVENTS_INTERVAL_SECONDS: 5 s unless set; zero or less is refused."""
    assert Settings().metrics_events_interval_seconds == 5.0
    monkeypatch.setenv("METRICS_EVENTS_INTERVAL_SECONDS", "0.5")
    assert Settings().metrics_events_interval_seconds == 0.5
    monkeypatch.setenv("METRICS_EVENTS_INTERVAL_SECONDS", "0")
    with pytest.raises(ValueError, match="metrics_events_interval_seconds"):
        Settings()


def write_dev_env(tmp_path: Path) -> Path:
    path = tmp_path / "dev.env"
    path.write_text(
        "ENVIRONMENT=development\nADMIN_TOKEN=dev-admin\nPORT=8123\n"
        "REDIS_URL=redis://127.0.0.1:6390/0\n"
    )
    return path


def test_a_development_runs_saved_values_fill_in_what_the_environment_leaves_unset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``.run/dev.env`` gives a script the development run's Redis and secrets; a variable set
    in the environment still wins."""
    dev_env = write_dev_env(tmp_path)
    settings = Settings.load(dev_env_file=dev_env)
    assert settings.environment is Environment.DEVELOPMENT
    assert (settings.redis_url, settings.admin_token) == ("redis://127.0.0.1:6390/0", "dev-admin")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6391/0")
    assert Settings.load(dev_env_file=dev_env).redis_url == "redis://127.0.0.1:6391/0"


def test_an_explicit_production_environment_ignores_a_development_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENVIRONMENT=production never picks up a development Redis; a missing file is no error."""
    monkeypatch.setenv("ENVIRONMENT", "production")
    settings = Settings.load(dev_env_file=write_dev_env(tmp_path))
    assert settings.redis_url == "redis://localhost:6379/0"
    assert settings.admin_token == ""
    monkeypatch.delenv("ENVIRONMENT")
    assert Settings.load(dev_env_file=tmp_path / "missing.env") == Settings()


def test_redis_location_hides_the_password() -> None:
    """Messages to people name the Redis without its credentials."""
    assert (
        Settings(redis_url="redis://:s3cret@db:6379/1").redis_location == "redis://:***@db:6379/1"
    )
    assert Settings(redis_url="redis://u:s3cret@db/0").redis_location == "redis://u:***@db/0"
    assert Settings(redis_url="redis://db:6379/0").redis_location == "redis://db:6379/0"


@pytest.mark.parametrize("seconds", ["0", "-1", "30.5", "600"])
def test_a_request_timeout_outside_0_to_30_seconds_is_refused(
    monkeypatch: pytest.MonkeyPatch, seconds: str
) -> None:
    """Zero would cut every request; more than Twilio's 15 s (with room) would let slow
    clients hold connections for long: the setting names its bounds."""
    monkeypatch.setenv("REQUEST_TIMEOUT_SECONDS", seconds)
    with pytest.raises(ValueError, match="request_timeout_seconds"):
        Settings()


def test_the_request_timeout_defaults_to_10_seconds_and_reads_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Unset, 10 s; ``REQUEST_TIMEOUT_SECONDS=2.5`` gives 2.5."""
    monkeypatch.delenv("REQUEST_TIMEOUT_SECONDS", raising=False)
    assert Settings().request_timeout_seconds == 10.0
    monkeypatch.setenv("REQUEST_TIMEOUT_SECONDS", "2.5")
    assert Settings().request_timeout_seconds == 2.5
