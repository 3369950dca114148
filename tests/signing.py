"""Signing a form whose names repeat, as the twilio SDK signs a multi-valued form (Flask's or
Django's): what a captured, re-ordered duplicate would carry."""

from __future__ import annotations

from twilio.request_validator import RequestValidator


class MultiForm(dict[str, list[str]]):
    """Every value of each name, in arrival order; ``getall`` is what the SDK reads."""

    @classmethod
    def of(cls, pairs: list[tuple[str, str]]) -> MultiForm:
        form = cls()
        for name, value in pairs:
            form.setdefault(name, []).append(value)
        return form

    def getall(self, name: str) -> list[str]:
        return self[name]


def sign_pairs(token: str, url: str, pairs: list[tuple[str, str]]) -> str:
    """``X-Twilio-Signature`` over ``pairs``, repeated names included."""
    return str(RequestValidator(token).compute_signature(url, MultiForm.of(pairs)))
