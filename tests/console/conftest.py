"""The console through the ASGI test client, on a real SessionService over the test Redis:
sign-in helpers and a seeded service."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio
from fastapi.testclient import TestClient

from tests.conftest import FakeClock
from tests.integration.test_webhook import BUSINESS, make_settings, wake_messages

# The HTTPS stand-ins for Twilio's media host and CDN, for the media proxy's tests.
from tests.media_servers import cdn, client_tls, media, media_ca  # noqa: F401
from wa_sessions.archive.reader import ArchiveReader
from wa_sessions.console import ConsoleDeps
from wa_sessions.console.media import TwilioMedia
from wa_sessions.statemachine import SessionService
from wa_sessions.statemachine.redis.inbox import AsyncInbox, InboxPolicy
from wa_sessions.webhook import WebDeps, create_app

ADMIN_TOKEN = "admin-token-of-the-console-tests-0123456789"
ALICE_TOKEN = "alice-token-of-the-console-tests-0123456789"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Console:
    client: TestClient
    service: SessionService
    clock: FakeClock

    def csrf(self, path: str = "/console/") -> str:
        match = CSRF.search(self.client.get(path).text)
        assert match, "the page has no CSRF field"
        return match.group(1)

    def sign_in(self, token: str = ADMIN_TOKEN) -> httpx.Response:
        page = self.client.get("/console/sign-in")
        match = CSRF.search(page.text)
        assert match
        return self.client.post(
            "/console/sign-in",
            data={"token": token, "csrf_token": match.group(1)},
            follow_redirects=False,
        )

    def post(self, path: str, data: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        return self.client.post(path, data=data or {}, follow_redirects=False, **kwargs)


MakeConsole = Callable[..., Console]


@pytest.fixture
def make_console(
    redis_client: redis.Redis, redis_url: str, clock: FakeClock
) -> Iterator[MakeConsole]:
    clients: list[TestClient] = []

    def make(
        *,
        media_proxy: TwilioMedia | None = None,
        service: SessionService | None = None,
        archive: ArchiveReader | None = None,
        **settings: Any,
    ) -> Console:
        """A console app; ``service``: one a test drives itself (a drain harness's);
        ``archive``: the SQL archive the conversation page falls back to."""
        options: dict[str, Any] = {
            "admin_token": ADMIN_TOKEN,
            "operator_tokens": {"alice": ALICE_TOKEN},
            "console_sign_in_delay_seconds": 0.2,
        }
        options.update(settings)
        config = make_settings(**options)
        service = service or SessionService(redis_client, business_number=BUSINESS, clock=clock)
        pubsub = redis.asyncio.Redis.from_url(redis_url)
        app = create_app(
            WebDeps(
                settings=config,
                service=service,
                inbox=AsyncInbox(
                    redis.asyncio.Redis.from_url(redis_url),
                    service.store.keys,
                    InboxPolicy(),
                    wake_message=wake_messages(),
                ),
                console=ConsoleDeps(
                    settings=config, service=service, pubsub_redis=lambda: pubsub, media=media_proxy
                ),
                archive=archive,
            )
        )
        client = TestClient(app, base_url="https://example.test")
        client.__enter__()
        clients.append(client)
        return Console(client, service, clock)

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def console(make_console: MakeConsole) -> Console:
    return make_console()


@pytest.fixture
def signed_in(console: Console) -> Console:
    assert console.sign_in().status_code == 303
    return console
