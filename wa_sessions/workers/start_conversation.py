"""``wa-sessions-enqueue start-conversation``: the operators' side of ``POST /conversations``
(docs/OUTREACH.md), over the same ``ConversationStarter``.

    wa-sessions-enqueue start-conversation --phone +14155550123 --content-sid HX... --var 1=Ana
    wa-sessions-enqueue start-conversation --phone +14155550123 --text "Your table is ready"
    wa-sessions-enqueue start-conversation --phone +14155550123 --template order

Exit codes: 0 queued (the phone's worker sends it); 1 refused (``opted_out``,
``outside_window``, ``flow_in_progress``) or Redis unreachable; 2 usage or bad input (the
field named on stderr).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import redis

from wa_sessions import bootstrap
from wa_sessions.errors import (
    FlowInProgress,
    InvalidTransition,
    OptedOut,
    OutsideWindow,
    WaSessionsError,
)

ACTION = "start-conversation"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"wa-sessions-enqueue {ACTION}",
        description="Send a customer an approved template or, inside the 24-hour window, text.",
    )
    parser.add_argument("--phone", required=True, help="the customer's WhatsApp number")
    parser.add_argument("--business", help="business number (default: BUSINESS_NUMBER)")
    parser.add_argument(
        "--template",
        help="start a conversation template (e.g. order): with --content-sid, or alone to send "
        "its first prompt (only inside the 24-hour window)",
    )
    content = parser.add_mutually_exclusive_group()
    content.add_argument("--content-sid", help="the template's Twilio Content SID (HX...)")
    content.add_argument("--text", help="free text (only inside the 24-hour window)")
    parser.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a template variable (repeatable), e.g. --var 1=Ana",
    )
    return parser


def main(argv: Sequence[str]) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.template is None and args.content_sid is None and args.text is None:
        parser.error("one of --content-sid, --text or --template is required")
    variables: dict[str, str] = {}
    for item in args.var:
        key, sep, value = item.partition("=")
        if not sep:
            print(f"error: --var {item!r}: give KEY=VALUE", file=sys.stderr)
            return 2
        variables[key] = value
    settings = bootstrap.load_operator_settings()
    service = bootstrap.build_service(settings)
    try:
        queued = bootstrap.build_conversations(settings, service).start(
            args.phone,
            args.business,
            text=args.text,
            content_sid=args.content_sid,
            variables=variables or None,
            template=args.template,
        )
    except redis.ConnectionError:
        print(f"error: cannot reach Redis at {settings.redis_location}", file=sys.stderr)
        return 1
    except (OptedOut, OutsideWindow, FlowInProgress, InvalidTransition) as exc:
        print(f"error: {exc.code}: {exc}", file=sys.stderr)
        return 1
    except WaSessionsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        service.store.client.close()
    print(f"queued {queued.message_id} in session {queued.session.session_id}")
    return 0
