"""Settings: read from the environment, and closed by default outside development."""

from __future__ import annotations

from pathlib import Path

import pytest

from wa_sessions.bootstrap import build_nudge_policy, create_app
from wa_sessions.config import Environment, InsecureSettings, Settings

SECRETS = (
    "TWILIO_AUTH_TOKEN",
    "ADMIN_TOKEN",
    "ENVIRONMENT",
    "CARRY_OVER_CONTEXT_KEYS",
    "REDIS_URL",
    "METRICS_EVENTS_INTERVAL_SECONDS",
    "PUBLIC_BASE_URL",
    "FORWARDED_PROXY_COUNT",
    "TRUST_PROXY_HEADERS",
    "DEDUPE_TTL_SECONDS",
    "RETENTION_DAYS",
)
#: What a production deployment sets; each test below takes one thing away.
PRODUCTION = {
    "TWILIO_AUTH_TOKEN": "t" * 32,
    "ADMIN_TOKEN": "a" * 32,
    "PUBLIC_BASE_URL": "https://hooks.example.test",
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SECRETS:
        monkeypatch.delenv(name, raising=False)


def test_production_is_the_default_and_refuses_to_serve_without_secrets() -> None:
    """No ENVIRONMENT means production; without both tokens the check names what is missing."""
    settings = Settings()
    assert settings.environment is Environment.PRODUCTION
    with pytest.raises(InsecureSettings, match="TWILIO_AUTH_TOKEN, ADMIN_TOKEN, PUBLIC_BASE_URL"):
        settings.check_secure()


def production(monkeypatch: pytest.MonkeyPatch, **overrides: str) -> Settings:
    for name, value in {**PRODUCTION, **overrides}.items():
        monkeypatch.setenv(name, value)
    return Settings()


def test_a_complete_production_configuration_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both tokens, 32 characters or more, and an https public URL: the service may start."""
    settings = production(monkeypatch).check_secure()
    assert settings.environment is Environment.PRODUCTION


@pytest.mark.parametrize("token", ["Q", "a" * 31, "secret-admin-token"])
def test_an_admin_token_shorter_than_32_characters_is_refused_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch, token: str
) -> None:
    """A guessable ADMIN_TOKEN opens every conversation: refused at start, the message says
    how long it must be and never quotes it."""
    with pytest.raises(InsecureSettings, match="ADMIN_TOKEN must be at least 32 characters") as e:
        production(monkeypatch, ADMIN_TOKEN=token).check_secure()
    assert token not in str(e.value)


@pytest.mark.parametrize(
    "url", ["http://hooks.example.test", "hooks.example.test", "https://", "ftp://h.test"]
)
def test_outside_development_the_public_base_url_must_be_https(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    """Twilio signs the URL it calls; without a configured https one the signed URL would come
    from the request's Host, which any client sets."""
    with pytest.raises(InsecureSettings, match="PUBLIC_BASE_URL must be the https URL"):
        production(monkeypatch, PUBLIC_BASE_URL=url).check_secure()


def test_outside_development_the_public_base_url_is_required(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An empty PUBLIC_BASE_URL is named as missing."""
    with pytest.raises(InsecureSettings, match=r"^PUBLIC_BASE_URL must be set"):
        production(monkeypatch, PUBLIC_BASE_URL="").check_secure()


def test_the_dedupe_window_defaults_to_the_retention_period() -> None:
    """30 days of retention, 30 days of remembered MessageSids."""
    settings = Settings()
    assert settings.dedupe_ttl_seconds == settings.retention_days * 24 * 3600 == 30 * 86_400


@pytest.mark.parametrize(
    ("dedupe", "retention"), [("604800", "30"), ("2591999", "30"), ("2592000", "30.5")]
)
def test_a_dedupe_window_shorter_than_retention_is_refused_outside_development(
    monkeypatch: pytest.MonkeyPatch, dedupe: str, retention: str
) -> None:
    """The old 7-day window, or one a second short: a replay of a stored message would apply
    again. Development may shorten it."""
    with pytest.raises(InsecureSettings, match=r"DEDUPE_TTL_SECONDS .* retention period"):
        production(monkeypatch, DEDUPE_TTL_SECONDS=dedupe, RETENTION_DAYS=retention).check_secure()
    monkeypatch.setenv("ENVIRONMENT", "development")
    assert Settings().check_secure().dedupe_ttl_seconds == int(dedupe)


def test_every_problem_is_named_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """One start tells the operator everything to fix."""
    with pytest.raises(InsecureSettings) as refused:
        production(
            monkeypatch, ADMIN_TOKEN="short", PUBLIC_BASE_URL="http://h", DEDUPE_TTL_SECONDS="60"
        ).check_secure()
    assert [part.split()[0] for part in str(refused.value).split("; ")] == [
        "ADMIN_TOKEN",
        "PUBLIC_BASE_URL",
        "DEDUPE_TTL_SECONDS",
    ]


def test_forwarded_proxy_count_is_read_and_trust_proxy_headers_means_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """FORWARDED_PROXY_COUNT=0 by default; the deprecated TRUST_PROXY_HEADERS=true counts as
    one proxy, and an explicit count wins over it."""
    assert Settings().trusted_proxies == 0
    monkeypatch.setenv("TRUST_PROXY_HEADERS", "true")
    assert Settings().trusted_proxies == 1
    monkeypatch.setenv("FORWARDED_PROXY_COUNT", "2")
    assert Settings().trusted_proxies == 2
    monkeypatch.setenv("FORWARDED_PROXY_COUNT", "-1")
    with pytest.raises(ValueError, match="forwarded_proxy_count"):
        Settings()


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


# ---- the nudge before expiry (issue #15) ----------------------------------------------------


def test_the_nudge_defaults_to_an_hour_before_expiry_every_30_seconds_without_a_template() -> None:
    settings = Settings()
    assert settings.nudge_before_expiry_minutes == 60
    assert settings.nudge_content_sid is None
    assert settings.nudge_interval_seconds == 30


def test_a_nudge_lead_set_as_long_as_the_session_timeout_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The nudge would be due when the session starts: a mistake, named."""
    monkeypatch.setenv("NUDGE_BEFORE_EXPIRY_MINUTES", "60")
    with pytest.raises(ValueError, match="NUDGE_BEFORE_EXPIRY_MINUTES must be less than"):
        Settings(session_timeout_hours=1)
    assert Settings(session_timeout_hours=1, nudge_before_expiry_minutes=0)


def test_the_default_lead_with_a_short_session_timeout_turns_the_nudge_off() -> None:
    """A half-hour SESSION_TIMEOUT_HOURS set before the nudge existed still starts."""
    settings = Settings(session_timeout_hours=0.5)
    assert build_nudge_policy(settings).before_minutes == 0
    assert build_nudge_policy(Settings(session_timeout_hours=2)).before_minutes == 60


@pytest.mark.parametrize("sid", ["MG" + "a" * 32, "HX" + "a" * 31, "HX" + "g" * 32, ""])
def test_a_nudge_content_sid_that_is_not_a_content_sid_is_refused(sid: str) -> None:
    with pytest.raises(ValueError, match="nudge_content_sid"):
        Settings(nudge_content_sid=sid)


def test_the_nudge_policy_is_built_from_the_settings() -> None:
    sid = "HX" + "0123456789abcdef" * 2
    policy = build_nudge_policy(Settings(nudge_before_expiry_minutes=15, nudge_content_sid=sid))
    assert (policy.before_minutes, policy.content_sid) == (15, sid)
