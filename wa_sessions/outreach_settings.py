"""The business-initiated messages' settings (issue #15, docs/OUTREACH.md): a base class of
``Settings`` so that config.py stays readable. Field names are the environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings

from wa_sessions.statemachine.outreach import CONTENT_SID_PATTERN


class OutreachSettings(BaseSettings):
    """The nudge before expiry: when, with which template outside the window, how often."""

    #: Minutes before a session expires that a customer with an unconfirmed order is reminded
    #: (once per session). 0: no nudge. Set, it must be less than SESSION_TIMEOUT_HOURS in
    #: minutes; left at its default with a timeout of an hour or less, the nudge is off.
    nudge_before_expiry_minutes: float = Field(default=60.0, ge=0)
    #: The approved WhatsApp template (Twilio Content SID, ``HX`` and 32 hex digits) sent as
    #: the nudge when WhatsApp's 24-hour window has closed; unset: no nudge outside it.
    nudge_content_sid: str | None = Field(default=None, pattern=CONTENT_SID_PATTERN)
    #: How often the scheduler looks for sessions whose nudge is due.
    nudge_interval_seconds: float = Field(default=30.0, gt=0)

    def check_nudge_timing(self, session_timeout_hours: float) -> None:
        """``ValueError`` when a lead that was set would make the nudge due as the session
        starts. The default is not held to it, so that a short SESSION_TIMEOUT_HOURS set
        before the nudge existed keeps starting (``nudge_minutes`` turns the nudge off)."""
        if "nudge_before_expiry_minutes" not in self.model_fields_set:
            return
        if self.nudge_before_expiry_minutes >= session_timeout_hours * 60:
            raise ValueError(
                "NUDGE_BEFORE_EXPIRY_MINUTES must be less than SESSION_TIMEOUT_HOURS * 60 "
                f"({session_timeout_hours * 60:g}); 0 turns the nudge off"
            )

    def nudge_minutes(self, session_timeout_hours: float) -> float:
        """The lead the scheduler uses: the setting, or 0 (off) when it does not fit."""
        lead = self.nudge_before_expiry_minutes
        return lead if lead < session_timeout_hours * 60 else 0.0
