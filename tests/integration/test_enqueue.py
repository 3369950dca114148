"""The operators' enqueue script, ``main([...])`` against a real Redis and an in-process Dramatiq
worker: exit codes, messages on stderr, and the task applied through the conversation's inbox.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker

from tests.support import poll, running_worker
from wa_sessions.bootstrap import build_broker
from wa_sessions.config import Environment, Settings
from wa_sessions.embedded_redis import free_port
from wa_sessions.statemachine.models import SessionCreate, SessionStatus
from wa_sessions.statemachine.redis.inbox import Inbox
from wa_sessions.statemachine.service import SessionService
from wa_sessions.workers import enqueue
from wa_sessions.workers.actors import declare_actors, drain_sender
from wa_sessions.workers.handlers import WorkerDeps
from wa_sessions.workers.queues import QUEUE, QueueKeys

PHONE = "+14155550001"
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Stack:
    broker: RedisBroker
    service: SessionService
    client: redis.Redis

    def open_session(self, phone: str = PHONE) -> str:
        return self.service.create_session(SessionCreate(phone_number=phone)).session_id

    def queued(self) -> list[dramatiq.Message[None]]:
        """The Dramatiq messages waiting in the actors' queue."""
        raw = cast(list[str], self.client.hvals(QueueKeys().messages))
        return [dramatiq.Message.decode(value.encode()) for value in raw]


@pytest.fixture
def stack(redis_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Stack]:
    """The script's environment on the test Redis (run from an empty directory: no
    ``.run/dev.env``); the test's own broker with the actors declared on it, for a worker."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("ENVIRONMENT", "development")
    for name in ("BUSINESS_NUMBER", "REDIS_KEY_PREFIX", "SESSION_TIMEOUT_HOURS"):
        monkeypatch.delenv(name, raising=False)
    broker = build_broker(Settings(environment=Environment.DEVELOPMENT, redis_url=redis_url))
    broker.flush_all()
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    service = SessionService(client)
    deps = WorkerDeps(service=service, inbox=Inbox(service.store), wake=drain_sender(broker))
    declare_actors(broker, deps)
    try:
        yield Stack(broker, service, client)
    finally:
        deps.close()
        broker.flush_all()
        broker.client.close()
        client.close()


@pytest.fixture
def worker(stack: Stack) -> Iterator[dramatiq.Worker]:
    with running_worker(stack.broker) as running:
        yield running


# ---- refusals ----------------------------------------------------------------------------------


def test_unknown_session_exits_1_with_one_line_on_stderr(
    stack: Stack, capsys: pytest.CaptureFixture[str], redis_url: str
) -> None:
    """An unknown id is refused before anything is enqueued, with one line naming it and the
    Redis the script looked in."""
    code = enqueue.main(["complete", "no-such-session"])

    out, err = capsys.readouterr()
    assert code == 1
    assert err.splitlines() == [
        f"error: unknown session no-such-session in Redis at {masked(redis_url)}"
    ]
    assert out == ""
    assert stack.queued() == []


@pytest.mark.parametrize("action", ["complete", "expire"])
def test_already_completed_session_exits_1(
    stack: Stack, capsys: pytest.CaptureFixture[str], action: str
) -> None:
    """An ended session cannot be ended again; nothing is enqueued."""
    session_id = stack.open_session()
    stack.service.complete_session(session_id)

    code = enqueue.main([action, session_id])

    err = capsys.readouterr().err
    assert code == 1
    assert err.splitlines() == [f"error: session {session_id} is already completed"]
    assert stack.queued() == []


def test_phone_without_an_active_session_exits_1(
    stack: Stack, capsys: pytest.CaptureFixture[str], redis_url: str
) -> None:
    """``--phone`` for a customer with no active session is refused with one line."""
    code = enqueue.main(["expire", "--phone", PHONE])

    assert code == 1
    assert capsys.readouterr().err.splitlines() == [
        f"error: that phone has no active session in Redis at {masked(redis_url)}"
    ]


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["complete"], id="neither"),
        pytest.param(["complete", "some-id", "--phone", PHONE], id="both"),
        pytest.param(["expire", "--phone", "not a phone"], id="bad-phone"),
    ],
)
def test_bad_usage_exits_2(
    stack: Stack, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    """Neither or both of SESSION_ID and --phone, or a malformed phone, is a usage error."""
    code = enqueue.main(argv)

    assert code == 2
    assert capsys.readouterr().err.strip() != ""
    assert stack.queued() == []


def test_unknown_action_exits_2_through_argparse(capsys: pytest.CaptureFixture[str]) -> None:
    """An action other than complete or expire is rejected by the parser with status 2."""
    with pytest.raises(SystemExit) as exited:
        enqueue.main(["finish", "some-id"])

    assert exited.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


# ---- which Redis ------------------------------------------------------------------------------


def test_in_development_the_script_reads_the_redis_serve_saved(
    stack: Stack, tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With nothing in the environment, next to ``./run serve``'s ``.run/dev.env`` the script
    finds the session in the development run's Redis, not in one on localhost:6379."""
    session_id = stack.open_session()
    monkeypatch.delenv("REDIS_URL")
    monkeypatch.delenv("ENVIRONMENT")
    (tmp_path / ".run").mkdir()
    (tmp_path / ".run" / "dev.env").write_text(
        f"ENVIRONMENT=development\nADMIN_TOKEN=a\nREDIS_URL={redis_url}\n"
    )

    assert enqueue.main(["complete", session_id]) == 0

    [message] = stack.queued()
    assert message.args == (session_id, "operator")


