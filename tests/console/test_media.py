"""The media proxy through the hardened fetcher, against HTTPS stand-ins for Twilio's media host
and its CDN (``tests/media_servers.py``: real TLS with a test CA): credentials go to the media
host only, redirects only to allowed hosts, only raster images pass, the size cap and the
deadline hold, other hosts and other accounts are never fetched."""

from __future__ import annotations

import ssl
from typing import Any

from tests.console.conftest import Console, MakeConsole
from tests.fake_apis import PNG, TWILIO_SID, TWILIO_TOKEN
from tests.integration.test_webhook import make_settings
from tests.media_servers import BASIC_AUTH, MEDIA_HOST, OTHER_HOST, MediaServer
from wa_sessions.bootstrap import build_media_fetcher
from wa_sessions.console.media import TwilioMedia
from wa_sessions.statemachine.models import MessageType

PHONE = "+14155550100"
ACCOUNT_PATH = f"/2010-04-01/Accounts/{TWILIO_SID}/Messages/MM1/Media"


def _console(make_console: MakeConsole, tls: ssl.SSLContext, **settings: Any) -> Console:
    """A console whose proxy uses the fetcher the composition root builds, with 127.0.0.1 as
    Twilio's media host and localhost as its CDN."""
    configured = make_settings(
        twilio_account_sid=TWILIO_SID,
        twilio_auth_token=TWILIO_TOKEN,
        twilio_media_hosts=[MEDIA_HOST],
        twilio_media_redirect_hosts=[OTHER_HOST],
        **settings,
    )
    proxy = TwilioMedia(build_media_fetcher(configured, tls), account_sid=TWILIO_SID)
    console = make_console(media_proxy=proxy)
    assert console.sign_in().status_code == 303
    return console


def _image_message(console: Console, url: str) -> str:
    session = console.service.add_message(
        PHONE,
        "",
        MessageType.IMAGE,
        metadata={"media": [{"url": url, "content_type": "image/png"}]},
        message_id="MMimage1",
    )
    return session.session_id


def _proxied(console: Console, url: str) -> Any:
    sid = _image_message(console, url)
    return console.client.get(f"/console/media/{sid}/MMimage1/0")


def test_an_image_is_proxied_with_credentials_sent_to_twilio_only(
    make_console: MakeConsole, media: MediaServer, cdn: MediaServer, client_tls: ssl.SSLContext
) -> None:
    """The proxy authenticates to the media host; the CDN it redirects to gets no
    credentials; the conversation page shows the image through the proxy."""
    cdn.image("/signed/ME1", auth=False)
    url = media.redirect(f"{ACCOUNT_PATH}/ME1", cdn.url("/signed/ME1", host=OTHER_HOST), 307)
    console = _console(make_console, client_tls)
    sid = _image_message(console, url)
    answer = console.client.get(f"/console/media/{sid}/MMimage1/0")
    assert answer.status_code == 200
    assert answer.content == PNG
    assert answer.headers["content-type"] == "image/png"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert [(s.path, s.authorization) for s in media.requests] == [
        (f"{ACCOUNT_PATH}/ME1", BASIC_AUTH)
    ]
    assert [(s.path, s.authorization) for s in cdn.requests] == [("/signed/ME1", None)]
    page = console.client.get(f"/console/sessions/{sid}").text
    assert f'src="/console/media/{sid}/MMimage1/0"' in page


def test_urls_off_the_media_hosts_or_of_another_account_are_not_fetched(
    make_console: MakeConsole, media: MediaServer, cdn: MediaServer, client_tls: ssl.SSLContext
) -> None:
    """Another host (even the CDN), plain http, or another account's path: 404, no fetch."""
    console = _console(make_console, client_tls)
    cdn_url = cdn.url(f"{ACCOUNT_PATH}/ME1", host=OTHER_HOST)
    answer = _proxied(console, cdn_url)
    assert answer.status_code == 404
    assert "not on Twilio&#39;s media hosts (TWILIO_MEDIA_HOSTS)" in answer.text
    for url in (
        media.url(f"{ACCOUNT_PATH}/ME1").replace("https://", "http://"),
        media.url("/2010-04-01/Accounts/AC" + "2" * 32 + "/Messages/MM1/Media/ME1"),
    ):
        console.service.store.client.flushdb()
        console.sign_in()
        assert _proxied(console, url).status_code == 404
    assert media.requests == cdn.requests == []


def test_a_redirect_to_a_host_not_allowed_is_refused_with_502(
    make_console: MakeConsole, media: MediaServer, client_tls: ssl.SSLContext
) -> None:
    """Twilio's answer may only redirect to its media or CDN hosts."""
    url = media.redirect(f"{ACCOUNT_PATH}/ME1", "https://evil.example/x.png")
    answer = _proxied(_console(make_console, client_tls), url)
    assert answer.status_code == 502
    assert "redirected the media to a host it may not come from" in answer.text


def test_a_non_image_or_oversized_answer_is_refused_with_502(
    make_console: MakeConsole, media: MediaServer, client_tls: ssl.SSLContext
) -> None:
    """The body must be a raster image under MAX_IMAGE_BYTES; the cap cuts a body without a
    length as it streams."""
    svg = b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>"
    url = media.image(f"{ACCOUNT_PATH}/svg", svg)
    media.routes[f"{ACCOUNT_PATH}/svg"] = _typed(media.routes[f"{ACCOUNT_PATH}/svg"])
    console = _console(make_console, client_tls, max_image_bytes=64 * 1024)
    answer = _proxied(console, url)
    assert answer.status_code == 502
    assert "not a JPEG, PNG, GIF or WebP image" in answer.text
    huge = media.endless(f"{ACCOUNT_PATH}/huge", up_to_bytes=10 * 1024 * 1024)
    console.service.store.client.flushdb()
    console.sign_in()
    answer = _proxied(console, huge)
    assert answer.status_code == 502
    assert "over the size limit (MAX_IMAGE_BYTES)" in answer.text


def test_a_slow_image_is_cut_at_the_deadline(
    make_console: MakeConsole, media: MediaServer, client_tls: ssl.SSLContext
) -> None:
    """A body trickled out byte by byte is given up at MEDIA_FETCH_DEADLINE_SECONDS."""
    url = media.trickle(f"{ACCOUNT_PATH}/slow", chunks=100, every_seconds=0.05)
    console = _console(make_console, client_tls, media_fetch_deadline_seconds=0.5)
    answer = _proxied(console, url)
    assert answer.status_code == 502
    assert "did not arrive in time" in answer.text


def test_the_proxy_refuses_unsigned_visitors_and_unknown_media(
    make_console: MakeConsole, media: MediaServer, client_tls: ssl.SSLContext
) -> None:
    """Without a cookie: 401; an image index the message does not have: 404."""
    url = media.image(f"{ACCOUNT_PATH}/ME1")
    console = _console(make_console, client_tls)
    sid = _image_message(console, url)
    assert console.client.get(f"/console/media/{sid}/MMimage1/3").status_code == 404
    assert console.client.get(f"/console/media/{sid}/MMother/0").status_code == 404
    console.client.cookies.clear()
    assert console.client.get(f"/console/media/{sid}/MMimage1/0").status_code == 401
    assert media.requests == []


def _typed(route: Any) -> Any:
    """``route`` answering as ``image/svg+xml`` instead of ``image/png``."""

    def answer(handler: Any) -> int:
        original = handler.send_header

        def send_header(name: str, value: str) -> None:
            original(name, "image/svg+xml" if name == "Content-Type" else value)

        handler.send_header = send_header
        return int(route(handler))

    return answer
