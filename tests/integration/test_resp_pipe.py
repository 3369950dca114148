"""The webhook's raw RESP connection: redis-py's handshake (ACL user, database), replies in
order across concurrent batches, error replies in place, and a client's failure semantics for
lost connections and timeouts."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
import redis
import redis.asyncio
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from wa_sessions.statemachine.redis.resp import RespPipe

T = TypeVar("T")


def run(url: str, body: Callable[[RespPipe], Awaitable[T]], **kwargs: Any) -> T:
    async def main() -> T:
        client = redis.asyncio.Redis.from_url(url)
        pipe = RespPipe(client, **kwargs)
        try:
            return await body(pipe)
        finally:
            pipe.close()
            await client.aclose()

    return asyncio.run(main())


def test_concurrent_batches_get_their_own_replies_in_order(redis_url: str) -> None:
    """50 batches written back to back on one connection, each gets exactly its replies."""

    async def body(pipe: RespPipe) -> list[list[Any]]:
        return await asyncio.gather(
            *(pipe.execute([("INCR", f"k{i % 5}"), ("ECHO", f"batch {i}")]) for i in range(50))
        )

    results = run(redis_url, body)
    assert [r[1] for r in results] == [f"batch {i}".encode() for i in range(50)]
    assert sorted(r[0] for r in results if True) == sorted(
        n for k in range(5) for n in range(1, 11)
    )


def test_an_error_reply_comes_back_in_its_place(redis_url: str) -> None:
    async def body(pipe: RespPipe) -> list[Any]:
        return await pipe.execute([("SET", "a", "1"), ("LPUSH", "a", "x"), ("GET", "a")])

    ok, error, value = run(redis_url, body)
    assert (ok, value) == (b"OK", b"1")
    assert isinstance(error, ResponseError)
    assert str(error).startswith("WRONGTYPE")


def test_handshake_uses_the_urls_acl_user_and_database(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """The connection is opened by redis-py from the URL: user, password and database."""
    redis_client.acl_setuser(
        "pipe", enabled=True, passwords=["+s3cret"], keys=["*"], commands=["+@all"]
    )
    try:
        url = redis_url.replace("redis://", "redis://pipe:s3cret@") + "/3"

        async def body(pipe: RespPipe) -> list[Any]:
            return await pipe.execute([("SET", "where", "db3"), ("ACL", "WHOAMI")])

        assert run(url, body) == [b"OK", b"pipe"]
        assert redis.Redis.from_url(redis_url + "/3").get("where") == b"db3"
        assert redis_client.get("where") is None
    finally:
        redis_client.acl_deluser("pipe")


def test_a_killed_connection_fails_the_call_in_flight_and_the_next_call_reconnects(
    redis_url: str, redis_client: redis.Redis
) -> None:
    async def body(pipe: RespPipe) -> tuple[BaseException | None, list[Any]]:
        await pipe.execute([("CLIENT", "SETNAME", "hotpath")])
        blocked = asyncio.ensure_future(pipe.execute([("BLPOP", "never", "5")]))
        await asyncio.sleep(0.2)
        redis_client.client_kill_filter(_type="normal", skipme=True, laddr=None, user=None)
        failure: BaseException | None = None
        try:
            await blocked
        except RedisConnectionError as exc:
            failure = exc
        return failure, await pipe.execute([("PING",)])

    failure, after = run(redis_url, body)
    assert isinstance(failure, RedisConnectionError)
    assert after == [b"PONG"]


def test_a_call_past_the_timeout_fails_and_leaves_no_reply_to_mismatch(redis_url: str) -> None:
    """BLPOP outlives the timeout: TimeoutError, and the next call gets its own reply on a new
    connection, not the late one."""

    async def body(pipe: RespPipe) -> tuple[BaseException | None, list[Any]]:
        failure: BaseException | None = None
        try:
            await pipe.execute([("BLPOP", "never", "1")])
        except RedisTimeoutError as exc:
            failure = exc
        return failure, await pipe.execute([("ECHO", "mine")])

    failure, after = run(redis_url, body, timeout=0.2)
    assert isinstance(failure, RedisTimeoutError)
    assert after == [b"mine"]


def test_nothing_listening_is_a_connection_error() -> None:
    from wa_sessions.embedded_redis import free_port

    async def body(pipe: RespPipe) -> list[Any]:
        return await pipe.execute([("PING",)])

    with pytest.raises(RedisConnectionError):
        run(f"redis://127.0.0.1:{free_port()}", body)
