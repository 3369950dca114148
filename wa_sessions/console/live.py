"""Live updates: one Redis pub/sub subscription per web process (``Keys.console_channel``,
published by the drain step and by every session end), fanned out to the console's
server-sent-event streams.

Each stream has a bounded queue; a burst of changes is coalesced into one ``changed`` event
(the list re-reads its rows) and one ``c-<digest>`` event per conversation (an open
conversation page re-reads itself), at most every ``COALESCE_SECONDS``. A stream whose client
went away is cancelled by the server and leaves the fan-out in its ``finally``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import redis.asyncio
from redis.exceptions import RedisError

from wa_sessions.console.listing import conversation_digest
from wa_sessions.metrics import CONSOLE_LIVE_STREAMS

log = logging.getLogger(__name__)

#: A stream sends what arrived in this period as one batch of events.
COALESCE_SECONDS = 0.5
#: A comment line keeps proxies from closing an idle stream; the sign-in is re-checked then.
KEEPALIVE_SECONDS = 15.0
_QUEUE = 1000
#: Marks a gap (the subscription was lost): every view re-reads itself.
RESYNC = ""


class ChangeFeed:
    """The process' subscription to conversation changes and the queues of its streams."""

    def __init__(
        self,
        client: Callable[[], redis.asyncio.Redis],
        channel: str,
        *,
        retry_seconds: float = 1.0,
    ) -> None:
        self._client = client
        self.channel = channel
        self.retry_seconds = retry_seconds
        self._queues: set[asyncio.Queue[str]] = set()
        self._task: asyncio.Task[None] | None = None
        #: Set once the subscription is confirmed (tests wait on it before publishing).
        self.subscribed = asyncio.Event()

    @property
    def listeners(self) -> int:
        return len(self._queues)

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._pump())

    async def _pump(self) -> None:
        while True:
            pubsub = self._client().pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self.subscribed.set()
                async for message in pubsub.listen():
                    data = message.get("data")
                    if isinstance(data, bytes):
                        data = data.decode()
                    if isinstance(data, str):
                        self._fan_out(data)
            except RedisError as exc:
                log.warning("console change feed lost its subscription: %s", type(exc).__name__)
            finally:
                self.subscribed.clear()
                with contextlib.suppress(RedisError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            # Changes published meanwhile were missed: every view re-reads itself.
            self._fan_out(RESYNC)
            await asyncio.sleep(self.retry_seconds)

    def _fan_out(self, conv: str) -> None:
        for queue in self._queues:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(conv)

    @contextlib.asynccontextmanager
    async def listen(self) -> AsyncIterator[asyncio.Queue[str]]:
        """A queue of changed conversation keys for one stream, removed when it ends."""
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=_QUEUE)
        self._queues.add(queue)
        self._ensure_running()
        CONSOLE_LIVE_STREAMS.labels("opened").inc()
        try:
            yield queue
        finally:
            self._queues.discard(queue)
            CONSOLE_LIVE_STREAMS.labels("closed").inc()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def events_for(changed: set[str]) -> str:
    """The SSE text for a batch of changed conversations."""
    lines = ["event: changed\ndata: 1\n\n"]
    lines += [
        f"event: c-{conversation_digest(conv)}\ndata: 1\n\n" for conv in sorted(changed) if conv
    ]
    return "".join(lines)


async def stream(
    feed: ChangeFeed,
    still_signed_in: Callable[[], bool],
    *,
    keepalive_seconds: float = KEEPALIVE_SECONDS,
    coalesce_seconds: float = COALESCE_SECONDS,
) -> AsyncIterator[str]:
    """One client's event stream; ends when its console session is revoked."""
    async with feed.listen() as queue:
        # Whatever changed between the page's render and this (re)connection was published to
        # nobody: ``connected`` makes every live view on the page re-read itself once.
        yield "retry: 3000\n\nevent: connected\ndata: 1\n\n"
        while True:
            try:
                first = await asyncio.wait_for(queue.get(), timeout=keepalive_seconds)
            except TimeoutError:
                if not await asyncio.to_thread(still_signed_in):
                    return
                yield ": keepalive\n\n"
                continue
            await asyncio.sleep(coalesce_seconds)
            changed = {first}
            while not queue.empty():
                changed.add(queue.get_nowait())
            yield events_for(changed)
