"""Agent takeover from the conversation page, on the real Redis and the real drain: take over,
reply (sent by the drain with the operator's name, delivery ticks from a status callback),
hand back; refusals (another operator holds it, outside the window, empty or too long, ended)
as readable pages that keep the draft; the list's marker and filter."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio
from prometheus_client import REGISTRY

from tests.conftest import FakeClock
from tests.console.conftest import ALICE_TOKEN, Console, MakeConsole
from tests.integration.test_effects import CONV
from tests.integration.test_takeover import Desk, make_desk
from wa_sessions.statemachine.models import MessageDirection
from wa_sessions.statemachine.redis.delivery import AsyncDeliveryStatuses


@pytest.fixture
def desk(redis_client: redis.Redis, clock: FakeClock) -> Iterator[Desk]:
    made = make_desk(redis_client, clock)
    yield made
    made.h.deps.close()


def _alice(make_console: MakeConsole, desk: Desk, **settings: object) -> Console:
    console = make_console(service=desk.h.service, **settings)
    assert console.sign_in(ALICE_TOKEN).status_code == 303
    return console


def _opened(desk: Desk) -> str:
    """A session opened by the customer's "hello" and answered automatically."""
    desk.h.accept("hello")
    desk.h.drain()
    return desk.session_id()


def _errors(code: str) -> float:
    return REGISTRY.get_sample_value("wa_sessions_api_errors_total", {"code": code}) or 0.0


def _problem(html: str) -> str:
    found = re.search(r'<p class="problem banner" role="alert">([^<]*)</p>', html)
    assert found, "the page shows no problem"
    return found.group(1).replace("&#39;", "'")


def test_an_operator_takes_over_replies_sees_the_ticks_and_hands_back(
    make_console: MakeConsole, desk: Desk, redis_url: str
) -> None:
    """Take over shows who holds it and the reply box; the reply leaves through the drain,
    shows in the chat with the operator's name and gets its ticks; hand back ends it."""
    sid = _opened(desk)
    console = _alice(make_console, desk, operator_reply_max_chars=500)
    path = f"/console/sessions/{sid}"
    page = console.client.get(path).text
    assert "Take over</button>" in page
    assert 'id="reply-text"' not in page

    taken = console.post(f"{path}/take-over", {"csrf_token": console.csrf(path)})
    assert (taken.status_code, taken.headers["location"]) == (303, f"{path}?done=taken_over")
    page = console.client.get(taken.headers["location"]).text
    assert "Taken over by alice</span> since" in page
    assert '<label for="reply-text">Your reply to +14155550100</label>' in page
    assert 'maxlength="500"' in page
    assert "0 / 500 characters" in page
    assert "Hand back</button>" in page

    sent = console.post(f"{path}/reply", {"csrf_token": console.csrf(path), "text": "On it!"})
    assert (sent.status_code, sent.headers["location"]) == (303, f"{path}?done=reply_queued")
    desk.h.drain()
    assert desk.bodies()[-1] == "On it!"
    reply = desk.h.session().messages[-1]
    assert (reply.direction, reply.metadata["operator"]) == (MessageDirection.OUTBOUND, "alice")
    page = console.client.get(path).text
    assert re.search(
        r'msg-outbound msg-operator">\s*<span class="text">On it!</span>.*?'
        r'<span class="by-operator">alice \(operator\)</span>',
        page,
        re.S,
    )

    async def delivered() -> None:
        client = redis.asyncio.Redis.from_url(redis_url)
        statuses = AsyncDeliveryStatuses(client, desk.h.store.keys)
        await statuses.record(reply.metadata["twilio_sid"], "delivered", "", at=desk.h.clock())
        await client.aclose()

    asyncio.run(delivered())
    assert '<span class="ticks ticks-delivered" aria-label="delivered">✓✓</span>' in (
        console.client.get(path).text
    )

    back = console.post(f"{path}/hand-back", {"csrf_token": console.csrf(path)})
    assert (back.status_code, back.headers["location"]) == (303, f"{path}?done=handed_back")
    page = console.client.get(path).text
    assert "Automatic replies are on." in page
    assert 'id="reply-text"' not in page
    assert desk.h.session().taken_over_by is None


