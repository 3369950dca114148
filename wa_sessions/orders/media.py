"""Fetching a customer's images from Twilio for the model, without letting a media URL steer
the worker: Twilio's media URLs need the account's basic auth, which OpenAI cannot send, so the
worker fetches each image itself and inlines it as a data URL.

A ``MediaUrlN`` comes from the webhook's form, so the worker treats it as untrusted input: only
``https`` URLs on Twilio's media hosts (``TWILIO_MEDIA_HOSTS``) are fetched; redirects are
followed by hand, a few hops at most, each hop ``https`` and on an allowed host (Twilio answers
with a redirect to a short-lived URL on its CDN, ``mms.twiliocdn.com``, when HTTP auth on media
is enforced, as it now is for every account: ``TWILIO_MEDIA_REDIRECT_HOSTS``); the credentials
go only to a media host, and only over ``https``. One deadline covers all of a message's images
(every hop, every byte) and each image is capped in size. An image refused for any of these,
or that the media host refuses or cannot serve, is left out: it stays in the message's metadata
as it came, the model reads the text alone, and ``wa_sessions_media_skipped_total`` counts why.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import aiohttp
from yarl import URL

from wa_sessions.metrics.orders import MEDIA_SKIPPED
from wa_sessions.orders.media_policy import MediaPolicy, host_allowed
from wa_sessions.statemachine.models import Message

log = logging.getLogger(__name__)

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_CHUNK_BYTES = 64 * 1024


class MediaSkip(StrEnum):
    """Why an image was left out (the ``reason`` label of ``wa_sessions_media_skipped_total``)."""

    NOT_HTTPS = "not_https"
    HOST_NOT_ALLOWED = "host_not_allowed"
    BAD_URL = "bad_url"
    REDIRECT_REFUSED = "redirect_refused"
    TOO_MANY_REDIRECTS = "too_many_redirects"
    TOO_LARGE = "too_large"
    TOO_SLOW = "too_slow"
    #: The media host answered 4xx (wrong credentials, deleted media).
    REFUSED = "refused"
    #: The media host answered 5xx or 429, or could not be reached.
    UNAVAILABLE = "unavailable"


for _reason in MediaSkip:
    MEDIA_SKIPPED.labels(_reason.value)  # at zero, so rate() sees the first skip


class MediaSkipped(Exception):
    """An image that is not fetched (further): why, and a detail safe to log."""

    def __init__(self, reason: MediaSkip, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class MediaCredentials:
    """The account's credentials, sent only to a media host over ``https``."""

    account_sid: str
    auth_token: str = field(repr=False)

    def header(self) -> str:
        return aiohttp.encode_basic_auth(self.account_sid, self.auth_token)


@dataclass(frozen=True, slots=True)
class FetchedImages:
    """A message's images as data URLs, in order, and why the others were left out."""

    data_urls: list[str] = field(default_factory=list)
    skipped: list[MediaSkip] = field(default_factory=list)


