"""Structured output for batch runs: a JSON schema dict or a pydantic model class.

The provider's JSON mode is asked for through `response_format` (json_schema; the embedded model
turns that into its JSON grammar). Every reply is then parsed and validated here: a reply that
is not valid JSON, or does not match the schema, is an error of that row only.
"""

from __future__ import annotations

import json
import re

INVALID_OUTPUT = "invalid_output"   # error kind of a row whose reply did not match the schema

_FENCE = re.compile(r"^\s*```[\w+-]*\s*\n(.*?)\n?```\s*$", re.S)
_NAME_CHARS = re.compile(r"[^a-zA-Z0-9_-]")


class OutputSchema:
    """What `schema=` asked for: how to request it, validate it and lay it out as columns."""

    def __init__(self, schema):
        self.model_class = None
        if isinstance(schema, dict):
            self.json_schema = schema
            self._validator = _json_schema_validator(schema)
        elif _is_pydantic_model(schema):
            self.model_class = schema
            self.json_schema = schema.model_json_schema()
            self._validator = None
        else:
            raise TypeError("schema must be a JSON schema dict (e.g. {'type': 'object', "
                            "'properties': {...}}) or a pydantic model class, not "
                            f"{type(schema).__name__}")
        title = self.json_schema.get("title") or "row"
        self.name = _NAME_CHARS.sub("_", str(title))[:64] or "row"
        props = self.json_schema.get("properties")
        self.columns = list(props) if isinstance(props, dict) and props else None

    def response_format(self) -> dict:
        return {"type": "json_schema", "json_schema": {"name": self.name, "schema": self.json_schema}}

    def hint(self) -> str:
        """An instruction for models without a real schema mode (the embedded model)."""
        if self.columns:
            props = self.json_schema["properties"]
            fields = ", ".join(f"{name} ({(props[name] or {}).get('type', 'any')})" for name in self.columns)
            return f"Reply with only a JSON object with these fields: {fields}."
        return "Reply with only JSON matching this schema: " + json.dumps(self.json_schema)

    def parse(self, text: str):
        """(value, None) for a valid reply, or (None, one-line reason) for an invalid one."""
        body = text.strip()
        fenced = _FENCE.match(body)
        if fenced:
            body = fenced.group(1)
        if self.model_class is not None:
            from pydantic import ValidationError

            try:
                return self.model_class.model_validate_json(body).model_dump(mode="json"), None
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first.get("loc", ())) or "reply"
                if first.get("type") == "json_invalid":
                    return None, f"the reply is not valid JSON: {_preview(text)}"
                return None, f"the reply does not match the schema at {where}: {first.get('msg')}"
        try:
            value = json.loads(body)
        except ValueError as exc:
            return None, f"the reply is not valid JSON ({exc.msg}): {_preview(text)}"
        errors = sorted(self._validator.iter_errors(value), key=lambda e: e.path)
        if errors:
            from jsonschema.exceptions import best_match

            err = best_match(errors)
            where = "$" + "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path)
            return None, f"the reply does not match the schema at {where}: {err.message[:200]}"
        return value, None

    def row_values(self, value) -> dict:
        """A parsed reply as the row of the result DataFrame."""
        if self.columns and isinstance(value, dict):
            return {c: value.get(c) for c in self.columns}
        return {"value": value}

    def result_columns(self) -> list[str]:
        return list(self.columns) if self.columns else ["value"]


def _preview(text: str) -> str:
    flat = " ".join(text.split())
    return repr(flat[:60] + ("…" if len(flat) > 60 else ""))


def _is_pydantic_model(obj) -> bool:
    return isinstance(obj, type) and hasattr(obj, "model_json_schema") and hasattr(obj, "model_validate_json")


def _json_schema_validator(schema: dict):
    from jsonschema import validators
    from jsonschema.exceptions import SchemaError

    cls = validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        raise ValueError(f"schema is not a valid JSON schema: {exc.message}") from None
    return cls(schema)
