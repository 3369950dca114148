"""Rewrites the JSON Schema section of docs/EVENTS.md from the event models
(``wa_sessions/events/schema.py``): ``python -m tools.events_schema``. A test checks the page
matches the models, so a changed model without a regenerated page fails the suite."""

from __future__ import annotations

import sys
from pathlib import Path

from wa_sessions.events.schema import schema_markdown

PAGE = Path(__file__).resolve().parents[1] / "docs" / "EVENTS.md"
START = "<!-- schema:start (python -m tools.events_schema) -->"
END = "<!-- schema:end -->"


def with_schema(page: str) -> str:
    """``page`` with the text between the markers replaced by the models' schemas."""
    head, start, rest = page.partition(START)
    _, end, tail = rest.partition(END)
    if not start or not end:
        raise ValueError(f"docs/EVENTS.md lacks the markers {START!r} and {END!r}")
    return f"{head}{START}\n\n{schema_markdown()}\n{END}{tail}"


def main() -> int:
    PAGE.write_text(with_schema(PAGE.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