class TwilioMediaFetcher:
    """Fetches a message's images under a ``MediaPolicy``. ``ssl_context`` is the trust the
    TLS connections use (the composition root passes the system's default; tests, their own
    CA)."""

    def __init__(
        self,
        policy: MediaPolicy | None = None,
        *,
        credentials: MediaCredentials | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.policy = policy or MediaPolicy()
        self.credentials = credentials
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True

    def open_session(self) -> aiohttp.ClientSession:
        """An HTTP session for the fetches of one event loop. No cookie jar: a cookie set
        for one customer's image must not ride along with the next customer's fetch."""
        return aiohttp.ClientSession(
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.policy.deadline_seconds),
        )

    async def images(
        self,
        http: aiohttp.ClientSession,
        message: Message,
        *,
        deadline_seconds: float | None = None,
    ) -> FetchedImages:
        """The message's images (``image/*`` media), within one deadline for all of them (the
        policy's, or ``deadline_seconds`` when the caller has less time)."""
        fetched = FetchedImages()
        seconds = self.policy.deadline_seconds if deadline_seconds is None else deadline_seconds
        deadline = asyncio.get_running_loop().time() + max(0.0, seconds)
        for media in _image_media(message):
            try:
                async with asyncio.timeout_at(deadline):
                    data_url = await self._fetch(http, media["url"], media["content_type"])
            except MediaSkipped as skip:
                reason, detail = skip.reason, str(skip)
            except TimeoutError:
                reason = MediaSkip.TOO_SLOW
                detail = f"not fetched within {seconds:g} s"
            except aiohttp.ClientError as exc:
                reason, detail = (
                    MediaSkip.UNAVAILABLE,
                    f"media host unreachable ({type(exc).__name__})",
                )
            else:
                fetched.data_urls.append(data_url)
                continue
            fetched.skipped.append(reason)
            MEDIA_SKIPPED.labels(reason.value).inc()
            log.warning("image of message %s left out: %s (%s)", message.id, reason.value, detail)
        return fetched

    async def _fetch(self, http: aiohttp.ClientSession, raw_url: str, content_type: str) -> str:
        url = self._checked(raw_url)
        for _hop in range(self.policy.max_redirects + 1):
            headers = {"Accept-Encoding": "identity"}
            if self.credentials is not None and host_allowed(url.host, self.policy.hosts):
                headers["Authorization"] = self.credentials.header()
            async with http.get(
                url, headers=headers, allow_redirects=False, ssl=self._ssl
            ) as response:
                if response.status in _REDIRECT_STATUSES:
                    url = self._redirected(url, response.headers.get("Location"))
                    continue
                body = await self._body(response)
                served = response.headers.get("Content-Type", "").split(";")[0].strip()
            kind = served if served.startswith("image/") else content_type
            return f"data:{kind};base64,{base64.b64encode(body).decode()}"
        raise MediaSkipped(
            MediaSkip.TOO_MANY_REDIRECTS, f"more than {self.policy.max_redirects} redirects"
        )

    def _checked(self, raw_url: str) -> URL:
        """The first hop: an ``https`` URL on a media host, without user info."""
        try:
            url = URL(raw_url)
        except (ValueError, TypeError):
            raise MediaSkipped(MediaSkip.BAD_URL, "media URL does not parse") from None
        if url.scheme != "https":
            raise MediaSkipped(MediaSkip.NOT_HTTPS, f"media URL scheme is {url.scheme!r}")
        if not url.host or url.user is not None or url.password is not None:
            raise MediaSkipped(MediaSkip.BAD_URL, "media URL has no host, or has user info")
        if not host_allowed(url.host, self.policy.hosts):
            raise MediaSkipped(MediaSkip.HOST_NOT_ALLOWED, f"{url.host} is not a media host")
        return url

    def _redirected(self, current: URL, location: str | None) -> URL:
        """The next hop: ``https`` to a media host or an allowed redirect host."""
        if not location:
            raise MediaSkipped(MediaSkip.REDIRECT_REFUSED, "redirect without a Location")
        try:
            url = current.join(URL(location))
        except (ValueError, TypeError):
            raise MediaSkipped(
                MediaSkip.REDIRECT_REFUSED, "redirect Location does not parse"
            ) from None
        allowed = (*self.policy.hosts, *self.policy.redirect_hosts)
        if (
            url.scheme != "https"
            or url.user is not None
            or url.password is not None
            or not host_allowed(url.host, allowed)
        ):
            raise MediaSkipped(
                MediaSkip.REDIRECT_REFUSED, f"redirect to {url.scheme}://{url.host} refused"
            )
        return url

    async def _body(self, response: aiohttp.ClientResponse) -> bytes:
        status = response.status
        if status >= 500 or status == 429:
            raise MediaSkipped(MediaSkip.UNAVAILABLE, f"media host error ({status})")
        if status != 200:
            raise MediaSkipped(MediaSkip.REFUSED, f"media host refused the image ({status})")
        cap = self.policy.max_bytes
        if response.content_length is not None and response.content_length > cap:
            raise MediaSkipped(MediaSkip.TOO_LARGE, f"image is {response.content_length} bytes")
        body = bytearray()
        async for chunk in response.content.iter_chunked(_CHUNK_BYTES):
            body += chunk
            if len(body) > cap:
                raise MediaSkipped(MediaSkip.TOO_LARGE, f"image is over {cap} bytes")
        return bytes(body)


def _image_media(message: Message) -> list[dict[str, str]]:
    """The message's ``image/*`` media entries, as the webhook stored them."""
    found = []
    entries: Any = message.metadata.get("media") or []
    for media in entries if isinstance(entries, list) else []:
        if not isinstance(media, dict):
            continue
        content_type = str(media.get("content_type") or "")
        if content_type.startswith("image/"):
            found.append({"url": str(media.get("url") or ""), "content_type": content_type})
    return found
