"""A pipelined Redis connection for the webhook's hot path: RESP straight over an asyncio
transport, parsed by hiredis.

The webhook makes one Redis call per request. Through ``redis.asyncio`` that call costs more
client CPU than the rest of the request together (pool lock, pipeline object, retry wrapper,
stream writer and reader, per-command encoder). Client CPU per call, one EVALSHA of a
4-command script, 64 calls in flight from one uvloop process, 20,000 calls against a private
redis-server, 2 shared and busy cores (load 4-5), six runs each (``python -m bench.resp_pipe``):
this connection 12-21 us (median 18.5), ``redis.asyncio`` with hiredis and a pool 54-92 us (median
72). Opening the connection with public APIs instead of taking over redis-py's left the hot
path as it was: 12-22 us (median 20.7) before, on the same runs.

The connection is opened from the client's public settings (``connection_pool.connection_kwargs``
and its connection class: TCP, TLS or a unix socket), so the URL's host, port, path, user,
password (or credential provider), database, client name, protocol, TLS options and timeouts are
the client's. The handshake (HELLO or AUTH, CLIENT SETNAME, SELECT) is written first and its
replies checked before any command is sent: a refused password or database never lets a command
run as the wrong user or in database 0.

Failure semantics are a client's: a lost connection fails every call in flight with
``redis.exceptions.ConnectionError`` (the next call connects again), a call that outlives
``timeout`` fails with ``redis.exceptions.TimeoutError`` and closes the connection (its reply,
should it come, can no longer be matched), and error replies come back as redis-py's exception
values (``ResponseError`` and its kin, see ``error_from_reply``) in their place in the reply list.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, cast

import hiredis
import redis.asyncio
from redis.credentials import CredentialProvider, UsernamePasswordCredentialProvider
from redis.exceptions import (
    AuthenticationError,
    AuthenticationWrongNumberOfArgsError,
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

Command = Sequence[str | bytes | int | float]

# The error classes redis-py gives a single server's error replies, by the reply's first word
# (for ``ERR``, by the exact rest of the message). redis-py keeps its own table in a private
# module; Cluster redirections (MOVED, ASK, ...) are left as ResponseError: the store needs one
# Redis, not Cluster.
ERROR_CLASSES: Mapping[str, type[RedisError]] = {
    "NOSCRIPT": NoScriptError,
    "NOAUTH": AuthenticationError,
    "WRONGPASS": AuthenticationError,
    "NOPERM": NoPermissionError,
    "OOM": OutOfMemoryError,
    "READONLY": ReadOnlyError,
    "LOADING": BusyLoadingError,
    "EXECABORT": ExecAbortError,
    "MASTERDOWN": MasterDownError,
}
ERR_MESSAGE_CLASSES: Mapping[str, type[RedisError]] = {
    "max number of clients reached": RedisConnectionError,
    "invalid password": AuthenticationError,
    "wrong number of arguments for 'auth' command": AuthenticationWrongNumberOfArgsError,
    "wrong number of arguments for 'AUTH' command": AuthenticationWrongNumberOfArgsError,
    "AUTH <password> called without any password configured for the default user. "
    "Are you sure your configuration is correct?": AuthenticationError,
    "Client sent AUTH, but no password is set": AuthenticationError,
}


def error_from_reply(message: str) -> RedisError:
    """An error reply as the exception redis-py would raise for it (message without the code)."""
    code, _, rest = message.partition(" ")
    if code == "ERR":
        return ERR_MESSAGE_CLASSES.get(rest, ResponseError)(rest, status_code=code)
    cls = ERROR_CLASSES.get(code)
    if cls is None:
        return ResponseError(message)
    return cls(rest, status_code=code)


class _Replies(asyncio.Protocol):
    """Collects replies for the batches written, in order, each batch into its future."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader(replyError=error_from_reply)
        # (future, replies expected, replies so far) per batch in flight, oldest first.
        self.waiting: deque[tuple[asyncio.Future[list[Any]], int, list[Any]]] = deque()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        reader.feed(data)
        waiting = self.waiting
        while (reply := reader.gets()) is not False:
            future, expected, replies = waiting[0]
            replies.append(reply)
            if len(replies) == expected:
                waiting.popleft()
                if not future.done():
                    future.set_result(replies)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        error = RedisConnectionError(f"connection to Redis lost: {exc or 'closed by server'}")
        while self.waiting:
            future, _, _ = self.waiting.popleft()
            if not future.done():
                future.set_exception(error)

    def eof_received(self) -> bool | None:
        return False  # close the transport; connection_lost fails what is in flight


