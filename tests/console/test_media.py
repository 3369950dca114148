"""The media proxy against local HTTP servers standing in for Twilio's API origin and its CDN:
credentials go to the API origin only, only raster images pass, other hosts are refused."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.console.conftest import Console, MakeConsole
from wa_sessions.console.media import TwilioMedia
from wa_sessions.statemachine.models import MessageType

ACCOUNT = "AC" + "1" * 32
AUTH = "media-auth-token"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
PHONE = "+14155550100"


class _Server:
    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers() -> Iterator[tuple[_Server, _Server, list[str | None]]]:
    """Twilio's API origin (checks basic auth, redirects images to the CDN) and the CDN
    (records the Authorization header it was sent)."""
    cdn_auth: list[str | None] = []
    expected = "Basic " + base64.b64encode(f"{ACCOUNT}:{AUTH}".encode()).decode()

    class Cdn(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            cdn_auth.append(self.headers.get("Authorization"))
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(PNG)))
            self.end_headers()
            self.wfile.write(PNG)

        def log_message(self, *args: object) -> None:
            pass

    cdn = _Server(Cdn)

    class Api(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.end_headers()
                return
            if self.path.endswith("/page"):
                body = b"<html>not an image</html>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            self.send_response(307)
            self.send_header("Location", cdn.origin + "/cdn/image.png")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    api = _Server(Api)
    yield api, cdn, cdn_auth
    api.close()
    cdn.close()


def _console(make_console: MakeConsole, api_origin: str) -> Console:
    media = TwilioMedia(
        account_sid=ACCOUNT, auth_token=AUTH, api_base_url=api_origin, timeout_seconds=5
    )
    console = make_console(media=media)
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


def test_an_image_is_proxied_with_credentials_sent_to_twilio_only(
    make_console: MakeConsole, servers: tuple[_Server, _Server, list[str | None]]
) -> None:
    """The proxy authenticates to the API origin; the CDN it redirects to gets no credentials;
    the conversation page shows the image through the proxy."""
    api, _, cdn_auth = servers
    console = _console(make_console, api.origin)
    sid = _image_message(
        console, f"{api.origin}/2010-04-01/Accounts/{ACCOUNT}/Messages/MM1/Media/ME1"
    )
    answer = console.client.get(f"/console/media/{sid}/MMimage1/0")
    assert answer.status_code == 200
    assert answer.content == PNG
    assert answer.headers["content-type"] == "image/png"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert cdn_auth == [None]
    page = console.client.get(f"/console/sessions/{sid}").text
    assert f'src="/console/media/{sid}/MMimage1/0"' in page


def test_a_url_off_twilios_origin_or_account_is_not_fetched(
    make_console: MakeConsole, servers: tuple[_Server, _Server, list[str | None]]
) -> None:
    """A stored URL on another host, or of another account, gets 404 and no fetch."""
    api, cdn, cdn_auth = servers
    console = _console(make_console, api.origin)
    sid = _image_message(console, f"{cdn.origin}/2010-04-01/Accounts/{ACCOUNT}/x")
    answer = console.client.get(f"/console/media/{sid}/MMimage1/0")
    assert answer.status_code == 404
    assert "not on the Twilio API host" in answer.text
    other = "AC" + "2" * 32
    console.service.store.client.flushdb()
    console.sign_in()
    sid = _image_message(console, f"{api.origin}/2010-04-01/Accounts/{other}/Messages/MM1")
    assert console.client.get(f"/console/media/{sid}/MMimage1/0").status_code == 404
    assert cdn_auth == []


def test_a_non_image_answer_is_refused_with_502(
    make_console: MakeConsole, servers: tuple[_Server, _Server, list[str | None]]
) -> None:
    """Twilio's answer must be a raster image; HTML is refused with a readable page."""
    api, _, _ = servers
    console = _console(make_console, api.origin)
    sid = _image_message(console, f"{api.origin}/2010-04-01/Accounts/{ACCOUNT}/page")
    answer = console.client.get(f"/console/media/{sid}/MMimage1/0")
    assert answer.status_code == 502
    assert "not a JPEG, PNG, GIF or WebP image" in answer.text


def test_the_proxy_refuses_unsigned_visitors_and_unknown_media(
    make_console: MakeConsole, servers: tuple[_Server, _Server, list[str | None]]
) -> None:
    """Without a cookie: 401; an image index the message does not have: 404."""
    api, _, cdn_auth = servers
    console = _console(make_console, api.origin)
    sid = _image_message(console, f"{api.origin}/2010-04-01/Accounts/{ACCOUNT}/Messages/MM1")
    assert console.client.get(f"/console/media/{sid}/MMimage1/3").status_code == 404
    assert console.client.get(f"/console/media/{sid}/MMother/0").status_code == 404
    console.client.cookies.clear()
    assert console.client.get(f"/console/media/{sid}/MMimage1/0").status_code == 401
    assert cdn_auth == []
