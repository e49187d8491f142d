"""The steps of a workflow, as data: what each step does, checked when it is built.

A step is one of three kinds:

    llm      a prompt (or a saved template) with {column} placeholders, sent once per row through
             the batch engine; its answers become a column (or, with a JSON `schema`, one column
             per field)
    filter   keeps the rows where a yes/no LLM judgement says yes (a prompt or template), or
             where a registered Python predicate holds (`function`)
    python   a registered Python function, DataFrame -> DataFrame (`function`)

A Step holds data only: text, names, JSON values. Python steps and predicates name a function
the user registered in this process (llm_notebook.workflows.functions); a step never holds code,
so a workflow read from the log or from someone else's file cannot run code of its own. Like a
template, a step's options are generation options only (llm_notebook.options): nothing in a
step decides where a request goes or what it carries besides the prompt. These checks run
whenever a Step is built, whoever built it.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from typing import Any

from .. import options as call_options
from .. import placeholders
from ..templates.template import NAME_RE
from .errors import WorkflowError

KINDS = ("llm", "filter", "python")
NAME_RULE = ("names are 1–100 letters, digits, '_', '-' or '.', starting with a letter, digit or "
             "'_' (e.g. 'classify' or 'extract-v2')")
FUNCTION_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,99}")
_TEMPLATE_REF = re.compile(r"([A-Za-z0-9_][A-Za-z0-9_.-]{0,99})(@[1-9][0-9]{0,8})?")
MAX_COLUMN_CHARS = 200
# What each kind may set besides name and kind (the others stay empty).
_FIELDS = {
    "llm": {"prompt", "template", "system", "model", "options", "schema", "output"},
    "filter": {"prompt", "template", "system", "model", "options", "function"},
    "python": {"function"},
}
KEYS = ("name", "kind", "prompt", "template", "system", "model", "options", "schema", "output",
        "function")


def check_name(name: Any, what: str = "step") -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        shown = repr(name[:60]) + "…" if isinstance(name, str) and len(name) > 60 else repr(name)
        raise WorkflowError(f"{what} {NAME_RULE}; got {shown}")
    return name


@dataclasses.dataclass(frozen=True, kw_only=True)
class Step:
    """One step: `kind` says which of the other fields it uses (see the module's docstring)."""

    name: str
    kind: str
    prompt: str | None = None
    template: str | None = None           # a saved template: "name" (its latest) or "name@2"
    system: str | None = None
    model: str | None = None
    options: dict = dataclasses.field(default_factory=dict)
    schema: dict | None = None            # a JSON schema: the answers' fields become columns
    output: str | dict | None = None      # text: the column; with a schema: {field: column}
    function: str | None = None           # a registered Python function's name

    def __post_init__(self) -> None:
        name = check_name(self.name)
        where = f"step '{name}'"
        if self.kind not in KINDS:
            raise WorkflowError(f"{where}: kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        allowed = _FIELDS[self.kind]
        for field in KEYS[2:]:
            value = getattr(self, field)
            if field not in allowed and value not in (None, {}, ""):
                raise WorkflowError(f"{where}: a {self.kind} step has no '{field}' "
                                    f"(it takes {', '.join(sorted(allowed))})")
        sources = [f for f in ("prompt", "template", "function") if getattr(self, f)]
        needed = {"llm": ("prompt", "template"), "filter": ("prompt", "template", "function"),
                  "python": ("function",)}[self.kind]
        if len(sources) != 1:
            choices = " or ".join(f"'{f}'" for f in needed)
            raise WorkflowError(f"{where}: give exactly one of {choices}"
                                + (f" (got {', '.join(sources)})" if sources else ""))
        if self.function is not None and (self.system or self.model or self.options):
            raise WorkflowError(f"{where}: a Python predicate takes no system, model or options")
        fixed = {
            "prompt": _prompt_text(self.prompt, where),
            "template": _template_ref(self.template, where),
            "system": _text(self.system, "system", where, placeholders_ok=True),
            "model": _text(self.model, "model", where),
            "options": _clean_options(self.options, where),
            "schema": _clean_schema(self.schema, where),
            "function": _function_name(self.function, where),
        }
        fixed["output"] = _clean_output(self.output, fixed["schema"], where)
        for field, value in fixed.items():
            object.__setattr__(self, field, value)

    # -- what a step is made of ----------------------------------------------------------------

    @property
    def is_llm_call(self) -> bool:
        """Whether the step sends requests (an LLM step, or a filter judged by the model)."""
        return self.kind == "llm" or (self.kind == "filter" and self.function is None)

    def to_dict(self) -> dict:
        """The step as plain JSON values, without its empty fields (what is saved and exported)."""
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        for field in KEYS[2:]:
            value = getattr(self, field)
            if value not in (None, {}, ""):
                out[field] = json.loads(json.dumps(value)) if isinstance(value, dict) else value
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str = "a step") -> "Step":
        """A step from plain values (a saved version, a file, the builder), checked."""
        if not isinstance(data, Mapping):
            raise WorkflowError(f"{where} must be a mapping with 'name' and 'kind', "
                                f"not {type(data).__name__}")
        unknown = set(data) - set(KEYS)
        if unknown:
            raise WorkflowError(f"{where}: unknown key(s) {', '.join(map(repr, sorted(unknown, key=str)))};"
                                f" a step has {', '.join(KEYS)}")
        if "name" not in data or "kind" not in data:
            raise WorkflowError(f"{where}: needs 'name' and 'kind' ({', '.join(KINDS)})")
        values = {k: data[k] for k in KEYS if k in data}
        if values.get("options") is None:
            values["options"] = {}
        return cls(**values)

    def replace(self, **changes) -> "Step":
        return dataclasses.replace(self, **changes)

    def __repr__(self) -> str:
        what = self.prompt or (f"template {self.template}" if self.template else
                               f"function {self.function}")
        shown = what if len(what) <= 50 else what[:47] + "..."
        return f"<Step {self.name!r} ({self.kind}): {shown!r}>"


def _text(value: Any, what: str, where: str, *, placeholders_ok: bool = False) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise WorkflowError(f"{where}: {what} must be text, not {type(value).__name__}")
    if not value.strip():
        return None
    if placeholders_ok:
        _parse(value, what, where)
    return value if placeholders_ok else value.strip()


def _parse(text: str, what: str, where: str) -> placeholders.Template:
    try:
        return placeholders.parse(text)
    except placeholders.PlaceholderSyntaxError as exc:
        raise WorkflowError(f"{where}: {what} line {exc.line}, column {exc.column}: "
                            f"{exc.message}") from None


def _prompt_text(value: Any, where: str) -> str | None:
    text = _text(value, "prompt", where, placeholders_ok=True)
    if text is not None and not _parse(text, "prompt", where).variables:
        raise WorkflowError(f"{where}: the prompt has no {{column}} placeholders, so every row "
                            "would send the same request; name the column(s) to fill in, e.g. "
                            "'Classify: {text}'")
    return text


def _template_ref(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _TEMPLATE_REF.fullmatch(value.strip()):
        raise WorkflowError(f"{where}: template must be a saved template's name, like "
                            f"'summarize' (its latest version) or 'summarize@2'; got {value!r}")
    return value.strip()


def _function_name(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not FUNCTION_RE.fullmatch(value):
        raise WorkflowError(f"{where}: function must name a registered Python function, like "
                            f"'clean_text' (register it with llm_notebook.workflows.register); "
                            f"got {value!r}")
    return value


def _json_safe(value: Any, what: str, where: str) -> None:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise WorkflowError(f"{where}: {what} must be JSON values (text, numbers, true/false, "
                            f"lists, mappings): {exc}") from None


def _clean_options(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise WorkflowError(f"{where}: options must be a mapping like {{'max_tokens': 50}}, "
                            f"not {type(value).__name__}")
    out = {}
    for key, option in value.items():
        # A saved or imported workflow may come from someone else: generation options only.
        problem = call_options.untrusted_problem(key, option)
        if problem:
            raise WorkflowError(f"{where}: {problem.replace('a template or a notebook cell', 'a workflow')}")
        out[key] = option
    _json_safe(out, "options", where)
    return out


def _clean_schema(value: Any, where: str) -> dict | None:
    if value is None:
        return None
    if hasattr(value, "model_json_schema") and isinstance(value, type):
        value = value.model_json_schema()       # a pydantic model: saved as its JSON schema
    if not isinstance(value, Mapping):
        raise WorkflowError(f"{where}: schema must be a JSON schema (a mapping such as "
                            "{'type': 'object', 'properties': {...}}) or a pydantic model, not "
                            f"{type(value).__name__}")
    schema = dict(value)
    _json_safe(schema, "schema", where)
    from jsonschema import validators
    from jsonschema.exceptions import SchemaError

    try:
        validators.validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        raise WorkflowError(f"{where}: schema is not a valid JSON schema: {exc.message[:200]}") from None
    return json.loads(json.dumps(schema))


def _column(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_COLUMN_CHARS:
        raise WorkflowError(f"{where}: output column names are non-empty text of at most "
                            f"{MAX_COLUMN_CHARS} characters; got {value!r}")
    return value


def _clean_output(value: Any, schema: dict | None, where: str) -> str | dict | None:
    if value is None:
        return None
    if schema is None:
        if isinstance(value, Mapping):
            raise WorkflowError(f"{where}: without a schema the answers fill one column: give "
                                "output='column_name'")
        return _column(value, where)
    if not isinstance(value, Mapping):
        raise WorkflowError(f"{where}: with a schema each field becomes a column named after it;"
                            " rename them with output={'field': 'column'}")
    fields = schema_columns(schema)
    out = {}
    for field, column in value.items():
        if field not in fields:
            raise WorkflowError(f"{where}: output renames field {field!r}, which the schema does "
                                f"not have (its fields: {', '.join(fields)})")
        out[field] = _column(column, where)
    return out


def schema_columns(schema: dict) -> list[str]:
    """The columns a schema's answers fill (as df.llm.map lays them out)."""
    props = schema.get("properties")
    return list(props) if isinstance(props, dict) and props else ["value"]


def output_columns(step: Step) -> list[str]:
    """The columns an LLM step adds (after renaming), in order."""
    if step.kind != "llm":
        return []
    if step.schema is None:
        return [step.output or step.name]
    renames = step.output or {}
    return [renames.get(c, c) for c in schema_columns(step.schema)]
