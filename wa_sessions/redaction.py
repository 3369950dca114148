"""Log records never carry a customer's address: phone numbers and WhatsApp user ids are masked.

Our own log calls leave them out, but libraries format what they are given: Dramatiq's worker
logs ``Failed to process message drain_conversation('+14155550123|+14155238886')``, and an
exception's text may quote its input. ``install_log_redaction`` wraps the process's log record
factory, so every record, whichever logger or handler it goes to, is masked once when created.
"""

from __future__ import annotations

import logging
import re
import traceback
from typing import Any

# E.164 (a plus and 7 to 15 digits) and Meta's business-scoped user ids (``US.1349120865...``,
# ``US.ENT.abc123...``). Short BSUID-like tokens are left alone: log lines hold dotted names.
_ADDRESS = re.compile(
    r"(?<![\w+])\+[1-9][0-9]{6,14}(?![0-9])|\b[A-Z]{2}\.(?:ENT\.)?[A-Za-z0-9]{6,128}\b"
)

_installed = False


def redact(text: str) -> str:
    """``text`` with every phone number and user id masked, keeping a hint for debugging
    (``+14***23``: country code and last two digits, as error messages do)."""
    return _ADDRESS.sub(_mask, text)


def _mask(match: re.Match[str]) -> str:
    value = match.group(0)
    return value[:3] + "***" + value[-2:]


def _redact_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # a malformed call: logging reports it when the record is emitted
        return
    masked = redact(message)
    if masked != message:
        record.msg, record.args = masked, None
    if record.exc_info and not record.exc_text:
        # What Formatter.formatException would produce; formatters reuse exc_text when set.
        text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        record.exc_text = redact(text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


def install_log_redaction() -> None:
    """Masks addresses in every log record this process creates from now on (idempotent)."""
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        _redact_record(record)
        return record

    logging.setLogRecordFactory(factory)
    _installed = True
