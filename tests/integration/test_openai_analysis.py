"""The OpenAI session analysis through the real ``openai`` SDK against the local Responses
stand-in: the structured-output request, the stored answer, and each failure (timeout, 429,
refusal, invalid output) leaving the session as it was with one system note. Also the
analysis routes over HTTP, with either analyser."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio
from fastapi.testclient import TestClient

from tests.conftest import FakeClock
from tests.fake_apis import OPENAI_KEY, FakeOpenAI, Reply, fake_openai, openai_response
from tests.integration.test_webhook import make_settings, wake_messages
from wa_sessions.analysis.models import AnalyserName, Findings, Intent, Sentiment
from wa_sessions.analysis.openai import OpenAISessionAnalyser
from wa_sessions.analysis.service import SessionAnalyses
from wa_sessions.errors import AnalysisFailed
from wa_sessions.metrics.analysis import ANALYSIS_FAILURES
from wa_sessions.ratelimit import RateGate
from wa_sessions.retries import RetryPolicy
from wa_sessions.statemachine.models import MessageDirection, MessageType
from wa_sessions.statemachine.redis.analysis_store import RedisAnalysisStore
from wa_sessions.statemachine.redis.inbox import AsyncInbox, InboxPolicy
from wa_sessions.statemachine.service import SessionService
from wa_sessions.webhook import WebDeps, create_app

PHONE = "+15550002222"
ADMIN = {"Authorization": "Bearer admin"}
FINDINGS = Findings(
    language="pt",
    intent=Intent.ORDER,
    sentiment=Sentiment.POSITIVE,
    summary="The customer orders 3 boxes of apples.",
    open_questions=["Entregam amanhã?"],
    next_step="Ask for the delivery address.",
)


def findings_reply(findings: Findings = FINDINGS) -> Reply:
    return Reply(200, openai_response(findings.model_dump_json()))


@pytest.fixture
def api() -> Iterator[FakeOpenAI]:
    with fake_openai() as fake:
        fake.set_default(lambda r: findings_reply() if r.method == "POST" else None)
        yield fake


@pytest.fixture
def service(redis_client: redis.Redis, clock: FakeClock) -> SessionService:
    return SessionService(redis_client, clock=clock)


def openai_analyses(
    service: SessionService, api: FakeOpenAI, *, timeout: float = 2.0, budget: float = 3.0
) -> SessionAnalyses:
    async def no_wait(_: float) -> None:
        return None

    analyser = OpenAISessionAnalyser(
        api_key=OPENAI_KEY,
        model="gpt-test",
        base_url=api.api_url,
        policy=RetryPolicy(
            timeout_seconds=timeout, max_retries=1, budget_seconds=budget, backoff_seconds=0.01
        ),
        gate=RateGate(max_concurrency=4),
        sleep=no_wait,
    )
    store = RedisAnalysisStore(service.store.client, service.store.keys)
    return SessionAnalyses(service, store, analyser)


def analyse(analyses: SessionAnalyses, sid: str) -> object:
    async def run() -> object:
        try:
            return await analyses.analyse(sid)
        finally:
            assert isinstance(analyses.analyser, OpenAISessionAnalyser)
            await analyses.analyser.close()

    return asyncio.run(run())


def conversation(service: SessionService) -> str:
    service.add_message(PHONE, "Quero 3 caixas de maçãs")
    service.add_message(PHONE, "Pedido recebido", direction=MessageDirection.OUTBOUND)
    return service.add_message(PHONE, "Entregam amanhã?").session_id


def test_the_model_reads_the_conversation_and_its_findings_are_stored(
    service: SessionService, api: FakeOpenAI
) -> None:
    """One strict structured-output request holding the conversation; the answer is stored
    as an ``openai`` analysis."""
    sid = conversation(service)
    analyses = openai_analyses(service, api)
    analysis = analyse(analyses, sid)
    assert len(api.requests) == 1
    body = api.requests[0].json()
    assert body["text"]["format"]["strict"] is True
    assert body["text"]["format"]["name"] == "Findings"
    prompt = body["input"][0]["content"][0]["text"]
    assert "customer: Quero 3 caixas de maçãs" in prompt
    assert "business: Pedido recebido" in prompt
    stored = analyses.stored(sid)
    assert stored is not None
    assert stored.current
    assert stored.analysis == analysis
    assert stored.analysis.analyser is AnalyserName.OPENAI
    assert stored.analysis.open_questions == ["Entregam amanhã?"]


def test_an_unchanged_session_makes_no_second_call(
    service: SessionService, api: FakeOpenAI
) -> None:
    """The fingerprint matches: the stored analysis is answered, OpenAI is not asked."""
    sid = conversation(service)
    analyse(openai_analyses(service, api), sid)
    analyse(openai_analyses(service, api), sid)
    assert len(api.requests) == 1


FAILURES = {
    "timeout": [Reply(200, openai_response(FINDINGS.model_dump_json()), delay=1.5)] * 3,
    "rate_limited": [Reply(429, {"error": {"message": "slow down"}}, {"retry-after": "30"})],
    "invalid_output": [Reply(200, openai_response("I will not", refusal=True))],
    "invalid_output ": [Reply(200, openai_response(json.dumps({"intent": "shopping"})))],
}


@pytest.mark.parametrize("reason", list(FAILURES))
def test_a_failed_call_leaves_the_session_as_it_was_with_a_system_note(
    service: SessionService, api: FakeOpenAI, reason: str
) -> None:
    """Timeouts, a 429 whose Retry-After outlasts the budget, a refusal and an answer out of
    shape: nothing stored (an earlier analysis kept), one system note naming the reason."""
    sid = conversation(service)
    analyse(openai_analyses(service, api), sid)
    before = openai_analyses(service, api).stored(sid)
    service.add_message(PHONE, "E quanto custa?")
    api.reply(*FAILURES[reason])
    failures = ANALYSIS_FAILURES.labels("openai", reason.strip())._value.get()
    with pytest.raises(AnalysisFailed, match=reason.strip()):
        analyse(openai_analyses(service, api, timeout=0.5, budget=1.2), sid)
    after = openai_analyses(service, api).stored(sid)
    assert before is not None
    assert after is not None
    assert after.analysis == before.analysis
    assert not after.current
    notes = [m for m in service.store.messages(sid) if m.message_type is MessageType.SYSTEM]
    assert [n.metadata["event"] for n in notes] == ["analysis_failed"]
    assert notes[0].metadata["reason"] == reason.strip()
    assert ANALYSIS_FAILURES.labels("openai", reason.strip())._value.get() == failures + 1


def web(service: SessionService, redis_url: str, analyses: SessionAnalyses | None) -> TestClient:
    inbox = AsyncInbox(
        redis.asyncio.Redis.from_url(redis_url),
        service.store.keys,
        InboxPolicy(),
        wake_message=wake_messages(),
    )
    deps = WebDeps(settings=make_settings(), service=service, inbox=inbox, analyses=analyses)
    return TestClient(create_app(deps))


def test_the_routes_answer_404_before_an_analysis_then_post_computes_and_get_reads_it(
    service: SessionService, redis_url: str
) -> None:
    """Over HTTP with the offline analyser: GET is a JSON 404 until POST analysed the
    session; both need the admin token; an unknown session is a 404 of its own."""
    sid = conversation(service)
    with web(service, redis_url, None) as client:
        missing = client.get(f"/session/{sid}/analysis", headers=ADMIN)
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "analysis_not_found"
        assert client.post(f"/session/{sid}/analysis").status_code == 401
        posted = client.post(f"/session/{sid}/analysis", headers=ADMIN)
        assert posted.status_code == 200
        assert posted.json()["analyser"] == "offline"
        assert posted.json()["language"] == "pt"
        got = client.get(f"/session/{sid}/analysis", headers=ADMIN)
        assert got.status_code == 200
        assert got.json() == posted.json()
        unknown = client.get(
            "/session/00000000-0000-4000-8000-000000000000/analysis", headers=ADMIN
        )
        assert unknown.json()["error"]["code"] == "session_not_found"
        bad = client.get("/session/not-a-uuid/analysis", headers=ADMIN)
        assert bad.status_code == 400


def test_a_failed_openai_analysis_over_http_is_a_502_naming_the_reason(
    service: SessionService, api: FakeOpenAI, redis_url: str
) -> None:
    """POST with OpenAI refusing: 502 ``analysis_failed``, GET still 404, a note added."""
    sid = conversation(service)
    api.reply(Reply(200, openai_response("no", refusal=True)))
    with web(service, redis_url, openai_analyses(service, api)) as client:
        posted = client.post(f"/session/{sid}/analysis", headers=ADMIN)
        assert posted.status_code == 502
        assert posted.json()["error"]["code"] == "analysis_failed"
        assert "invalid_output" in posted.json()["error"]["message"]
        assert client.get(f"/session/{sid}/analysis", headers=ADMIN).status_code == 404
        ok = client.post(f"/session/{sid}/analysis", headers=ADMIN)
        assert ok.status_code == 200
        assert ok.json()["analyser"] == "openai"


def test_a_model_language_that_is_not_a_code_is_kept_only_as_one(
    service: SessionService, api: FakeOpenAI
) -> None:
    """ "pt-BR" is stored as "pt", "Portuguese" as "po" would be wrong: only two letters are
    kept, and a name longer than a code's letters is cut to them, never stored whole."""
    sid = conversation(service)
    api.reply(findings_reply(FINDINGS.model_copy(update={"language": "pt-BR"})))
    analysis = analyse(openai_analyses(service, api), sid)
    assert getattr(analysis, "language", None) == "pt"
    service.add_message(PHONE, "Obrigado")
    api.reply(findings_reply(FINDINGS.model_copy(update={"language": "Portuguese"})))
    again = analyse(openai_analyses(service, api), sid)
    assert getattr(again, "language", "x") is None
