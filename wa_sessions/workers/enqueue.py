"""Operators' script: complete or expire a session by hand through the workers.

    python -m wa_sessions.workers.enqueue complete SESSION_ID [--wait]
    python -m wa_sessions.workers.enqueue expire --phone +14155550123 [--business +1...]
    python -m wa_sessions.workers.enqueue start-conversation --phone ... (--content-sid HX..
        [--var KEY=VALUE ...] | --text ...)        (workers/start_conversation.py)
    python -m wa_sessions.workers.enqueue replay-event EVENT_ID

``replay-event`` sends one outgoing event again to ``EVENTS_WEBHOOK_URL`` with its own
``webhook-id`` (``wa_sessions/events/replay.py``); exit 0 delivered, 1 not found, refused by the
receiver or Redis unreachable, 2 usage or no ``EVENTS_WEBHOOK_URL``.

The task goes through the conversation's inbox, so it applies after the messages the webhook
accepted before it. Exit codes: 0 enqueued (or applied, with --wait); 1 unknown session, no
active session, already ended, or Redis unreachable; 2 usage; 3 --wait timed out; 4 applied but
the session ended otherwise (another operator or the expiry got there first).

Next to a development run (``./run serve``), the settings it saved in ``.run/dev.env`` fill in
what the environment leaves unset, so the script reaches the service's Redis; a refusal names
the Redis it looked in.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence

import redis

from wa_sessions import bootstrap, bootstrap_externals
from wa_sessions.config import Settings
from wa_sessions.errors import InvalidPhoneNumber
from wa_sessions.events.replay import EventNotFound, replay_event
from wa_sessions.events.sender import Verdict
from wa_sessions.statemachine.lifecycle import ENDED_STATES, Trigger
from wa_sessions.statemachine.models import SessionStatus
from wa_sessions.workers import start_conversation

_DESTINATION = {"complete": SessionStatus.COMPLETED, "expire": SessionStatus.EXPIRED}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wa-sessions-enqueue",
        description="Complete or expire a session through the workers "
        "(start-conversation --help: send a customer a template or text).",
    )
    parser.add_argument("action", choices=[Trigger.COMPLETE.value, Trigger.EXPIRE.value])
    parser.add_argument("session_id", nargs="?", help="the session to end")
    parser.add_argument("--phone", help="end this customer's active session instead")
    parser.add_argument("--business", help="business number (default: BUSINESS_NUMBER)")
    parser.add_argument("--reason", default="operator", help="recorded as the end reason")
    parser.add_argument("--wait", action="store_true", help="block until a worker applied it")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds --wait waits")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:1] == [start_conversation.ACTION]:
        return start_conversation.main(words[1:])
    if words[:1] == ["replay-event"]:
        return _replay(words[1:])
    parser = _parser()
    args = parser.parse_args(words)
    if bool(args.session_id) == bool(args.phone):
        parser.print_usage(sys.stderr)
        print("error: give either SESSION_ID or --phone", file=sys.stderr)
        return 2

    settings = bootstrap.load_operator_settings()
    worker = bootstrap.build_worker(settings)
    try:
        return _enqueue(args, worker)
    except redis.ConnectionError:
        print(f"error: cannot reach Redis at {settings.redis_location}", file=sys.stderr)
        return 1
    finally:
        worker.close()


def _enqueue(args: argparse.Namespace, worker: bootstrap.WorkerProcess) -> int:
    service = worker.deps.service
    where = f"in Redis at {worker.settings.redis_location}"
    if args.phone:
        try:
            session = service.get_session_by_phone(
                args.phone, args.business, include_messages=False
            )
        except InvalidPhoneNumber as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if session is None:
            print(f"error: that phone has no active session {where}", file=sys.stderr)
            return 1
    else:
        session = service.get_session_by_id(args.session_id, include_messages=False)
        if session is None:
            print(f"error: unknown session {args.session_id} {where}", file=sys.stderr)
            return 1
    if session.status in ENDED_STATES:
        print(f"error: session {session.session_id} is already {session.status}", file=sys.stderr)
        return 1

    actors = worker.actors
    actor = actors.complete_session if args.action == "complete" else actors.expire_session
    actor.send(session.session_id, args.reason)
    if not args.wait:
        print(f"enqueued {args.action} for session {session.session_id}")
        return 0

    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        status = service.store.status_of(session.session_id)
        if status is not None and status != SessionStatus.ACTIVE:
            print(f"session {session.session_id} is {status}")
            return 0 if status == _DESTINATION[args.action] else 4
        time.sleep(0.05)
    print(f"error: session {session.session_id} not ended after {args.timeout}s", file=sys.stderr)
    return 3


def _replay(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="wa-sessions-enqueue replay-event",
        description="Send one outgoing event again, with the same webhook-id.",
    )
    parser.add_argument("event_id", help="evt_<outbox entry id>, or the entry id")
    args = parser.parse_args(argv)
    settings = bootstrap.load_operator_settings()
    if not settings.sends_events:
        print("error: EVENTS_WEBHOOK_URL is not set", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_replay_one(settings, args.event_id))
    except redis.ConnectionError:
        print(f"error: cannot reach Redis at {settings.redis_location}", file=sys.stderr)
        return 1


async def _replay_one(settings: Settings, wanted: str) -> int:
    client = bootstrap.async_redis_client(settings, decode_responses=True)
    sender = bootstrap_externals.build_webhook_sender(settings)
    try:
        store = bootstrap_externals.build_event_store(settings, client)
        replayed = await replay_event(store, sender, wanted)
    except EventNotFound as exc:
        print(f"error: {exc} in Redis at {settings.redis_location}", file=sys.stderr)
        return 1
    finally:
        await sender.close()
        await client.aclose()
    verdict = replayed.attempt
    if verdict.verdict is Verdict.DELIVERED:
        print(f"replayed {replayed.event_id} (from {replayed.source}): {verdict.reason}")
        return 0
    print(f"error: {replayed.event_id} not delivered: {verdict.reason}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
