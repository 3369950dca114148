"""The webhook tests' app fixtures (``make_web``, ``web``), for the other modules here that
drive the same app."""

from __future__ import annotations

from tests.integration.test_webhook import make_web, web

__all__ = ["make_web", "web"]
