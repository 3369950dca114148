"""A short conversation played against a running service the way Twilio would send it.

``./run demo`` runs ``python -m tools.demo`` against ``./run serve``. ``TwilioSimulator`` builds
Twilio's inbound form, signs it with the twilio SDK's own ``RequestValidator`` and posts it; the
end-to-end tests and the benchmarks use it too.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from twilio.request_validator import RequestValidator

from wa_sessions.cli import read_env_file
from wa_sessions.config import DEV_ENV_FILE, STATUS_CALLBACK_PATH
from wa_sessions.statemachine.queries import DEFAULT_BUSINESS_NUMBER
from wa_sessions.webhook.inbound import WEBHOOK_PATH

STATUS_PATH = STATUS_CALLBACK_PATH
SANDBOX_NUMBER = DEFAULT_BUSINESS_NUMBER


def new_message_sid() -> str:
    return "SM" + uuid.uuid4().hex


@dataclass
class Response:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class TwilioSimulator:
    """Posts signed Twilio webhooks and reads the session API."""

    base_url: str
    auth_token: str
    admin_token: str = ""
    public_base_url: str | None = None
    account_sid: str = "AC" + "0" * 32
    business_number: str = SANDBOX_NUMBER
    timeout_seconds: float = 10.0
    _counter: itertools.count[int] = field(default_factory=itertools.count)

    def inbound_form(
        self,
        phone: str,
        body: str,
        *,
        message_sid: str | None = None,
        profile_name: str = "Customer",
        media: list[tuple[str, str]] | None = None,
        location: tuple[float, float] | None = None,
        extra: dict[str, str] | None = None,
    ) -> dict[str, str]:
        form = {
            "SmsMessageSid": message_sid or new_message_sid(),
            "NumMedia": str(len(media or [])),
            "ProfileName": profile_name,
            "MessageType": "text",
            "SmsSid": "",
            "WaId": phone.lstrip("+"),
            "SmsStatus": "received",
            "Body": body,
            "To": f"whatsapp:{self.business_number}",
            "NumSegments": "1",
            "ReferralNumMedia": "0",
            "MessageSid": "",
            "AccountSid": self.account_sid,
            "From": f"whatsapp:{phone}",
            "ApiVersion": "2010-04-01",
        }
        form["MessageSid"] = form["SmsSid"] = form["SmsMessageSid"]
        for i, (url, content_type) in enumerate(media or []):
            form[f"MediaUrl{i}"] = url
            form[f"MediaContentType{i}"] = content_type
            form["MessageType"] = content_type.split("/")[0]
        if location:
            form["Latitude"], form["Longitude"] = str(location[0]), str(location[1])
            form["MessageType"] = "location"
        form.update(extra or {})
        return form

    def signed_request(
        self, form: dict[str, str], path: str = WEBHOOK_PATH
    ) -> tuple[bytes, dict[str, str]]:
        url = (self.public_base_url or self.base_url).rstrip("/") + path
        signature = RequestValidator(self.auth_token).compute_signature(url, form)
        body = urllib.parse.urlencode(form).encode()
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        }
        return body, headers

    def post_form(self, form: dict[str, str], path: str = WEBHOOK_PATH) -> Response:
        body, headers = self.signed_request(form, path)
        return self.request("POST", path, body=body, headers=headers)

    def send(self, phone: str, body: str, **kwargs: Any) -> Response:
        return self.post_form(self.inbound_form(phone, body, **kwargs))

    def status_form(
        self, message_sid: str, status: str, *, to: str = "+14155550100", error_code: str = ""
    ) -> dict[str, str]:
        """Twilio's delivery status callback for one of our outbound messages."""
        form = {
            "MessageSid": message_sid,
            "SmsSid": message_sid,
            "MessageStatus": status,
            "SmsStatus": status,
            "AccountSid": self.account_sid,
            "From": f"whatsapp:{self.business_number}",
            "To": f"whatsapp:{to}",
            "ApiVersion": "2010-04-01",
            "ChannelToAddress": to,
        }
        if error_code:
            form["ErrorCode"] = error_code
        return form

    def send_status(self, message_sid: str, status: str, **kwargs: Any) -> Response:
        return self.post_form(self.status_form(message_sid, status, **kwargs), STATUS_PATH)

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        admin: bool = False,
    ) -> Response:
        all_headers = dict(headers or {})
        if admin:
            all_headers["Authorization"] = f"Bearer {self.admin_token}"
        req = urllib.request.Request(  # noqa: S310 - the URL is the operator's own service
            self.base_url.rstrip("/") + path, data=body, method=method, headers=all_headers
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_seconds) as resp:  # noqa: S310
                return Response(resp.status, resp.read(), dict(resp.headers))
        except urllib.error.HTTPError as err:
            return Response(err.code, err.read(), dict(err.headers))

    def session(self, phone: str, limit: int = 1000) -> Response:
        quoted = urllib.parse.quote(phone, safe="")
        return self.request("GET", f"/session/{quoted}?limit={limit}", admin=True)

    def _poll_session(
        self, phone: str, done: Callable[[dict[str, Any]], bool], timeout_seconds: float, what: str
    ) -> dict[str, Any]:
        """Polls the session API until ``done`` holds for the phone's current session."""
        deadline = time.monotonic() + timeout_seconds
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            resp = self.session(phone)
            if resp.status == 200:
                last = resp.json()
                if done(last):
                    return last
            time.sleep(0.05)
        raise TimeoutError(f"session did not reach {what}; last: {last}")

    def wait_for_messages(
        self, phone: str, count: int, timeout_seconds: float, *, inbound_only: bool = False
    ) -> dict[str, Any]:
        """Polls the session API until the phone's current session holds ``count`` messages
        (only the customer's, with ``inbound_only``)."""

        def done(session: dict[str, Any]) -> bool:
            if inbound_only:
                return len(inbound(session["conversation_history"])) >= count
            return int(session["message_count"]) >= count

        return self._poll_session(phone, done, timeout_seconds, f"{count} messages")

    def wait_for_replies(self, phone: str, count: int, timeout_seconds: float) -> dict[str, Any]:
        """Polls until the phone's current session holds ``count`` outbound replies."""
        return self._poll_session(
            phone,
            lambda session: len(replies(session["conversation_history"])) >= count,
            timeout_seconds,
            f"{count} replies",
        )

    def wait_for_answers(self, phone: str, count: int, timeout_seconds: float) -> dict[str, Any]:
        """Polls until the phone's current session holds ``count`` customer messages and each
        text or image one is answered: named by a reply's or a system note's ``in_reply_to`` or
        ``replies_to`` (a burst of messages drained together gets one reply naming them all)."""

        def done(session: dict[str, Any]) -> bool:
            history = session["conversation_history"]
            asked = [m for m in inbound(history) if m["message_type"] in ("text", "image")]
            return len(inbound(history)) >= count and all(
                m["id"] in answered(history) for m in asked
            )

        return self._poll_session(phone, done, timeout_seconds, f"{count} answered messages")

    def wait_for_new_session(
        self, phone: str, previous_session_id: str, timeout_seconds: float
    ) -> dict[str, Any]:
        """Polls until the phone's current session is another than ``previous_session_id``."""
        return self._poll_session(
            phone,
            lambda session: session["session"]["session_id"] != previous_session_id,
            timeout_seconds,
            "a new session",
        )