def test_an_unreachable_redis_is_named_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without a development file and with REDIS_URL on a closed port, exit 1 naming it."""
    monkeypatch.chdir(tmp_path)
    url = f"redis://:secret@127.0.0.1:{free_port()}/0"
    monkeypatch.setenv("REDIS_URL", url)

    assert enqueue.main(["complete", "some-id"]) == 1

    assert capsys.readouterr().err.splitlines() == [
        f"error: cannot reach Redis at {url.replace('secret', '***')}"
    ]


# ---- applied through the workers ---------------------------------------------------------------


@pytest.mark.usefixtures("worker")
def test_complete_with_wait_exits_0_once_the_worker_completed_it(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    """``complete ID --wait`` returns after a worker applied it, and the session is completed."""
    session_id = stack.open_session()

    code = enqueue.main(["complete", session_id, "--wait", "--timeout", "10"])

    assert code == 0
    assert capsys.readouterr().out.splitlines() == [f"session {session_id} is completed"]
    session = stack.service.store.load(session_id, include_messages=False)
    assert session is not None
    assert session.status is SessionStatus.COMPLETED
    assert session.end_reason == "operator"


@pytest.mark.usefixtures("worker")
def test_expire_by_phone_with_wait_exits_0_and_expires_the_active_session(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    """``expire --phone +E164 --wait`` finds the phone's active session and expires it."""
    session_id = stack.open_session()

    code = enqueue.main(["expire", "--phone", PHONE, "--reason", "abuse", "--wait"])

    assert code == 0
    assert capsys.readouterr().out.splitlines() == [f"session {session_id} is expired"]
    session = stack.service.store.load(session_id, include_messages=False)
    assert session is not None
    assert session.status is SessionStatus.EXPIRED
    assert session.end_reason == "abuse"


