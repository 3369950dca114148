"""The webhook's raw RESP connection: opened from the client's public settings (ACL user,
password only, database, unix socket, TLS), replies in order across concurrent batches, error
replies in place as redis-py's exception classes, and a client's failure semantics for lost
connections and timeouts."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
import redis.asyncio
import uvloop
from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    ExecAbortError,
    MasterDownError,
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from wa_sessions.embedded_redis import EmbeddedRedis, find_redis_server, free_port
from wa_sessions.statemachine.redis.resp import RespPipe, error_from_reply

T = TypeVar("T")


def run(
    url: str, body: Callable[[RespPipe], Awaitable[T]], *, uv: bool = False, **kwargs: Any
) -> T:
    async def main() -> T:
        client = redis.asyncio.Redis.from_url(url)
        pipe = RespPipe(client, **kwargs)
        try:
            return await body(pipe)
        finally:
            pipe.close()
            await client.aclose()

    return uvloop.run(main()) if uv else asyncio.run(main())


@contextlib.contextmanager
def private_server(*args: str, ping: redis.Redis) -> Iterator[None]:
    """A redis-server of its own for settings the shared one cannot take (a password, a unix
    socket, TLS), up once ``ping`` answers."""
    process = subprocess.Popen(
        [find_redis_server(), "--save", "", "--appendonly", "no", "--loglevel", "warning", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            assert process.poll() is None, f"redis-server exited with {process.returncode}"
            with contextlib.suppress(redis.ConnectionError, FileNotFoundError):
                if ping.ping():
                    break
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.02)
        yield
    finally:
        ping.close()
        process.terminate()
        process.wait(timeout=10)


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
    redis_server: EmbeddedRedis, redis_url: str, redis_client: redis.Redis
) -> None:
    """The connection authenticates as the URL's ACL user and selects its database."""
    redis_client.acl_setuser(
        "pipe", enabled=True, passwords=["+s3cret"], keys=["*"], commands=["+@all"]
    )
    try:
        url = f"redis://pipe:s3cret@127.0.0.1:{redis_server.port}/3"

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
        deadline = asyncio.get_running_loop().time() + 5
        while not (
            waiting := [
                c
                for c in redis_client.client_list()
                if (c["name"], c["cmd"]) == ("hotpath", "blpop")
            ]
        ):
            assert asyncio.get_running_loop().time() < deadline, "BLPOP never reached Redis"
            await asyncio.sleep(0.01)
        redis_client.client_kill_filter(_id=waiting[0]["id"])
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


@pytest.mark.parametrize("protocol", [2, 3])
def test_a_password_only_server_is_authenticated_before_any_command(protocol: int) -> None:
    """``requirepass`` (no ACL user): AUTH, or HELLO with AUTH under RESP3, from the URL's
    password; the database is selected too."""
    port = free_port()
    with private_server(
        "--port", str(port), "--bind", "127.0.0.1", "--requirepass", "pw-only",
        ping=redis.Redis(port=port, password="pw-only", socket_connect_timeout=0.2),
    ):  # fmt: skip
        url = f"redis://:pw-only@127.0.0.1:{port}/2?protocol={protocol}"

        async def body(pipe: RespPipe) -> list[Any]:
            return await pipe.execute([("SET", "k", "v"), ("ACL", "WHOAMI")])

        assert run(url, body) == [b"OK", b"default"]
        assert redis.Redis(port=port, password="pw-only", db=2).get("k") == b"v"


def test_a_wrong_password_fails_the_call_and_runs_nothing(redis_client: redis.Redis) -> None:
    """The handshake's refusal is an AuthenticationError raised before the batch is written."""
    port = free_port()
    with private_server(
        "--port", str(port), "--bind", "127.0.0.1", "--requirepass", "right",
        ping=redis.Redis(port=port, password="right", socket_connect_timeout=0.2),
    ):  # fmt: skip

        async def body(pipe: RespPipe) -> list[Any]:
            return await pipe.execute([("SET", "k", "v")])

        with pytest.raises(AuthenticationError):
            run(f"redis://:wrong@127.0.0.1:{port}/0", body)
        assert redis.Redis(port=port, password="right").get("k") is None


