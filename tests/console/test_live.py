"""Live updates over the test Redis: the drain step and session ends publish on the console's
channel, and one subscription per process fans the changes out to the event streams."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import redis
import redis.asyncio

from tests.conftest import FakeClock
from tests.console.conftest import Console
from tests.integration.test_drain import HarnessFactory, conv_of, make_harness
from tests.integration.test_effects import CONV
from tests.integration.test_takeover import make_desk
from tests.integration.test_webhook import BUSINESS
from wa_sessions.console.listing import conversation_digest
from wa_sessions.console.live import ChangeFeed, stream
from wa_sessions.statemachine.redis.delivery import AsyncDeliveryStatuses
from wa_sessions.statemachine.redis.keys import Keys

__all__ = ["make_harness"]
CHANNEL = Keys().console_channel


def _published(pubsub: redis.client.PubSub, timeout: float = 5.0) -> list[str]:
    found: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
        if message is None:
            if found:
                return found
            continue
        found.append(message["data"])
    return found


def test_a_drain_step_that_applies_messages_publishes_its_conversation(
    make_harness: HarnessFactory, redis_client: redis.Redis
) -> None:
    """Applying the inbox publishes the conversation key on ``console:changes``."""
    harness = make_harness()
    pubsub = redis_client.pubsub()
    pubsub.subscribe(CHANNEL)
    conv = conv_of(1)
    harness.accept_all(conv, ["hello", "I need 2 pizzas"])
    harness.drain(conv)
    assert conv in _published(pubsub)
    pubsub.close()


def test_a_drain_with_nothing_to_apply_publishes_nothing(
    make_harness: HarnessFactory, redis_client: redis.Redis
) -> None:
    """An empty drain changes nothing and says nothing."""
    harness = make_harness()
    pubsub = redis_client.pubsub()
    pubsub.subscribe(CHANNEL)
    harness.drain(conv_of(2))
    assert _published(pubsub, timeout=0.5) == []
    pubsub.close()


def test_an_ended_session_is_published(
    make_harness: HarnessFactory, redis_client: redis.Redis
) -> None:
    """Ending a session outside a drain (an operator, the expiry sweep) publishes too."""
    harness = make_harness()
    session = harness.service.add_message("+14155550100", "hi")
    pubsub = redis_client.pubsub()
    pubsub.subscribe(CHANNEL)
    harness.service.expire_session(session.session_id)
    assert _published(pubsub) == [f"+14155550100|{session.business_number}"]
    pubsub.close()


def test_one_subscription_fans_out_to_every_stream_and_forgets_closed_ones(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """Two streams get the same change; a closed stream leaves the fan-out."""

    async def scenario() -> tuple[list[str], list[str], int, int]:
        client = redis.asyncio.Redis.from_url(redis_url)
        feed = ChangeFeed(lambda: client, CHANNEL)
        async with feed.listen() as first:
            async with feed.listen() as second:
                await asyncio.wait_for(feed.subscribed.wait(), 5)
                redis_client.publish(CHANNEL, "a|b")
                got = [await asyncio.wait_for(q.get(), 5) for q in (first, second)]
                both = feed.listeners
            redis_client.publish(CHANNEL, "c|d")
            after = [await asyncio.wait_for(first.get(), 5)]
            one = feed.listeners
        await feed.close()
        await client.aclose()
        return got, after, both, one

    got, after, both, one = asyncio.run(scenario())
    assert got == ["a|b", "a|b"]
    assert after == ["c|d"]
    assert (both, one) == (2, 1)


#: What every stream starts with: the reconnection delay and the ``connected`` event.
CONNECTED = "retry: 3000\n\nevent: connected\ndata: 1\n\n"


def test_a_stream_coalesces_a_burst_and_names_each_conversation(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """A burst becomes one ``changed`` event plus one event per conversation."""

    async def scenario() -> str:
        client = redis.asyncio.Redis.from_url(redis_url)
        feed = ChangeFeed(lambda: client, CHANNEL)
        events = stream(feed, lambda: True, coalesce_seconds=0.2)
        assert await anext(events) == CONNECTED
        pending = asyncio.ensure_future(anext(events))
        await asyncio.wait_for(feed.subscribed.wait(), 5)
        for conv in ("a|b", "c|d", "a|b"):
            redis_client.publish(CHANNEL, conv)
        text = await asyncio.wait_for(pending, 5)
        await events.aclose()
        await feed.close()
        await client.aclose()
        return text

    text = asyncio.run(scenario())
    assert text.count("event: changed\n") == 1
    assert f"event: c-{conversation_digest('a|b')}\n" in text
    assert f"event: c-{conversation_digest('c|d')}\n" in text
    assert text.count("event: c-") == 2


def test_a_stream_ends_once_its_sign_in_is_revoked(redis_url: str) -> None:
    """At a keepalive the sign-in is checked again: a revoked one ends the stream."""

    async def scenario() -> list[str]:
        client = redis.asyncio.Redis.from_url(redis_url)
        feed = ChangeFeed(lambda: client, CHANNEL)
        signed_in = iter([True, False])
        chunks = [
            chunk async for chunk in stream(feed, lambda: next(signed_in), keepalive_seconds=0.1)
        ]
        listeners = feed.listeners
        await feed.close()
        await client.aclose()
        return [*chunks, str(listeners)]

    assert asyncio.run(scenario()) == [CONNECTED, ": keepalive\n\n", "0"]


def test_every_live_view_re_reads_itself_when_its_stream_connects() -> None:
    """A change published between a page's render and its stream's connection reached no
    one: the list's rows and an open conversation also refresh on the ``connected`` event
    that opens every stream (and every reconnection)."""
    templates = Path(__file__).resolve().parents[2] / "wa_sessions" / "console" / "templates"
    for name in ("_rows.html", "session.html"):
        triggers = re.findall(r'hx-trigger="([^"]+)"', (templates / name).read_text())
        assert triggers, name
        assert all("sse:connected" in trigger for trigger in triggers if "sse:" in trigger), name


def test_an_applied_delivery_status_and_a_takeover_change_publish_the_conversation(
    redis_client: redis.Redis, redis_url: str, clock: FakeClock
) -> None:
    """A status callback that moves a reply forward publishes (ticks update live), a repeated
    one does not; taking over and handing back publish too."""
    desk = make_desk(redis_client, clock)
    try:
        desk.h.accept("hello")
        desk.h.drain()
        twilio_sid = desk.h.session().messages[-1].metadata["twilio_sid"]
        pubsub = redis_client.pubsub()
        pubsub.subscribe(CHANNEL)

        async def record(status: str) -> None:
            client = redis.asyncio.Redis.from_url(redis_url)
            await AsyncDeliveryStatuses(client, desk.h.store.keys).record(
                twilio_sid, status, "", at=clock()
            )
            await client.aclose()

        asyncio.run(record("delivered"))
        assert _published(pubsub) == [CONV]
        asyncio.run(record("delivered"))
        assert _published(pubsub, timeout=0.5) == []
        sid = desk.session_id()
        desk.takeover.take_over(sid, "alice")
        desk.takeover.hand_back(sid, "alice")
        assert _published(pubsub) == [CONV, CONV]
        pubsub.close()
    finally:
        desk.h.deps.close()


def test_the_newest_conversation_page_refreshes_its_chat_and_side_on_its_own_event(
    signed_in: Console,
) -> None:
    """The chat re-reads itself on ``c-<digest>`` of its conversation and brings the side
    panel (holder, summary, order) along out of band; the reply box is outside both."""
    session = signed_in.service.add_message("+14155550100", "hello")
    page = signed_in.client.get(f"/console/sessions/{session.session_id}").text
    digest = conversation_digest(f"+14155550100|{BUSINESS}")
    assert (
        f'<div id="chat" hx-get="/console/sessions/{session.session_id}" '
        f'hx-trigger="sse:c-{digest}, sse:connected" hx-select="#chat" hx-select-oob="#side" '
        'hx-swap="outerHTML">'
    ) in page
    assert '<aside class="side" id="side">' in page
