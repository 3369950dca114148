"""The OpenAI SDK client of the extractor and the session analyser: one per event loop (an
aiohttp-based client belongs to the loop that opened it), the SDK's own retries off (the
callers retry inside their budget: ``retries.call_with_retries``)."""

from __future__ import annotations

import asyncio

import openai


class LoopBoundClient:
    """Builds the ``AsyncOpenAI`` client on the running loop, again when the loop changed."""

    def __init__(self, *, api_key: str, base_url: str | None, timeout_seconds: float) -> None:
        self._api_key = api_key
        self._base_url = base_url or None
        self._timeout = timeout_seconds
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: openai.AsyncOpenAI | None = None

    def get(self) -> tuple[openai.AsyncOpenAI, bool]:
        """The client for the running loop, and whether it was just built."""
        loop = asyncio.get_running_loop()
        if self._client is not None and self._loop is loop:
            return self._client, False
        self._loop = loop
        self._client = openai.AsyncOpenAI(
            api_key=self._api_key,
            base_url=self._base_url,
            timeout=self._timeout,
            max_retries=0,
            http_client=openai.DefaultAioHttpClient(),
        )
        return self._client, True

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
        self._client = None
