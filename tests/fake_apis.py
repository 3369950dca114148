"""Local stand-ins for the OpenAI and Twilio REST APIs, so the real SDKs are exercised end to end.

Each is an ``http.server`` on 127.0.0.1 in a thread. It checks what a real server would refuse
(path, auth header, body shape), records every request, and answers from a script of replies
that tests queue up (``FakeAPI.reply``); with the script empty it gives the default answer.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from wa_sessions.orders.models import ExtractionResult

OPENAI_KEY = "sk-test-key"
TWILIO_SID = "AC" + "1" * 32
TWILIO_TOKEN = "twilio-test-token"
#: A 1x1 transparent PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode(), keep_blank_values=True).items()}


@dataclass
class Reply:
    status: int = 200
    body: bytes | dict[str, Any] = b""
    headers: dict[str, str] = field(default_factory=dict)
    #: Seconds to wait before answering (a hung upstream).
    delay: float = 0.0


Handler = Callable[[Recorded], Reply | None]


class FakeAPI:
    """An HTTP server whose answers tests script; ``check`` refuses malformed requests."""

    def __init__(self, default: Handler) -> None:
        self.requests: list[Recorded] = []
        self._script: deque[Reply] = deque()
        self._default = default
        self._lock = threading.Lock()
        self._closing = threading.Event()
        api = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: without this, Nagle's algorithm and the
            # client's delayed ACK add ~40 ms to a request.
            disable_nagle_algorithm = True

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                recorded = Recorded(
                    self.command,
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length),
                )
                reply = api._answer(recorded)
                if reply.delay and api._closing.wait(reply.delay):
                    return
                body = reply.body
                if isinstance(body, dict):
                    body = json.dumps(body).encode()
                    reply.headers.setdefault("Content-Type", "application/json")
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    # One request per connection: SDK clients the tests drop leave no open
                    # sockets behind (ResourceWarning is an error under pytest here).
                    self.send_header("Connection", "close")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout under test)

            do_GET = do_POST = _serve  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def reply(self, *replies: Reply) -> None:
        """Queues answers for the next requests, in order (then the default answers)."""
        with self._lock:
            self._script.extend(replies)

    def set_default(self, handler: Handler) -> None:
        """Replaces the default answer (a test switching an API between up, down and slow)."""
        with self._lock:
            self._default = handler

    def _answer(self, recorded: Recorded) -> Reply:
        with self._lock:
            self.requests.append(recorded)
        problem = self.check(recorded)
        if problem is not None:
            return problem
        with self._lock:
            if self._script:
                return self._script.popleft()
            default = self._default
        answer = default(recorded)
        return answer if answer is not None else Reply(404, {"error": "no route"})

    def check(self, recorded: Recorded) -> Reply | None:
        """An error reply when the request is not what the real API accepts."""
        return None

    def start(self) -> FakeAPI:
        self.thread.start()
        return self

    def stop(self) -> None:
        self._closing.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


# ---- OpenAI ---------------------------------------------------------------------------------


def openai_response(text: str, *, refusal: bool = False) -> dict[str, Any]:
    """A Responses API answer whose one message holds ``text`` (or a refusal)."""
    content = (
        {"type": "refusal", "refusal": text}
        if refusal
        else {"type": "output_text", "text": text, "annotations": []}
    )
    return {
        "id": "resp_" + uuid.uuid4().hex,
        "object": "response",
        "created_at": int(time.time()),
        "status": "completed",
        "model": "gpt-test",
        "output": [
            {
                "type": "message",
                "id": "msg_" + uuid.uuid4().hex,
                "status": "completed",
                "role": "assistant",
                "content": [content],
            }
        ],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
    }


def extraction_reply(result: ExtractionResult) -> Reply:
    return Reply(200, openai_response(result.model_dump_json()))


class FakeOpenAI(FakeAPI):
    """``POST /v1/responses`` (bearer key, structured-output request) and ``GET /media/<id>``
    (a Twilio-style media URL that needs the account's basic auth, over plain http: one the
    image fetcher must never request; ``tests/media_servers.py`` has the https ones)."""

    def __init__(self, default_result: ExtractionResult | None = None) -> None:
        result = default_result or ExtractionResult.nothing()
        super().__init__(lambda r: extraction_reply(result) if r.method == "POST" else None)
        self.media: dict[str, bytes] = {"ME1": PNG}

    @property
    def api_url(self) -> str:
        return self.base_url + "/v1"

    def media_url(self, media_id: str = "ME1") -> str:
        return f"{self.base_url}/media/{media_id}"

    def check(self, recorded: Recorded) -> Reply | None:
        if recorded.method == "GET" and recorded.path.startswith("/media/"):
            expected = "Basic " + base64.b64encode(f"{TWILIO_SID}:{TWILIO_TOKEN}".encode()).decode()
            if recorded.headers.get("authorization") != expected:
                return Reply(401, {"code": 20003, "message": "Authenticate"})
            data = self.media.get(recorded.path.rsplit("/", 1)[-1])
            if data is None:
                return Reply(404, {"message": "not found"})
            return Reply(200, data, {"Content-Type": "image/png"})
        if (recorded.method, recorded.path) != ("POST", "/v1/responses"):
            return Reply(404, {"error": {"message": f"no route {recorded.path}"}})
        if recorded.headers.get("authorization") != f"Bearer {OPENAI_KEY}":
            return Reply(401, {"error": {"message": "Incorrect API key", "type": "auth"}})
        body = recorded.json()
        fmt = body.get("text", {}).get("format", {})
        if not (
            body.get("model")
            and isinstance(body.get("input"), list)
            and fmt.get("type") == "json_schema"
            and fmt.get("strict") is True
            and fmt.get("schema", {}).get("type") == "object"
        ):
            return Reply(400, {"error": {"message": "not a structured-output request"}})
        return None


@contextmanager
def fake_openai(default_result: ExtractionResult | None = None) -> Iterator[FakeOpenAI]:
    api = FakeOpenAI(default_result)
    api.start()
    try:
        yield api
    finally:
        api.stop()


# ---- Twilio ---------------------------------------------------------------------------------


def twilio_message(form: dict[str, str], sid: str | None = None) -> dict[str, Any]:
    """The Messages API's answer to a create."""
    return {
        "sid": sid or "SM" + uuid.uuid4().hex,
        "account_sid": TWILIO_SID,
        "to": form.get("To"),
        "from": form.get("From"),
        "body": form.get("Body"),
        "status": "queued",
        "direction": "outbound-api",
        "num_segments": "1",
        "api_version": "2010-04-01",
        "error_code": None,
        "error_message": None,
        "uri": f"/2010-04-01/Accounts/{TWILIO_SID}/Messages/SM.json",
    }


