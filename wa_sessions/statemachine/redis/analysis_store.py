"""The session analysis in Redis: read the stored one, store a new one only while the session
still has the fingerprint it read, or note a failed one in the history
(``lua/save_analysis.lua``)."""

from __future__ import annotations

from typing import Literal, cast

from wa_sessions.statemachine.models import Message
from wa_sessions.statemachine.redis.calls import as_str
from wa_sessions.statemachine.redis.keys import SessionField
from wa_sessions.statemachine.redis.scripted import ScriptedStore

SaveOutcome = Literal["stored", "stale", "noted", "missing"]

#: Ended sessions kept waiting for an analysis at most (the oldest are dropped beyond).
MAX_DUE = 100_000


class RedisAnalysisStore(ScriptedStore):
    """The ``analysis`` field of session hashes (on the session store's client and keys)."""

    def stored_analysis(self, session_id: str) -> str | None:
        """The stored analysis JSON; None when the session is unknown or has none."""
        conv = self.client.hget(self.keys.session_conv, session_id)
        if conv is None:
            return None
        value = self.client.hget(self.keys.session(as_str(conv), session_id), SessionField.ANALYSIS)
        return as_str(value) if value is not None else None

    def queue_due(self, session_ids: list[str]) -> None:
        """Queues ended sessions for the scheduler's analysis job."""
        if session_ids:
            pipe = self.client.pipeline(transaction=False)
            pipe.rpush(self.keys.analysis_due, *session_ids)
            pipe.ltrim(self.keys.analysis_due, -MAX_DUE, -1)
            pipe.execute()

    def take_due(self, limit: int) -> list[str]:
        """Takes up to ``limit`` queued session ids (each is handed to one caller only)."""
        raw = self.client.lpop(self.keys.analysis_due, limit)
        return [as_str(x) for x in cast(list[str], raw or [])]

    def save_analysis(
        self, session_id: str, *, fingerprint: str, analysis_json: str
    ) -> tuple[SaveOutcome, str]:
        """Stores the analysis if the session's fingerprint is still ``fingerprint``:
        (``stored``, ''), (``stale``, the fingerprint now) or (``missing``, '')."""
        return self._save(session_id, fingerprint=fingerprint, analysis=analysis_json, note="")

    def note(self, session_id: str, message: Message, *, cap: int) -> SaveOutcome:
        """Appends a system note to the session's history (ended or not)."""
        outcome, _ = self._save(
            session_id,
            fingerprint="",
            analysis="",
            note=message.model_dump_json(exclude_defaults=True),
            cap=cap,
        )
        return outcome

    def _save(
        self, session_id: str, *, fingerprint: str, analysis: str, note: str, cap: int = 1
    ) -> tuple[SaveOutcome, str]:
        outcome, detail = self._run(
            "save_analysis",
            sid=session_id,
            fingerprint=fingerprint,
            analysis=analysis,
            note=note,
            cap=cap,
        )
        return as_str(outcome), as_str(detail)  # type: ignore[return-value]
