"""The event loop a worker process runs its drains on, so that a phone waiting for OpenAI or
Twilio holds no Dramatiq thread.

A Dramatiq thread that ran a drain itself was held for the whole of every external call: a
worker group answered at most threads / latency messages a second (2 x 8 threads with OpenAI at
0.8 s and Twilio at 0.2 s: about 16/s). Here the drain actor only hands the conversation to this
loop and returns; the loop keeps up to ``max_in_flight`` drains going at once, each awaiting its
calls. When they are all busy, ``submit`` blocks the Dramatiq thread: the process stops taking
wake-ups (``OneMessagePerThread``) and other processes take them, so the queue, not this
process' memory, holds the backlog.

Acknowledging the wake-up before the drain has run loses nothing: the message waits in the
conversation's inbox, the drain holds the conversation's lease, and a process that dies leaves
the lease to lapse and the re-drive pass to wake the conversation again.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

R = TypeVar("R")
T = TypeVar("T")
C = TypeVar("C")


class DrainRunner(Generic[C, R]):
    """Runs ``drain(context, conv)`` coroutines on one loop thread, at most ``max_in_flight``
    at once, one at a time per conversation.

    ``make_context`` builds the drains' shared context on the loop (its async clients belong
    to that loop); ``close_context`` closes it when the runner stops."""

    def __init__(
        self,
        drain: Callable[[C, str], Coroutine[Any, Any, R]],
        make_context: Callable[[], Awaitable[C]],
        *,
        max_in_flight: int = 256,
        close_context: Callable[[C], Awaitable[None]] | None = None,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self._drain = drain
        self._make_context = make_context
        self._close_context = close_context
        self.max_in_flight = max_in_flight
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._context: C | None = None
        #: Conversations with a drain on the loop -> whether another run was asked for meanwhile.
        self._running: dict[str, bool] = {}
        # Drains in flight, referenced until done (the event loop holds tasks weakly).
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def in_flight(self) -> int:
        return len(self._running)

    def start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            loop = asyncio.new_event_loop()
            ready: Future[None] = Future()
            thread = threading.Thread(
                target=self._serve, args=(loop, ready), name="drain-loop", daemon=True
            )
            thread.start()
            ready.result()  # the context is built (or building it failed, raised here)
            self._loop, self._thread = loop, thread

    def _serve(self, loop: asyncio.AbstractEventLoop, ready: Future[None]) -> None:
        asyncio.set_event_loop(loop)
        try:
            self._context = loop.run_until_complete(self._make_context())
        except BaseException as exc:
            ready.set_exception(exc)
            loop.close()
            return
        ready.set_result(None)
        loop.run_forever()
        try:
            if self._close_context is not None and self._context is not None:
                loop.run_until_complete(self._close_context(self._context))
        finally:
            loop.close()

    def submit(self, conv: str) -> None:
        """Starts a drain of ``conv`` on the loop and returns; blocks while ``max_in_flight``
        drains run. A conversation already draining here is drained once more when that drain
        ends (it may have given the lease up just before the entry that woke us arrived)."""
        self.start()
        self._slots.acquire()
        loop = self._loop
        assert loop is not None
        loop.call_soon_threadsafe(self._begin, conv)

    def run(self, conv: str, timeout: float | None = None) -> R:
        """Drains ``conv`` on the loop and waits for it (operators' tasks, tests, benchmarks)."""
        return self.call(lambda context: self._drain(context, conv), timeout)

    def call(self, work: Callable[[C], Coroutine[Any, Any, T]], timeout: float | None = None) -> T:
        """Runs ``work(context)`` on the loop and waits for its result."""
        self.start()
        loop = self._loop
        assert loop is not None
        assert self._context is not None
        future: Future[T] = asyncio.run_coroutine_threadsafe(work(self._context), loop)
        return future.result(timeout)

    def _begin(self, conv: str) -> None:
        if conv in self._running:
            self._running[conv] = True  # drained again when the current drain ends
            self._slots.release()
            return
        self._running[conv] = False
        task = asyncio.ensure_future(self._run(conv))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, conv: str) -> None:
        context = self._context
        assert context is not None
        try:
            while True:
                try:
                    await self._drain(context, conv)
                except Exception:
                    # Redis down, a bug: the lease lapses and the re-drive pass wakes it again.
                    log.exception("drain of %s failed; the re-drive pass wakes it again", conv)
                if not self._running.get(conv):
                    break
                self._running[conv] = False
        finally:
            del self._running[conv]
            self._slots.release()

    def stop(self, grace_seconds: float = 10.0) -> None:
        """Waits up to ``grace_seconds`` for the drains in flight, then stops the loop (what is
        left unfinished is redone by the next drain of each conversation)."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return

        async def settle() -> None:
            deadline = loop.time() + grace_seconds
            while self._running and loop.time() < deadline:
                await asyncio.sleep(0.05)
            current = asyncio.current_task()
            left = [task for task in asyncio.all_tasks() if task is not current]
            for task in left:
                task.cancel()
            await asyncio.gather(*left, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(settle(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=grace_seconds)
