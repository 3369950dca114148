"""Which conversation template a business number follows: loaded once at start (the
composition root) from ``CONVERSATION_TEMPLATE`` (a shipped name such as ``order``, or a
file's path: every number's default) and ``CONVERSATION_TEMPLATES_DIR`` (files named
``<business number>.toml``, each that number's template, and an optional ``templates.toml``
mapping numbers to shipped names or files). Without either, no business has a flow and the
service behaves as it did before templates."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from wa_sessions.flows.schema import FlowTemplate, FlowTemplateError, load_template, parse_template
from wa_sessions.statemachine.steps import EffectSession

#: The mapping file a templates directory may hold: ``"<business number>" = "<name or file>"``.
MAPPING_FILE = "templates.toml"


def shipped_names() -> list[str]:
    """The templates shipped in the package (``flows/templates/<name>.toml``)."""
    folder = resources.files("wa_sessions.flows").joinpath("templates")
    return sorted(
        p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml")
    )


def load_shipped(name: str) -> FlowTemplate:
    path = resources.files("wa_sessions.flows").joinpath("templates", f"{name}.toml")
    if not path.is_file():
        raise FlowTemplateError(
            f"{name}: no shipped conversation template of that name "
            f"(shipped: {', '.join(shipped_names())}; or give a file's path)"
        )
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise FlowTemplateError(f"{name}.toml (shipped): not valid TOML: {exc}") from None
    return parse_template(raw, f"{name}.toml (shipped)")


def resolve(reference: str, base: Path | None = None) -> FlowTemplate:
    """A template named by ``reference``: a shipped name, or a path (relative to ``base``)."""
    if reference.endswith(".toml") or "/" in reference:
        path = Path(reference)
        if base is not None and not path.is_absolute():
            path = base / path
        return load_template(path)
    return load_shipped(reference)


@dataclass(frozen=True)
class FlowTemplates:
    """The default template (None: none) and the business numbers' own."""

    default: FlowTemplate | None = None
    by_business: Mapping[str, FlowTemplate] = field(default_factory=dict)

    def for_business(self, business: str) -> FlowTemplate | None:
        """The template a new session with ``business`` follows (None: no flow)."""
        return self.by_business.get(_number(business), self.default)

    def following(self, session: EffectSession) -> FlowTemplate | None:
        """The template ``session`` follows: the one it started (while loaded), else its
        business number's; None: no flow, the replies of a session without a template."""
        if session.flow is not None and (started := self.named(session.flow)) is not None:
            return started
        return self.for_business(session.business)

    def named(self, name: str) -> FlowTemplate | None:
        """A loaded template by its ``name`` (a session keeps following the one it started)."""
        for template in (self.default, *self.by_business.values()):
            if template is not None and template.name == name:
                return template
        return None

    def names(self) -> list[str]:
        """The loaded templates' names, sorted (what ``POST /conversations`` may start)."""
        loaded = (self.default, *self.by_business.values())
        return sorted({t.name for t in loaded if t is not None})

    def __bool__(self) -> bool:
        return self.default is not None or bool(self.by_business)


def load_templates(default: str | None, directory: Path | None) -> FlowTemplates:
    """The settings' templates, every file validated now (a bad one stops the start)."""
    fallback = resolve(default) if default else None
    if directory is None:
        return FlowTemplates(fallback)
    if not directory.is_dir():
        raise FlowTemplateError(f"{directory}: CONVERSATION_TEMPLATES_DIR is not a directory")
    by_business: dict[str, FlowTemplate] = {}
    mapping = directory / MAPPING_FILE
    if mapping.is_file():
        try:
            pairs = tomllib.loads(mapping.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise FlowTemplateError(f"{mapping}: not valid TOML: {exc}") from None
        for number, reference in pairs.items():
            if not isinstance(reference, str):
                raise FlowTemplateError(f"{mapping}: field {number!r}: must be a name or a path")
            by_business[_number(number)] = resolve(reference, directory)
    for path in sorted(directory.glob("*.toml")):
        if path.name != MAPPING_FILE:
            by_business[_number(path.stem)] = load_template(path)
    return FlowTemplates(fallback, by_business)


def _number(business: str) -> str:
    """``whatsapp:+14155238886`` and ``+14155238886`` name the same number."""
    return business.removeprefix("whatsapp:")