def test_another_operators_session_refuses_take_over_and_reply_with_a_409_page(
    make_console: MakeConsole, desk: Desk
) -> None:
    """admin holds it: alice's take-over and reply get 409 pages naming admin, counted; she
    may still hand it back for admin, after a confirmation."""
    sid = _opened(desk)
    desk.takeover.take_over(sid, "admin")
    console = _alice(make_console, desk)
    path = f"/console/sessions/{sid}"
    before = _errors("takeover_conflict")

    taken = console.post(f"{path}/take-over", {"csrf_token": console.csrf(path)})
    assert taken.status_code == 409
    assert _problem(taken.text) == f"Session {sid} is taken over by admin."
    replied = console.post(f"{path}/reply", {"csrf_token": console.csrf(path), "text": "hi"})
    assert replied.status_code == 409
    assert "taken over by admin" in _problem(replied.text)
    assert _errors("takeover_conflict") == before + 2
    assert desk.h.store.inbox_depth(CONV) == 0

    page = console.client.get(path).text
    assert 'data-confirm="admin holds this conversation. Hand it back anyway?"' in page
    forced = console.post(f"{path}/hand-back", {"csrf_token": console.csrf(path), "force": "1"})
    assert forced.status_code == 303
    assert desk.h.session().taken_over_by is None


def test_bad_replies_get_readable_pages_that_keep_the_draft(
    make_console: MakeConsole, desk: Desk
) -> None:
    """Empty and too long: 400 with the rule and the draft kept in the box; outside the
    24-hour window and after the session ended: 409 saying why."""
    sid = _opened(desk)
    desk.takeover.take_over(sid, "alice")
    console = _alice(make_console, desk, operator_reply_max_chars=10)
    path = f"/console/sessions/{sid}"

    empty = console.post(f"{path}/reply", {"csrf_token": console.csrf(path), "text": "   "})
    assert empty.status_code == 400
    assert _problem(empty.text) == "Your reply was not sent: the reply is empty."
    long = console.post(
        f"{path}/reply", {"csrf_token": console.csrf(path), "text": "far too long <b>"}
    )
    assert long.status_code == 400
    assert _problem(long.text) == (
        "Your reply was not sent: the reply has 16 characters; at most 10."
    )
    assert ">far too long &lt;b&gt;</textarea>" in long.text

    desk.h.clock.advance(hours=23)
    desk.h.service.add_message("+14155550100", "still here", direction=MessageDirection.OUTBOUND)
    desk.h.clock.advance(hours=2)
    late = console.post(f"{path}/reply", {"csrf_token": console.csrf(path), "text": "hello?"})
    assert late.status_code == 409
    assert "WhatsApp's 24-hour customer-service window closed at" in _problem(late.text)
    assert "a reply will be refused" in late.text

    desk.h.service.complete_session(sid)
    ended = console.post(f"{path}/reply", {"csrf_token": console.csrf(path), "text": "bye"})
    assert ended.status_code == 409
    assert _problem(ended.text) == f"Session {sid} is completed; cannot reply."
    assert desk.h.store.inbox_depth(CONV) == 0


def test_takeover_posts_need_the_csrf_token_and_a_sign_in(
    make_console: MakeConsole, desk: Desk
) -> None:
    """A forged form is refused with 403 and changes nothing; a signed-out one goes to
    sign-in."""
    sid = _opened(desk)
    console = _alice(make_console, desk)
    path = f"/console/sessions/{sid}"
    forged = console.post(f"{path}/take-over", {"csrf_token": "forged"})
    assert forged.status_code == 403
    assert desk.h.session().taken_over_by is None
    console.client.cookies.clear()
    signed_out = console.post(f"{path}/take-over", {"csrf_token": "x"})
    assert (signed_out.status_code, signed_out.headers["location"]) == (303, "/console/sign-in")


def test_notes_of_refused_and_skipped_replies_show_as_notes(
    make_console: MakeConsole, desk: Desk
) -> None:
    """A reply handed back before it left becomes a ``not_taken_over`` note in the chat."""
    sid = _opened(desk)
    desk.takeover.take_over(sid, "alice")
    desk.takeover.send_operator_reply(sid, "alice", "One moment")
    desk.takeover.hand_back(sid, "alice")
    desk.h.drain()
    page = _alice(make_console, desk).client.get(f"/console/sessions/{sid}").text
    assert re.search(
        r'<li class="msg msg-system note-not_taken_over">\s*<span class="note-label">Note:</span>'
        r'\s*<span class="text">Reply from alice not sent: the conversation was handed back',
        page,
    )


def test_the_list_marks_taken_over_sessions_and_filters_to_them(
    make_console: MakeConsole, desk: Desk
) -> None:
    """A held session's row says who holds it; ``status=taken_over`` lists only those."""
    held = _opened(desk)
    desk.takeover.take_over(held, "alice")
    free = desk.h.service.add_message("+14155550111", "hi").session_id
    client = _alice(make_console, desk).client
    everything = client.get("/console/").text
    assert re.search(rf'id="row-{held}".*?taken over by alice</span>', everything, re.S)
    assert f'id="row-{free}"' in everything
    held_only = client.get("/console/?status=taken_over").text
    assert re.findall(r'<tr id="row-([0-9a-f-]+)"', held_only) == [held]
    assert '<option value="taken_over" selected>Taken over</option>' in held_only