class RespPipe:
    """One connection, any number of batches in flight, replies in order."""

    def __init__(self, client: redis.asyncio.Redis, *, timeout: float = 5.0) -> None:
        self.client = client
        self.timeout = timeout
        self._protocol: _Replies | None = None
        self._connecting: asyncio.Lock | None = None

    async def execute(self, commands: Sequence[Command]) -> list[Any]:
        """Sends ``commands`` in one write; their replies (errors as ``ResponseError``)."""
        protocol = self._protocol
        if protocol is None or protocol.transport is None or protocol.transport.is_closing():
            protocol = await self._connect()
        return await self._send(protocol, commands)

    async def _send(self, protocol: _Replies, commands: Sequence[Command]) -> list[Any]:
        transport = protocol.transport
        if transport is None:
            raise RedisConnectionError("connection to Redis lost")
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        protocol.waiting.append((future, len(commands), []))
        transport.write(b"".join([hiredis.pack_command(tuple(c)) for c in commands]))  # type: ignore[arg-type]
        try:
            async with asyncio.timeout(self.timeout):
                return await future
        except TimeoutError:
            transport.close()  # a late reply would be matched to the next batch
            raise RedisTimeoutError(f"no reply from Redis in {self.timeout} s") from None

    async def _connect(self) -> _Replies:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            current = self._protocol
            if current is not None and current.transport and not current.transport.is_closing():
                return current
            pool = self.client.connection_pool
            kwargs = pool.connection_kwargs
            protocol = await self._open(pool.connection_class, kwargs)
            try:
                await self._handshake(protocol, kwargs)
            except BaseException:
                if protocol.transport is not None:
                    protocol.transport.close()
                raise
            self._protocol = protocol
            return protocol

    async def _open(self, connection_class: type[Any], kwargs: Mapping[str, Any]) -> _Replies:
        loop = asyncio.get_running_loop()
        # redis-py waits for ever without a configured timeout; a webhook call must not.
        timeout = (
            kwargs.get("socket_connect_timeout") or kwargs.get("socket_timeout") or self.timeout
        )
        protocol = _Replies()
        unix = issubclass(connection_class, redis.asyncio.UnixDomainSocketConnection)
        tls = issubclass(connection_class, redis.asyncio.SSLConnection)
        host, port = str(kwargs.get("host", "localhost")), int(kwargs.get("port", 6379))
        where = str(kwargs.get("path", "")) if unix else f"{host}:{port}"
        try:
            async with asyncio.timeout(timeout):
                if unix:
                    await loop.create_unix_connection(lambda: protocol, where)
                else:
                    await loop.create_connection(
                        lambda: protocol,
                        host,
                        port,
                        ssl=tls_context(kwargs) if tls else None,
                        server_hostname=host if tls else None,
                    )
        except TimeoutError:
            raise RedisTimeoutError(f"timeout connecting to Redis at {where}") from None
        except OSError as exc:
            raise RedisConnectionError(f"cannot connect to Redis at {where}: {exc}") from exc
        transport = protocol.transport
        assert transport is not None
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if kwargs.get("socket_keepalive", True):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                options = kwargs.get("socket_keepalive_options")
                # redis-py leaves a sentinel object here when the option is not given.
                for option, value in options.items() if isinstance(options, Mapping) else ():
                    sock.setsockopt(socket.IPPROTO_TCP, option, value)
        return protocol

    async def _handshake(self, protocol: _Replies, kwargs: Mapping[str, Any]) -> None:
        """Authenticates, names the connection and selects the database, as redis-py does
        for the same settings; any refusal closes the connection before a command is sent."""
        commands: list[Command] = []
        resp3 = int(kwargs.get("protocol") or 3) == 3  # redis-py 8 speaks RESP3 by default
        provider: CredentialProvider | None = kwargs.get("credential_provider")
        if provider is None and (kwargs.get("username") or kwargs.get("password")):
            provider = UsernamePasswordCredentialProvider(
                kwargs.get("username"), kwargs.get("password")
            )
        credentials = await provider.get_credentials_async() if provider is not None else ()
        if resp3:
            auth = ("default", *credentials) if len(credentials) == 1 else credentials
            commands.append(("HELLO", 3, "AUTH", *auth) if auth else ("HELLO", 3))
        elif credentials:
            commands.append(("AUTH", *credentials))
        if kwargs.get("client_name"):
            commands.append(("CLIENT", "SETNAME", kwargs["client_name"]))
        if int(kwargs.get("db") or 0):
            commands.append(("SELECT", int(kwargs["db"])))
        if not commands:
            return
        for reply in await self._send(protocol, commands):
            if isinstance(reply, RedisError):
                raise reply  # as redis-py raises it from its connect()

    def close(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
        self._protocol = None


def tls_context(kwargs: Mapping[str, Any]) -> ssl.SSLContext:
    """The TLS context redis-py's ``SSLConnection`` builds from the same ``ssl_*`` settings
    (certificates required and the host name checked unless the URL says otherwise)."""
    context = ssl.create_default_context()
    cert_reqs = kwargs.get("ssl_cert_reqs", "required")
    if isinstance(cert_reqs, str):
        cert_reqs = {
            "none": ssl.CERT_NONE,
            "optional": ssl.CERT_OPTIONAL,
            "required": ssl.CERT_REQUIRED,
        }[cert_reqs]
    context.check_hostname = bool(kwargs.get("ssl_check_hostname", True)) and (
        cert_reqs != ssl.CERT_NONE
    )
    context.verify_mode = cert_reqs
    for flag in kwargs.get("ssl_include_verify_flags") or ():
        context.verify_flags |= flag
    for flag in kwargs.get("ssl_exclude_verify_flags") or ():
        context.verify_flags &= ~flag
    if kwargs.get("ssl_certfile") or kwargs.get("ssl_keyfile"):
        context.load_cert_chain(
            certfile=kwargs["ssl_certfile"],
            keyfile=kwargs.get("ssl_keyfile"),
            password=kwargs.get("ssl_password"),
        )
    if kwargs.get("ssl_ca_certs") or kwargs.get("ssl_ca_data") or kwargs.get("ssl_ca_path"):
        context.load_verify_locations(
            cafile=kwargs.get("ssl_ca_certs"),
            capath=kwargs.get("ssl_ca_path"),
            cadata=kwargs.get("ssl_ca_data"),
        )
    if kwargs.get("ssl_min_version") is not None:
        context.minimum_version = kwargs["ssl_min_version"]
    if kwargs.get("ssl_ciphers") is not None:
        context.set_ciphers(kwargs["ssl_ciphers"])
    return context
