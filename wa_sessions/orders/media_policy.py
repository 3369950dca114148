"""What the worker may fetch of a customer's media, and from where: the rules of
``media.TwilioMediaFetcher``, apart from its HTTP client so that the settings can name their
defaults without loading one."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_TWILIO_MEDIA_HOSTS = ("api.twilio.com",)
#: Where Twilio's media URLs redirect to (a leading dot: any subdomain).
DEFAULT_TWILIO_MEDIA_REDIRECT_HOSTS = (".twiliocdn.com",)
#: WhatsApp's own cap on an image; Twilio refuses messages with more than 5 MB of media.
DEFAULT_MAX_IMAGE_BYTES = 5 * 1024 * 1024
#: A few seconds: the phone's next messages wait behind the fetch.
DEFAULT_MEDIA_FETCH_DEADLINE_SECONDS = 5.0

#: An entry of a host list: a host name, or a leading dot and a domain (its subdomains).
_HOST_ENTRY = re.compile(r"\.?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*\.?")


def check_host_entries(entries: list[Any]) -> list[Any]:
    """``entries`` when every one is a host name or a leading-dot domain; a URL, a path or a
    port is refused (it would never match, and nothing would be fetched)."""
    for entry in entries:
        if not isinstance(entry, str) or not _HOST_ENTRY.fullmatch(entry.lower()):
            raise ValueError(
                f"{entry!r} is not a host name (a leading dot for any subdomain), e.g. "
                "api.twilio.com or .twiliocdn.com"
            )
    return entries


def host_allowed(host: str | None, allowed: Sequence[str]) -> bool:
    """Whether ``host`` is one of ``allowed``: an entry with a leading dot matches any
    subdomain of it (``.twiliocdn.com``: ``mms.twiliocdn.com``), any other entry the host
    itself. Case and a trailing dot do not matter."""
    if not host:
        return False
    host = host.lower().rstrip(".")
    for entry in allowed:
        entry = entry.strip().lower().rstrip(".")
        if entry.startswith("."):
            if host.endswith(entry) and len(host) > len(entry):
                return True
        elif entry and host == entry:
            return True
    return False


@dataclass(frozen=True, slots=True)
class MediaPolicy:
    """What may be fetched, from where, how fast and how much."""

    hosts: tuple[str, ...] = DEFAULT_TWILIO_MEDIA_HOSTS
    redirect_hosts: tuple[str, ...] = DEFAULT_TWILIO_MEDIA_REDIRECT_HOSTS
    #: All of one message's images, every hop and byte included.
    deadline_seconds: float = DEFAULT_MEDIA_FETCH_DEADLINE_SECONDS
    max_bytes: int = DEFAULT_MAX_IMAGE_BYTES
    max_redirects: int = 3