def test_without_wait_the_task_waits_in_the_queue_until_a_worker_runs(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without ``--wait`` the script exits 0 at once; the task sits in Dramatiq's queue and
    applies when a worker starts."""
    session_id = stack.open_session()

    code = enqueue.main(["complete", session_id])

    assert code == 0
    assert capsys.readouterr().out.splitlines() == [f"enqueued complete for session {session_id}"]
    [message] = stack.queued()
    assert (message.actor_name, message.args) == ("complete_session", (session_id, "operator"))
    assert stack.service.store.status_of(session_id) == SessionStatus.ACTIVE
    with running_worker(stack.broker):
        poll(lambda: stack.service.store.status_of(session_id) == SessionStatus.COMPLETED)
        stack.broker.join(QUEUE, timeout=5_000)
    assert stack.queued() == []


def test_wait_without_a_worker_exits_3_after_the_timeout(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--wait`` gives up after ``--timeout`` seconds with status 3; the task stays queued."""
    session_id = stack.open_session()

    code = enqueue.main(["complete", session_id, "--wait", "--timeout", "0.3"])

    assert code == 3
    assert capsys.readouterr().err.splitlines() == [
        f"error: session {session_id} not ended after 0.3s"
    ]
    assert len(stack.queued()) == 1
    assert stack.service.store.status_of(session_id) == SessionStatus.ACTIVE


def test_wait_exits_4_when_the_session_ended_otherwise_first(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    """``complete --wait`` exits 4 when, while its task waits, the session is expired another
    way; the worker then refuses the complete and the session stays expired."""
    session_id = stack.open_session()
    codes: list[int] = []
    waiting = threading.Thread(
        target=lambda: codes.append(
            enqueue.main(["complete", session_id, "--wait", "--timeout", "20"])
        )
    )
    waiting.start()
    poll(lambda: len(stack.queued()) == 1)  # the task is queued and the script is waiting
    stack.service.expire_session(session_id, reason="idle")
    waiting.join(timeout=30)

    assert codes == [4]
    assert capsys.readouterr().out.splitlines() == [f"session {session_id} is expired"]
    with running_worker(stack.broker):
        poll(lambda: stack.queued() == [])
        stack.broker.join(QUEUE, timeout=5_000)
    session = stack.service.store.load(session_id, include_messages=False)
    assert session is not None
    assert (session.status, session.end_reason) == (SessionStatus.EXPIRED, "idle")


# ---- as a process ------------------------------------------------------------------------------


#: Runs the script as ``python -m`` would, refusing (instead of performing) any enqueue to a
#: Redis other than the test's, so a misrouted task cannot reach a server the test did not start.
def masked(url: str) -> str:
    """A Redis URL as messages name it: the test Redis' password hidden."""
    return re.sub(r"//:[^@]*@", "//:***@", url)


_GUARDED_MAIN = """
import sys
from dramatiq.brokers.redis import RedisBroker
from wa_sessions.workers import enqueue

allowed_port = int(sys.argv[1])
real_enqueue = RedisBroker.enqueue

def guarded(self, message, *, delay=None):
    port = self.client.connection_pool.connection_kwargs.get("port")
    if port != allowed_port:
        sys.exit(f"refused to enqueue to port {port} (namespace {self.namespace})")
    return real_enqueue(self, message, delay=delay)

RedisBroker.enqueue = guarded
sys.exit(enqueue.main(sys.argv[2:]))
"""


def test_script_in_a_fresh_process_enqueues_to_the_configured_broker(
    stack: Stack, redis_url: str
) -> None:
    """Run as a new process (where nothing set a broker up first), the script sends its task
    to the broker on REDIS_URL under the service's namespace."""
    session_id = stack.open_session()
    port = urllib.parse.urlsplit(redis_url).port
    env = {**os.environ, "REDIS_URL": redis_url, "ENVIRONMENT": "development"}

    proc = subprocess.run(
        [sys.executable, "-c", _GUARDED_MAIN, str(port), "complete", session_id],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )

    assert (proc.returncode, proc.stderr) == (0, ""), json.dumps(proc.stderr[-2000:])
    [message] = stack.queued()
    assert message.actor_name == "complete_session"


# ---- start-conversation (issue #15) ------------------------------------------------------------

TEMPLATE_SID = "HX" + "c" * 32


def test_start_conversation_queues_a_template_and_wakes_the_phones_worker(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    """A phone with no session: exit 0 naming the message and the session opened for it; the
    template waits in the phone's inbox and a drain wake-up for it is queued (the drain's
    send is tested over HTTP in test_conversations.py)."""
    code = enqueue.main(
        ["start-conversation", "--phone", PHONE, "--content-sid", TEMPLATE_SID, "--var", "1=Ana"]
    )

    assert code == 0
    match = re.fullmatch(r"queued (conversation-\w+) in session (\S+)\n", capsys.readouterr().out)
    assert match is not None
    session = stack.service.get_session_by_phone(PHONE, include_messages=False)
    assert session is not None
    assert session.session_id == match.group(2)
    conv = stack.service.conversation(PHONE).key
    entries = cast(list[str], stack.client.lrange(stack.service.store.keys.conv_inbox(conv), 0, -1))
    assert [e for e in entries if match.group(1) in e and TEMPLATE_SID in e]
    assert [m.actor_name for m in stack.queued()] == ["drain_conversation"]


def test_start_conversation_with_a_template_sets_the_flow_with_its_first_message(
    stack: Stack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--template order --content-sid``: exit 0, the session opened for it already at the
    flow's first step and the template queued; an unknown template exits 2 naming it."""
    monkeypatch.setenv("CONVERSATION_TEMPLATE", "order")
    code = enqueue.main(
        [
            "start-conversation",
            "--phone",
            PHONE,
            "--template",
            "order",
            "--content-sid",
            TEMPLATE_SID,
        ]
    )

    assert code == 0, capsys.readouterr().err
    session = stack.service.get_session_by_phone(PHONE, include_messages=False)
    assert session is not None
    assert (session.flow, session.flow_step) == ("order", "items")
    assert [m.actor_name for m in stack.queued()] == ["drain_conversation"]
    capsys.readouterr()
    assert enqueue.main(["start-conversation", "--phone", PHONE, "--template", "nope"]) == 2
    assert "template: no conversation template 'nope'" in capsys.readouterr().err


def test_start_conversation_with_text_and_no_window_exits_1_naming_the_reason(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    code = enqueue.main(["start-conversation", "--phone", PHONE, "--text", "Hello"])

    assert code == 1
    assert capsys.readouterr().err.startswith("error: outside_window: ")
    assert stack.queued() == []


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--content-sid", "HX12"], "content_sid"),
        (["--content-sid", TEMPLATE_SID, "--var", "novalue"], "--var"),
        (["--text", "hi", "--var", "1=x"], "variables"),
    ],
)
def test_start_conversation_with_bad_input_exits_2_naming_it(
    stack: Stack, capsys: pytest.CaptureFixture[str], argv: list[str], named: str
) -> None:
    code = enqueue.main(["start-conversation", "--phone", PHONE, *argv])

    assert code == 2
    assert named in capsys.readouterr().err
    assert stack.queued() == []


def test_start_conversation_needs_exactly_one_of_content_sid_and_text(stack: Stack) -> None:
    with pytest.raises(SystemExit) as exited:
        enqueue.main(["start-conversation", "--phone", PHONE])
    assert exited.value.code == 2
