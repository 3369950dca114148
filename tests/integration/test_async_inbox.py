"""The webhook's pipelined ingest: concurrent accepts share round trips, keep call order and
atomicity, and survive Redis losing its script cache."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import redis
import redis.asyncio

from wa_sessions.statemachine.models import Message
from wa_sessions.statemachine.redis.inbox import AsyncInbox, InboxPolicy
from wa_sessions.statemachine.redis.keys import Keys
from wa_sessions.statemachine.steps import IngestOutcome

CONV = "+14155550001|+14155238886"


def message(content: str, sid: str | None = None) -> Message:
    return Message(id=sid or "SM" + uuid.uuid4().hex, content=content, timestamp=datetime.now(UTC))


def run_accepts(redis_url: str, messages: list[Message], *, flush: bool = False) -> list[int]:
    async def main() -> list[int]:
        client = redis.asyncio.Redis.from_url(redis_url)
        inbox = AsyncInbox(client, Keys(), InboxPolicy(max_depth=1000))
        if flush:
            await client.script_flush()
        batches: list[int] = []
        send = inbox._send

        async def counting_send(batch: list[Any]) -> None:
            batches.append(len(batch))
            await send(batch)

        inbox._send = counting_send  # type: ignore[method-assign]
        results = await asyncio.gather(
            *(inbox.accept(CONV, m, accepted_ms=1000 + i) for i, m in enumerate(messages))
        )
        inbox.close()
        await client.aclose()
        return [int(r) for r in results] + [len(batches)]

    return asyncio.run(main())


def test_concurrent_accepts_go_out_as_one_pipeline_in_call_order(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """50 concurrent accepts: one pipeline, entries in call order, only the first wakes."""
    messages = [message(f"m{i}") for i in range(50)]
    *results, pipelines = run_accepts(redis_url, messages)
    assert pipelines == 1
    assert results[0] == IngestOutcome.ACCEPTED_WAKE
    assert set(results[1:]) == {IngestOutcome.ACCEPTED}
    entries = redis_client.lrange(Keys().conv_inbox(CONV), 0, -1)
    assert [e.rsplit('"content":"', 1)[1].split('"', 1)[0] for e in entries] == [
        f"m{i}" for i in range(50)
    ]


def test_duplicates_inside_one_batch_are_stored_once(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """The same MessageSid twice in one pipeline: each script is atomic, the second sees the
    first's dedupe marker."""
    sid = "SM" + uuid.uuid4().hex
    *results, _ = run_accepts(redis_url, [message("a", sid), message("a", sid)])
    assert results == [IngestOutcome.ACCEPTED_WAKE, IngestOutcome.DUPLICATE]
    assert redis_client.llen(Keys().conv_inbox(CONV)) == 1


def test_a_batch_survives_redis_losing_its_script_cache(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """After SCRIPT FLUSH (a Redis restart) the batch reloads the script and applies once."""
    *results, _ = run_accepts(redis_url, [message("x"), message("y")], flush=True)
    assert results == [IngestOutcome.ACCEPTED_WAKE, IngestOutcome.ACCEPTED]
    assert redis_client.llen(Keys().conv_inbox(CONV)) == 2


def test_an_accept_after_redis_dropped_the_connection_goes_through_on_a_new_one(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """Redis restarted or a proxy dropped the idle connection: the batch is sent once more on a
    new connection instead of failing the webhook (ingest is idempotent), and stored once."""

    async def main() -> list[IngestOutcome]:
        client = redis.asyncio.Redis.from_url(redis_url)
        inbox = AsyncInbox(client, Keys(), InboxPolicy(max_depth=1000))
        first = await inbox.accept(CONV, message("before"), accepted_ms=1000)
        redis_client.client_kill_filter(_type="normal", skipme=True)
        second = await inbox.accept(CONV, message("after"), accepted_ms=1001)
        inbox.close()
        await client.aclose()
        return [first, second]

    assert asyncio.run(main()) == [IngestOutcome.ACCEPTED_WAKE, IngestOutcome.ACCEPTED]
    assert redis_client.llen(Keys().conv_inbox(CONV)) == 2


def test_a_batch_whose_connection_broke_mid_call_is_sent_once_more(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """The connection fails after the batch went out (its fate unknown): it is sent again on a
    new connection; a message that did get in the first time is refused as a duplicate."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    async def main() -> tuple[IngestOutcome, int]:
        client = redis.asyncio.Redis.from_url(redis_url)
        inbox = AsyncInbox(client, Keys(), InboxPolicy(max_depth=1000))
        execute = inbox._pipe.execute
        calls = 0

        async def ran_then_lost(commands: Any) -> list[Any]:
            nonlocal calls
            calls += 1
            replies = await execute(commands)
            if calls == 1:
                raise RedisConnectionError("lost after the write")
            return replies

        inbox._pipe.execute = ran_then_lost  # type: ignore[method-assign]
        outcome = await inbox.accept(CONV, message("once"), accepted_ms=1000)
        inbox.close()
        await client.aclose()
        return outcome, calls

    assert asyncio.run(main()) == (IngestOutcome.DUPLICATE, 2)
    assert redis_client.llen(Keys().conv_inbox(CONV)) == 1
