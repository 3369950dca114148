"""The session analysis over HTTP, behind the admin bearer token: ``GET`` answers the stored
analysis (404 ``analysis_not_found`` when there is none yet), ``POST`` analyses the session
now unless the stored analysis already read its messages (then it is answered as is)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends

from wa_sessions.analysis.models import SessionAnalysis
from wa_sessions.webhook.auth import require_bearer
from wa_sessions.webhook.endpoint import WebDeps
from wa_sessions.webhook.session_api import bearer, responses


def analysis_api(deps: WebDeps) -> APIRouter:
    """``GET`` and ``POST /session/{session_id}/analysis``."""
    require_admin = require_bearer(
        deps.settings.admin_token, bearer, "a valid admin bearer token is required"
    )
    router = APIRouter(dependencies=[Depends(require_admin)], tags=["analysis"])
    analyses = deps.analysis

    @router.get(
        "/session/{session_id}/analysis",
        responses=responses(400, 401, 404),
        summary="The session's stored analysis: language, intent, sentiment, summary, open "
        "questions, next step",
    )
    def get_analysis(session_id: uuid.UUID) -> SessionAnalysis:
        return analyses.require_stored(str(session_id))

    @router.post(
        "/session/{session_id}/analysis",
        responses=responses(400, 401, 404, 409, 502),
        summary="Analyse the session now (answered from the store when nothing changed)",
    )
    async def analyse(session_id: uuid.UUID) -> SessionAnalysis:
        return await analyses.analyse(str(session_id))

    return router
