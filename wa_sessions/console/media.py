"""The media proxy's fetch: a customer's image, read from Twilio with the account's basic auth
and handed to the operator's browser (which has no Twilio credentials and must not get them).

The fetch is the worker's hardened one (``orders.media.TwilioMediaFetcher``): ``https`` only,
Twilio's media hosts (``TWILIO_MEDIA_HOSTS``) for the first hop and redirects followed by hand
to those or the CDN (``TWILIO_MEDIA_REDIRECT_HOSTS``), the credentials sent to a media host
only, one deadline (``MEDIA_FETCH_DEADLINE_SECONDS``) and a size cap (``MAX_IMAGE_BYTES``).
On top, the proxy fetches only the account's own media (its path) and serves raster images
only (no SVG: it can carry script).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from wa_sessions.orders.media import MediaSkip, MediaSkipped, TwilioMediaFetcher

#: What the proxy serves; anything else is refused.
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
#: A URL the fetcher will not even try: the operator gets 404, as for a missing image.
_NOT_TWILIOS = frozenset({MediaSkip.NOT_HTTPS, MediaSkip.BAD_URL, MediaSkip.HOST_NOT_ALLOWED})
_WHY = {
    MediaSkip.REDIRECT_REFUSED: "Twilio redirected the media to a host it may not come from",
    MediaSkip.TOO_MANY_REDIRECTS: "Twilio redirected the media too many times",
    MediaSkip.TOO_LARGE: "the media is over the size limit (MAX_IMAGE_BYTES)",
    MediaSkip.TOO_SLOW: "Twilio's media did not arrive in time (MEDIA_FETCH_DEADLINE_SECONDS)",
    MediaSkip.REFUSED: "Twilio refused the media (deleted, or the credentials are wrong)",
    MediaSkip.UNAVAILABLE: "Twilio's media could not be fetched now",
}


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
    """Fetches one Twilio account's media through the hardened fetcher."""

    def __init__(self, fetcher: TwilioMediaFetcher, *, account_sid: str) -> None:
        self.fetcher = fetcher
        self.path_prefix = f"/2010-04-01/Accounts/{account_sid}/"

    async def fetch(self, url: str) -> Media:
        if not urlsplit(url).path.startswith(self.path_prefix):
            raise MediaRefused("the media URL is not one of this Twilio account's", status=404)
        try:
            async with self.fetcher.open_session() as http:
                fetched = await self.fetcher.image(http, url)
        except MediaSkipped as skip:
            if skip.reason in _NOT_TWILIOS:
                raise MediaRefused(
                    "the media URL is not on Twilio's media hosts (TWILIO_MEDIA_HOSTS)", status=404
                ) from skip
            raise MediaRefused(_WHY.get(skip.reason, "the media could not be fetched")) from skip
        if fetched.content_type not in IMAGE_TYPES:
            raise MediaRefused("the media is not a JPEG, PNG, GIF or WebP image")
        return Media(fetched.body, fetched.content_type)