def inbound(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The customer's messages of a ``conversation_history``."""
    return [m for m in history if m["direction"] == "inbound"]


def replies(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The business's replies (outbound text, not system notes) of a ``conversation_history``."""
    return [m for m in history if m["direction"] == "outbound" and m["message_type"] != "system"]


def answered(history: list[dict[str, Any]]) -> set[str]:
    """Ids of the customer's messages that a reply or a system note of a
    ``conversation_history`` answers."""
    ids: set[str] = set()
    for message in history:
        if message["direction"] != "outbound":
            continue
        metadata = message.get("metadata") or {}
        ids.update(metadata.get("replies_to") or [])
        if metadata.get("in_reply_to"):
            ids.add(metadata["in_reply_to"])
    return ids


def _simulator_from_env(url: str | None) -> TwilioSimulator:
    saved = read_env_file(DEV_ENV_FILE)
    env = {**saved, **{k: v for k, v in os.environ.items() if k in saved or k.endswith("TOKEN")}}
    port = env.get("PORT", "8000")
    base = url or f"http://127.0.0.1:{port}"
    return TwilioSimulator(
        base_url=base,
        auth_token=env.get("TWILIO_AUTH_TOKEN", ""),
        admin_token=env.get("ADMIN_TOKEN", ""),
        public_base_url=env.get("PUBLIC_BASE_URL") or base,
    )


def run_demo(args: argparse.Namespace) -> int:
    sim = _simulator_from_env(args.url)
    try:
        health = sim.request("GET", "/healthz")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        print(
            f"the service is not running at {sim.base_url} ({reason}).\n"
            "Start it in another terminal with `./run serve`, then run `./run demo` again.",
            file=sys.stderr,
        )
        return 1
    if health.status != 200:
        print(
            f"service not healthy at {sim.base_url}: {health.status}; is `./run serve` up?",
            file=sys.stderr,
        )
        return 1
    conversations: dict[str, list[dict[str, Any]]] = {
        "+14155550101": [
            {"body": "Hi, I want to place an order"},
            {"body": "I need 5 units of Product A"},
            {"body": "make that 6"},
            {"body": "Thanks!"},
        ],
        "+447700900123": [
            {"body": "2 x Margherita pizza"},
            {
                "body": "and this one",
                "media": [("https://api.twilio.com/2010-04-01/Media/ME1", "image/jpeg")],
            },
        ],
        "+5511912345678": [
            {"body": "Deliver here please", "location": (-23.5505, -46.6333)},
        ],
    }
    print(
        f"playing {sum(map(len, conversations.values()))} messages from "
        f"{len(conversations)} phones to {sim.base_url}"
    )
    for phone, messages in conversations.items():
        for message in messages:
            form = sim.inbound_form(phone, message.pop("body"), **message)
            resp = sim.post_form(form)
            print(f"  {phone[:5]}… -> {resp.status} {resp.body.decode()[:60]}")
        # Twilio redelivers on timeouts: the same MessageSid is stored once.
        again = sim.post_form(form)
        print(f"  redelivery of the last message -> {again.status} (stored once)")
    for phone, messages in conversations.items():
        # Every text and image message is answered (orders extracted offline by the rule-based
        # extractor; without Twilio credentials replies are recorded, not sent); messages
        # drained together get one reply with the order after all of them.
        data = sim.wait_for_answers(phone, len(messages), args.timeout)
        _print_session(phone, data)

    first = next(iter(conversations))
    session_id = sim.session(first).json()["session"]["session_id"]
    done = sim.request("POST", f"/session/{session_id}/complete", admin=True)
    print(f"\ncompleted {session_id}: {done.status} {done.json().get('message')}")
    sim.send(first, "One more thing: can I add 2 units of Product B?")
    sim.wait_for_new_session(first, session_id, args.timeout)
    data = sim.wait_for_replies(first, 1, args.timeout)
    print("a message after completion opened a new session:")
    _print_session(first, data)
    active = sim.request("GET", "/sessions/active", admin=True).json()
    print(f"\nactive sessions: {active['total_active']}")
    return 0


def _print_session(phone: str, data: dict[str, Any]) -> None:
    session = data["session"]
    print(
        f"\nsession {session['session_id']} ({phone}, {session['status']}, "
        f"{data['message_count']} messages)"
    )
    for message in data["conversation_history"]:
        arrow = "<-" if message["direction"] == "inbound" else "->"
        status = message["metadata"].get("delivery_status")
        note = f"  ({status})" if status else ""
        print(f"  {arrow} [{message['message_type']}] {message['content']}{note}")
    if session.get("order_details"):
        print(f"  order: {json.dumps(session['order_details'])}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="./run demo", description="Play a signed conversation against a running service."
    )
    parser.add_argument("--url", help="service base URL (default: from .run/dev.env)")
    parser.add_argument("--timeout", type=float, default=20.0)
    return run_demo(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
