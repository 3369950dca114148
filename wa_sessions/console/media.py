"""The media proxy's fetch: a customer's image, read from Twilio with the account's basic auth
and handed to the operator's browser (which has no Twilio credentials and must not get them).

Only URLs of the account's own media on Twilio's API origin (``TWILIO_API_BASE_URL``: https
in production) are fetched, so a stored URL cannot point the service at another host with the
credentials; Twilio redirects to its CDN, and aiohttp drops the Authorization header when a
redirect leaves the origin. Raster images only (no SVG: it can carry script), at most
``MAX_MEDIA_BYTES``.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp

MAX_MEDIA_BYTES = 5 * 1024 * 1024
#: What the proxy serves; anything else is refused.
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_MAX_REDIRECTS = 3


class MediaRefused(Exception):
    """The media cannot be shown; the message says why, fit for an operator."""

    def __init__(self, message: str, *, status: int = 502) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Media:
    body: bytes
    content_type: str


class TwilioMedia:
    """Fetches media of one Twilio account from its API origin."""

    def __init__(
        self, *, account_sid: str, auth_token: str, api_base_url: str, timeout_seconds: float
    ) -> None:
        base = urlsplit(api_base_url)
        self.origin = (base.scheme, base.netloc)
        self.path_prefix = f"/2010-04-01/Accounts/{account_sid}/"
        self._headers = {"Authorization": aiohttp.encode_basic_auth(account_sid, auth_token)}
        self.timeout = aiohttp.ClientTimeout(total=timeout_seconds)

    def allowed(self, url: str) -> bool:
        parts = urlsplit(url)
        return (parts.scheme, parts.netloc) == self.origin and parts.path.startswith(
            self.path_prefix
        )

    async def fetch(self, url: str) -> Media:
        if not self.allowed(url):
            raise MediaRefused("the media URL is not on the Twilio API host", status=404)
        try:
            async with (
                aiohttp.ClientSession(timeout=self.timeout) as http,
                http.get(url, headers=self._headers, max_redirects=_MAX_REDIRECTS) as response,
            ):
                if response.status != 200:
                    raise MediaRefused(f"Twilio answered {response.status} for the media")
                content_type = response.headers.get("Content-Type", "").split(";")[0].strip()
                if content_type not in IMAGE_TYPES:
                    raise MediaRefused("the media is not a JPEG, PNG, GIF or WebP image")
                if (response.content_length or 0) > MAX_MEDIA_BYTES:
                    raise MediaRefused(f"the media is over {MAX_MEDIA_BYTES} bytes")
                body = bytearray()
                async for chunk in response.content.iter_chunked(64 * 1024):
                    body += chunk
                    if len(body) > MAX_MEDIA_BYTES:
                        raise MediaRefused(f"the media is over {MAX_MEDIA_BYTES} bytes")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise MediaRefused(
                f"Twilio's media could not be fetched ({type(exc).__name__})"
            ) from exc
        return Media(bytes(body), content_type)
