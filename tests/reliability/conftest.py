"""The e2e harness (the Procfile's processes on a private Redis) with append-only persistence
on, so a test can stop and restart Redis and keep its data, as production must; and the web app
in-process for the input and auth tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio
from fastapi.testclient import TestClient

# The e2e fixtures, resolved here against this directory's ``e2e_redis``.
from tests.e2e.conftest import e2e_client, service, service_factory  # noqa: F401
from tests.integration.test_webhook import make_settings

# The HTTPS media servers, for the image fetcher's tests.
from tests.media_servers import cdn, client_tls, media, media_ca  # noqa: F401
from tests.reliability.harness import FUZZ_ADMIN_TOKEN, FUZZ_BASE_URL, FUZZ_TWILIO_TOKEN, Web
from wa_sessions.embedded_redis import EmbeddedRedis
from wa_sessions.statemachine import SessionService
from wa_sessions.statemachine.redis.inbox import AsyncInbox
from wa_sessions.webhook import WebDeps, create_app
from wa_sessions.workers.broker import DrainWakeMessages
from wa_sessions.workers.queues import QueueKeys

BUSINESS = "+14155238886"
#: Small, so fuzzed bodies reach the limit (413) as often as they stay under it.
FUZZ_MAX_BODY_BYTES = 4096


@pytest.fixture
def e2e_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A Redis of this test's own with AOF on; ``stop()`` then ``start()`` keeps port and data."""
    directory = tmp_path / "redis"
    directory.mkdir()
    server = EmbeddedRedis(appendonly=True, directory=directory).start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def web(redis_client: redis.Redis, redis_url: str) -> Iterator[Web]:
    """The app on the run's shared Redis (flushed per test); wake-ups go to a queue of the
    tests' own that no worker reads."""
    sessions = SessionService(redis_client, business_number=BUSINESS)
    inbox = AsyncInbox(
        redis.asyncio.Redis.from_url(redis_url),
        sessions.store.keys,
        wake_message=DrainWakeMessages(QueueKeys(namespace="test-fuzz"), "drain"),
    )

    settings = make_settings(
        twilio_auth_token=FUZZ_TWILIO_TOKEN,
        admin_token=FUZZ_ADMIN_TOKEN,
        public_base_url=FUZZ_BASE_URL,
        max_body_bytes=FUZZ_MAX_BODY_BYTES,
    )
    app = create_app(WebDeps(settings=settings, service=sessions, inbox=inbox))
    with TestClient(app) as client:
        yield Web(app, client, redis_client, sessions)
