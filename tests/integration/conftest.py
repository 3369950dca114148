"""The webhook tests' app fixtures (``make_web``, ``web``) and the drain harness
(``make_harness``, ``h``), for the other modules here that drive the same parts."""

from __future__ import annotations

from tests.integration.test_effects import h, make_harness
from tests.integration.test_webhook import make_web, web

__all__ = ["h", "make_harness", "make_web", "web"]
