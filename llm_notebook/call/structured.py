"""Structured output from servers as they are: json_schema, else json_object with the schema,
else the schema in the prompt.

OpenAI-compatible servers differ in what `response_format` they take. OpenAI takes
`{"type": "json_schema", "json_schema": {...}}`; llama.cpp's server refuses it (HTTP 500, "Input
should be 'text' or 'json_object'") but takes `{"type": "json_object", "schema": {...}}` and
constrains its grammar to the schema; others know only plain text. A call that asks for a
schema tries those forms in that order, steps down when the server refuses one, and the form
that worked is remembered per server (for this process), so a batch pays for the refusal once.
The reply is validated against the schema whichever form produced it (batch/schema.py).
"""

from __future__ import annotations

import json

from ..errors import BAD_REQUEST, SERVER, LLMError

JSON_SCHEMA, JSON_OBJECT, IN_PROMPT = 0, 1, 2
_FORMS = ("json_schema", "json_object with the schema", "the schema in the prompt")
# server -> the first form it accepted (or the last one left to try).
_working_form: dict[tuple, int] = {}


def _server(route) -> tuple:
    return (route.kind, route.base_url or route.provider, route.api_model)


def _schema_of(options: dict) -> dict | None:
    fmt = options.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if isinstance(schema, dict):
            return schema
    return None


def refuses_format(error: LLMError | None) -> bool:
    """Whether an error is a server refusing the response_format it was sent."""
    if error is None or error.kind not in (BAD_REQUEST, SERVER) or error.partial:
        return False
    text = error.message.lower()
    return "response_format" in text or "json_schema" in text or "json_object" in text


class Negotiation:
    """The form of one call's structured output request, and stepping down when refused."""

    @staticmethod
    def of(call) -> "Negotiation | None":
        """The negotiation of a call that asks for a JSON schema; None for any other call (the
        embedded model takes every form: llama.cpp turns the schema into its grammar)."""
        if call.route.kind == "local" or "response_format" not in call.options:
            return None
        schema = _schema_of(call.options)
        return Negotiation(call, schema) if schema is not None else None

    def __init__(self, call, schema: dict):
        self.call = call
        self.schema = schema
        self.server = _server(call.route)
        self.form = _working_form.get(self.server, JSON_SCHEMA)
        self.steps = 0

    def request(self) -> tuple[list[dict], dict]:
        """The messages and options to send in the current form."""
        call = self.call
        if self.form == JSON_SCHEMA:
            return call.messages, call.options
        options = dict(call.options)
        if self.form == JSON_OBJECT:
            options["response_format"] = {"type": "json_object", "schema": self.schema}
            return call.messages, options
        del options["response_format"]
        return with_instruction(call.messages, instruction(self.schema)), options

    def step_down(self, error: LLMError | None) -> bool:
        """After a refusal of the current form: move to the next one (True), if any is left."""
        if self.form >= IN_PROMPT or not refuses_format(error):
            return False
        self.form += 1
        self.steps += 1
        _working_form[self.server] = self.form
        return True

    def remember(self) -> None:
        _working_form[self.server] = self.form

    def describe(self) -> str:
        return _FORMS[self.form]


def instruction(schema: dict) -> str:
    """What a model without a schema mode is told instead."""
    props = schema.get("properties")
    if isinstance(props, dict) and props:
        fields = ", ".join(f"{name} ({(props[name] or {}).get('type', 'any')})" for name in props)
        return f"Reply with only a JSON object with these fields: {fields}."
    return "Reply with only JSON matching this JSON schema: " + json.dumps(schema)


def with_instruction(messages: list[dict], text: str) -> list[dict]:
    """`messages` with `text` added to the system message (or as a new first one)."""
    if messages and messages[0].get("role") == "system":
        first = dict(messages[0], content=f"{messages[0].get('content') or ''}\n\n{text}".strip())
        return [first, *messages[1:]]
    return [{"role": "system", "content": text}, *messages]