def test_a_refused_database_fails_the_call_instead_of_writing_to_database_zero(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """SELECT out of range is a ResponseError from the handshake; db 0 is left untouched."""

    async def body(pipe: RespPipe) -> list[Any]:
        return await pipe.execute([("SET", "stray", "1")])

    with pytest.raises(ResponseError, match="DB index is out of range"):
        run(redis_url.removesuffix("/0") + "/99", body)
    assert redis_client.get("stray") is None


def test_a_unix_socket_url_connects_with_its_database_and_client_name(tmp_path: Path) -> None:
    """``unix://`` opens a unix-socket connection; ``db`` and ``client_name`` apply to it."""
    socket_path = tmp_path / "redis.sock"
    with private_server(
        "--port", "0", "--unixsocket", str(socket_path), "--unixsocketperm", "700",
        ping=redis.Redis(unix_socket_path=str(socket_path), socket_connect_timeout=0.2),
    ):  # fmt: skip
        url = f"unix://{socket_path}?db=4&client_name=hotpath"

        async def body(pipe: RespPipe) -> list[Any]:
            return await pipe.execute([("SET", "k", "unix"), ("CLIENT", "GETNAME")])

        assert run(url, body) == [b"OK", b"hotpath"]
        assert redis.Redis(unix_socket_path=str(socket_path), db=4).get("k") == b"unix"


def test_a_rediss_url_speaks_tls_and_checks_the_servers_certificate(tmp_path: Path) -> None:
    """``rediss://`` with the URL's CA: TLS, host name checked; without that CA, refused."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command to make a certificate (apt-get install openssl)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    port = free_port()
    with private_server(
        "--port", "0", "--bind", "127.0.0.1", "--tls-port", str(port),
        "--tls-cert-file", str(cert), "--tls-key-file", str(key),
        "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no",
        ping=redis.Redis(port=port, ssl=True, ssl_ca_certs=str(cert), socket_connect_timeout=0.5),
    ):  # fmt: skip

        async def body(pipe: RespPipe) -> list[Any]:
            return await pipe.execute([("SET", "k", "tls"), ("GET", "k")])

        assert run(f"rediss://localhost:{port}/0?ssl_ca_certs={cert}", body) == [b"OK", b"tls"]
        with pytest.raises(RedisConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            run(f"rediss://localhost:{port}/0", body)


def test_batches_under_uvloop_get_their_replies(redis_url: str) -> None:
    """The webhook runs on uvloop, whose transports are not asyncio's classes."""

    async def body(pipe: RespPipe) -> list[list[Any]]:
        return await asyncio.gather(*(pipe.execute([("ECHO", str(i))]) for i in range(20)))

    assert run(redis_url, body, uv=True) == [[str(i).encode()] for i in range(20)]


def test_real_error_replies_come_back_as_redis_py_exception_classes(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """NOSCRIPT, NOPERM, EXECABORT, OOM and AUTH errors from a real server, each in its class."""
    redis_client.acl_setuser("narrow", enabled=True, nopass=True, keys=["*"], commands=["+get"])
    redis_client.config_set("maxmemory", "1")
    try:

        async def body(pipe: RespPipe) -> list[Any]:
            return await pipe.execute(
                [
                    ("EVALSHA", "0" * 40, 0),
                    ("SET", "k", "v"),  # OOM: maxmemory 1 and noeviction
                    ("MULTI",),
                    ("NOSUCHCOMMAND",),
                    ("EXEC",),
                    ("AUTH", "nobody", "wrong"),
                    ("AUTH", "narrow", "any"),
                    ("SET", "k", "v"),  # NOPERM: the ACL user may only GET
                ]
            )

        replies = run(redis_url, body)
    finally:
        redis_client.config_set("maxmemory", "0")
        redis_client.acl_deluser("narrow")
    assert [type(r) for r in replies] == [
        NoScriptError,
        OutOfMemoryError,
        bytes,
        ResponseError,
        ExecAbortError,
        AuthenticationError,
        bytes,
        NoPermissionError,
    ]
    assert replies[0].status_code == "NOSCRIPT"
    assert str(replies[0]).startswith("No matching script")


@pytest.mark.parametrize(
    ("message", "cls", "text"),
    [
        ("LOADING Redis is loading the dataset in memory", BusyLoadingError, "Redis is loading"),
        ("READONLY You can't write against a read only replica.", ReadOnlyError, "You can't"),
        ("MASTERDOWN Link with MASTER is down", MasterDownError, "Link with MASTER"),
        ("ERR max number of clients reached", RedisConnectionError, "max number"),
        ("ERR invalid password", AuthenticationError, "invalid password"),
        ("ERR unknown command 'X'", ResponseError, "unknown command"),
        ("WRONGTYPE Operation against a key", ResponseError, "WRONGTYPE Operation"),
    ],
)
def test_an_error_reply_maps_to_the_class_redis_py_gives_it(
    message: str, cls: type[RedisError], text: str
) -> None:
    """Errors a test server cannot easily produce: the prefix (or ERR message) picks the class."""
    error = error_from_reply(message)
    assert type(error) is cls
    assert str(error).startswith(text)


def test_the_module_uses_no_private_name_of_a_dependency() -> None:
    """No ``_``-prefixed module or attribute of redis-py, hiredis or asyncio (only its own)."""
    import ast
    import inspect
    import sys

    tree = ast.parse(inspect.getsource(sys.modules[RespPipe.__module__]))
    private_imports = [
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        and node.module != "__future__"
        and any(part.startswith("_") for part in (node.module or "").split("."))
    ]
    private_attributes = [
        f"{ast.unparse(node.value)}.{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and ast.unparse(node.value) != "self"
    ]
    assert (private_imports, private_attributes) == ([], [])
