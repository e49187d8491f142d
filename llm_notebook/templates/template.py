"""One version of a prompt template: its content, validation, and rendering.

A Template is valid by construction: its name, placeholder syntax, options and defaults are
checked when it is built, so a broken template can be neither saved nor imported. Rendering
goes through ``llm_notebook.placeholders``, whose grammar has no attribute access, calls,
conversions or format specs, and which looks values up only by the names the template uses:
a template cannot reach Python internals, globals or files, whoever wrote it. Nor can it
route a call: its options are generation options only (``llm_notebook.options``), so it never
names a host, a header, a proxy or a key. This holds for templates read back from the log too.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from .. import options as call_options
from .. import placeholders
from ..errors import UserError
from ..placeholders import (
    MissingVariableError,
    PlaceholderError,
    PlaceholderSyntaxError,
)

NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
NAME_RULE = ("template names are 1–100 letters, digits, '_', '-' or '.', starting with a letter, "
             "digit or '_' (e.g. 'summarize' or 'summarize-v2')")


class TemplateError(UserError, ValueError):
    """A template problem a user can fix (bad name, bad content, bad file); one-line message."""


class TemplateNotFound(TemplateError, LookupError):
    """No template (or no such version) under that name."""


class TemplateSyntaxError(PlaceholderSyntaxError, TemplateError):
    """A placeholder syntax error in a template's prompt or system text.

    ``line``/``column`` (1-based) locate it within ``field`` (``"prompt"`` or ``"system"``).
    """

    def __init__(self, error: PlaceholderSyntaxError, field: str, template: str):
        super().__init__(error.message, error.line, error.column, error.kind)
        self.field = field
        self.template = template

    def __str__(self) -> str:
        return (f"template '{self.template}': {self.field} line {self.line}, column {self.column}: "
                f"{self.message}")

    def __reduce__(self):
        plain = PlaceholderSyntaxError(self.message, self.line, self.column, self.kind)
        return (type(self), (plain, self.field, self.template))


class TemplateVariableError(MissingVariableError):
    """Rendering needs variables that were not given and have no saved default.

    ``name`` is the first missing variable, ``missing`` all of them, ``template`` the template.
    """

    def __init__(self, template: str, missing: list[str], available: list[str]):
        PlaceholderError.__init__(self, _missing_message(template, missing, available))
        self.name = missing[0]
        self.missing = list(missing)
        self.available = list(available)
        self.template = template
        self.line = self.column = None

    def __reduce__(self):
        return (type(self), (self.template, self.missing, self.available))


def _missing_message(template: str, missing: list[str], available: list[str]) -> str:
    quoted = ", ".join(f"'{m}'" for m in missing)
    noun = "variable" if len(missing) == 1 else "variables"
    message = f"template '{template}' needs a value for {noun} {quoted}"
    close = difflib.get_close_matches(missing[0], available, n=1)
    if close:
        message += f" (did you mean '{close[0]}'?)"
    example = ", ".join(f"{m}=..." for m in missing)
    return f"{message}: pass {example}, or save the template with defaults={{...}}"


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        shown = repr(name[:60]) + "…" if isinstance(name, str) and len(name) > 60 else repr(name)
        raise TemplateError(f"{NAME_RULE}; got {shown}")
    return name


def _json_safe(value: Any, what: str, template: str) -> None:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TemplateError(f"template '{template}': {what} must be JSON values (text, numbers, "
                            f"true/false, lists, mappings): {exc}") from None


def _clean_options(options: Any, template: str) -> dict:
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise TemplateError(f"template '{template}': options must be a mapping like "
                            f"{{'temperature': 0.2}}, not {type(options).__name__}")
    out = {}
    for key, value in options.items():
        # A template may come from someone else: generation options only, never a host, a
        # header or a key (llm_notebook.options says which is which).
        problem = call_options.untrusted_problem(key, value)
        if problem:
            raise TemplateError(f"template '{template}': {problem}")
        out[key] = value
    _json_safe(out, "options", template)
    return out


def _clean_defaults(defaults: Any, variables: list[str], template: str) -> dict:
    if defaults is None:
        return {}
    if not isinstance(defaults, Mapping):
        raise TemplateError(f"template '{template}': defaults must be a mapping of variable to "
                            f"value like {{'tone': 'friendly'}}, not {type(defaults).__name__}")
    out = {}
    for key, value in defaults.items():
        if key not in variables:
            uses = ", ".join(variables) if variables else "no variables"
            raise TemplateError(f"template '{template}': a default for {key!r}, which the "
                                f"template does not use (it uses {uses})")
        out[key] = value
    _json_safe(out, "defaults", template)
    return out


def _clean_tags(tags: Any, template: str) -> tuple[str, ...]:
    if tags is None:
        return ()
    if isinstance(tags, str):  # tags="prod" means one tag, not four letters
        tags = [tags]
    out: list[str] = []
    for tag in tags:
        if not isinstance(tag, str) or not tag.strip():
            raise TemplateError(f"template '{template}': tags are non-empty text; got {tag!r}")
        if tag.strip() not in out:
            out.append(tag.strip())
    return tuple(out)


def _optional_text(value: Any, what: str, template: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TemplateError(f"template '{template}': {what} must be text, "
                            f"not {type(value).__name__}")
    return value if value.strip() else None


def _parse(text: str, field: str, template: str) -> placeholders.Template:
    try:
        return placeholders.parse(text)
    except PlaceholderSyntaxError as exc:
        raise TemplateSyntaxError(exc, field, template) from None


@dataclasses.dataclass(frozen=True, kw_only=True, eq=True, repr=False)
class Template:
    """One immutable version of a saved prompt template.

    ``version`` and ``created`` are None for a template that has not been saved.
    """

    name: str
    prompt: str
    system: str | None = None
    model: str | None = None
    options: dict = dataclasses.field(default_factory=dict)
    defaults: dict = dataclasses.field(default_factory=dict)
    tags: tuple[str, ...] = ()
    message: str | None = None
    version: int | None = None
    created: datetime | None = None

    def __post_init__(self) -> None:
        name = check_name(self.name)
        if not isinstance(self.prompt, str):
            raise TemplateError(f"template '{name}': the prompt must be text, "
                                f"not {type(self.prompt).__name__}")
        if not self.prompt.strip():
            raise TemplateError(f"template '{name}' needs a prompt: some text, usually with "
                                "{variables} to fill in")
        system = _optional_text(self.system, "system", name)
        variables = _parse(self.prompt, "prompt", name).variables
        if system is not None:
            variables += [v for v in _parse(system, "system", name).variables
                          if v not in variables]
        model = _optional_text(self.model, "model", name)
        fixed = {
            "system": system,
            "model": model.strip() if model else None,
            "options": _clean_options(self.options, name),
            "defaults": _clean_defaults(self.defaults, variables, name),
            "tags": _clean_tags(self.tags, name),
            "message": _optional_text(self.message, "message", name),
        }
        for field, value in fixed.items():
            object.__setattr__(self, field, value)
        object.__setattr__(self, "_variables", tuple(variables))

    # -- reading ------------------------------------------------------------------------------

    @property
    def variables(self) -> list[str]:
        """Variable names used by the prompt and the system text, in order of first use."""
        return list(self._variables)

    @property
    def ref(self) -> str:
        """``name@version`` (or just the name when unsaved): what get() accepts back."""
        return self.name if self.version is None else f"{self.name}@{self.version}"

    # -- rendering ----------------------------------------------------------------------------

    def render(self, values: Mapping[str, Any] | None = None, /, **variables: Any) -> str:
        """The prompt with its variables filled in.

        Values come from keyword arguments, then ``values`` (any mapping, e.g. a DataFrame row),
        then the saved defaults. Names the template does not use are ignored. A variable with no
        value raises TemplateVariableError naming it.
        """
        return self._fill(self.prompt, values, variables)

    def render_system(self, values: Mapping[str, Any] | None = None, /,
                      **variables: Any) -> str | None:
        """The system text with its variables filled in (None when there is no system text)."""
        if self.system is None:
            return None
        return self._fill(self.system, values, variables)

    def _fill(self, text: str, values: Mapping[str, Any] | None, variables: dict) -> str:
        parsed = placeholders.parse(text)
        # Only the names the template uses are looked up: a whole namespace or a wide row can
        # be passed without being copied, and nothing else in it is ever touched.
        found: dict[str, Any] = {}
        missing: list[str] = []
        for name in parsed.variables:
            if name in variables:
                found[name] = variables[name]
            elif values is not None and name in values:
                found[name] = values[name]
            elif name in self.defaults:
                found[name] = self.defaults[name]
            else:
                missing.append(name)
        if missing:
            available = sorted({*variables, *self.defaults,
                                *(k for k in (values.keys() if values is not None else ())
                                  if isinstance(k, str) and not k.startswith("_"))})
            raise TemplateVariableError(self.name, missing, available)
        return parsed.render(found)

    # -- conversions --------------------------------------------------------------------------

    def content(self) -> dict:
        """The fields that make this version (what a save stores), as plain JSON values."""
        return {"name": self.name, "prompt": self.prompt, "system": self.system,
                "model": self.model, "options": dict(self.options),
                "defaults": dict(self.defaults), "tags": list(self.tags), "message": self.message}

    def to_dict(self) -> dict:
        """Everything, for export: content plus version and ISO creation time."""
        out = self.content()
        out["version"] = self.version
        out["created"] = self.created.isoformat() if self.created else None
        return out

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Template:
        created = row.get("created")
        return cls(
            name=row["name"], prompt=row["prompt"], system=row.get("system"),
            model=row.get("model"), options=row.get("options") or {},
            defaults=row.get("defaults") or {}, tags=tuple(row.get("tags") or ()),
            message=row.get("message"), version=row.get("version"),
            created=(datetime.fromtimestamp(created, tz=UTC)
                     if isinstance(created, (int, float)) else created),
        )

    def __hash__(self) -> int:  # options/defaults are dicts: hash what identifies a version
        return hash((self.name, self.version, self.prompt, self.system, self.model))

    def __repr__(self) -> str:
        preview = self.prompt if len(self.prompt) <= 60 else self.prompt[:57] + "..."
        extra = f", model={self.model!r}" if self.model else ""
        return (f"<Template {self.ref!r}: {preview!r}, variables={self.variables!r}{extra}>")