def twilio_error(status: int, code: int, message: str) -> Reply:
    return Reply(
        status,
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
    )


class FakeTwilio(FakeAPI):
    """``POST /2010-04-01/Accounts/{sid}/Messages.json`` with basic auth and a form body."""

    def __init__(self, account_sid: str = TWILIO_SID, auth_token: str = TWILIO_TOKEN) -> None:
        super().__init__(lambda r: Reply(201, twilio_message(r.form())))
        self.messages_path = f"/2010-04-01/Accounts/{account_sid}/Messages.json"
        self.auth = "Basic " + base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode()

    def check(self, recorded: Recorded) -> Reply | None:
        if (recorded.method, recorded.path) != ("POST", self.messages_path):
            return twilio_error(404, 20404, f"The requested resource {recorded.path} was not found")
        if recorded.headers.get("authorization") != self.auth:
            return twilio_error(401, 20003, "Authenticate")
        if not recorded.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"
        ):
            return twilio_error(400, 21000, "form body expected")
        form = recorded.form()
        if not (
            form.get("To", "").startswith("whatsapp:")
            and (form.get("Body") or form.get("ContentSid"))
        ):
            return twilio_error(400, 21604, "A 'To' phone number and a 'Body' are required.")
        if "ContentVariables" in form and "ContentSid" not in form:
            return twilio_error(400, 21656, "ContentVariables needs a ContentSid.")
        return None

    def created(self, sid: str) -> Reply:
        """A scripted successful create answering with ``sid``."""
        return Reply(201, twilio_message({}, sid))


@contextmanager
def fake_twilio(
    account_sid: str = TWILIO_SID, auth_token: str = TWILIO_TOKEN
) -> Iterator[FakeTwilio]:
    api = FakeTwilio(account_sid, auth_token)
    api.start()
    try:
        yield api
    finally:
        api.stop()
