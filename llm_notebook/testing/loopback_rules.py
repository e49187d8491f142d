"""The loopback server's deterministic answers that depend on what is asked: the judge model and
the embeddings. Standalone (stdlib only): the server runs as a plain file.

The judge (model `loopback-judge`) answers from the prompt by fixed rules, so tests know the
right answer to every semantic operator:

- *Instructions* are the system messages; *keywords* are the phrases they put in single quotes
  ('refund'). *Data* is the last user message, split into *items* by lines `### NAME` (the
  text before the first such line, if any, is an item too; no such line: one item).
- Asked for a JSON object (response_format json_schema, or json_object with a schema), it fills
  each property by its type:
  - boolean: true when some keyword appears in every item (a filter: the one item mentions one;
    a join: both items mention the same one);
  - a string with an `enum`: the first value (other than "other") found as a word in the data,
    else "other" if allowed, else the last value;
  - an array: the items' names (as integers when the enum says so), best first, at most
    `maxItems`: by how often the keywords occur in each, or with no keyword by the first
    number in each (higher is better); ties keep the items' order;
  - anything else: the value written as `name: value` in the data (numbers as such), left
    out when the data has none.
- Asked for plain text: the sum of every number in the items (an aggregation whose partial
  answers fold into the same total).

Embeddings: a hashed bag of words (each word adds ±1 to one of `DIMENSIONS` coordinates chosen by
its hash), normalised, so texts sharing words are near each other.
"""

from __future__ import annotations

import hashlib
import json
import math
import re

JUDGE_MODEL = "loopback-judge"
DIMENSIONS = 256

_KEYWORD = re.compile(r"(?<!\w)'([^'\n]+)'(?!\w)")
_HEADER = re.compile(r"^### (.*)$", re.M)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_WORD = re.compile(r"\w+")


def schema_of(body: dict) -> dict | None:
    """The JSON schema a chat request asks its answer to follow, if any."""
    fmt = body.get("response_format")
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
    elif fmt.get("type") == "json_object":
        schema = fmt.get("schema")
    else:
        return None
    return schema if isinstance(schema, dict) else None


def judge(instructions: str, data: str, schema: dict | None) -> str:
    """The judge's answer (see the module's docstring)."""
    keywords = [k.strip().lower() for k in _KEYWORD.findall(instructions) if k.strip()]
    items = split_items(data)
    props = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(props, dict):
        return _number(sum(float(n) for _, text in items for n in _NUMBER.findall(text)))
    answer = {}
    for name, spec in props.items():
        spec = spec if isinstance(spec, dict) else {}
        value = _fill(name, spec, keywords, items, data)
        if value is not _ABSENT:
            answer[name] = value
    return json.dumps(answer)


def split_items(data: str) -> list[tuple[str, str]]:
    """(name, text) of each item of the data."""
    headers = list(_HEADER.finditer(data))
    if not headers:
        return [("", data)]
    items = []
    before = data[:headers[0].start()]
    if before.strip():
        items.append(("", before))
    for i, match in enumerate(headers):
        end = headers[i + 1].start() if i + 1 < len(headers) else len(data)
        items.append((match.group(1).strip(), data[match.end():end]))
    return items


_ABSENT = object()


def _fill(name: str, spec: dict, keywords: list[str], items: list, data: str):
    kind = spec.get("type")
    if kind == "boolean":
        return any(all(_contains(text, k) for _, text in items) for k in keywords)
    if isinstance(spec.get("enum"), list) and kind in ("string", None):
        return _label(spec["enum"], data)
    if kind == "array":
        return _ranking(spec, keywords, items)
    return _written(name, kind, data)


def _contains(text: str, phrase: str) -> bool:
    return re.search(r"(?<!\w)" + re.escape(phrase) + r"(?!\w)", text, re.I) is not None


def _label(values: list, data: str):
    for value in values:
        if isinstance(value, str) and value.lower() != "other" and _contains(data, value.lower()):
            return value
    return "other" if "other" in values else values[-1]


def _ranking(spec: dict, keywords: list[str], items: list) -> list:
    named = [(i, name, text) for i, (name, text) in enumerate(items) if name]

    def score(entry):
        _, _, text = entry
        if keywords:
            return sum(len(re.findall(r"(?<!\w)" + re.escape(k) + r"(?!\w)", text, re.I))
                       for k in keywords)
        found = _NUMBER.search(text)
        return float(found.group()) if found else -math.inf

    ranked = sorted(named, key=lambda entry: (-score(entry), entry[0]))
    limit = spec.get("maxItems")
    if isinstance(limit, int):
        ranked = ranked[:limit]
    wants_ints = (spec.get("items") or {}).get("type") == "integer" or all(
        isinstance(v, int) for v in (spec.get("items") or {}).get("enum") or ["x"])
    return [int(name) if wants_ints and name.lstrip("-").isdigit() else name
            for _, name, _ in ranked]


def _written(name: str, kind, data: str):
    found = re.search(r"(?<!\w)" + re.escape(name) + r"\s*[:=]\s*([^\n,;]+)", data, re.I)
    if found is None:
        return _ABSENT
    raw = found.group(1).strip()
    if kind in ("integer", "number"):
        number = _NUMBER.search(raw)
        if number is None:
            return _ABSENT
        value = float(number.group())
        return int(value) if kind == "integer" else value
    return raw


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:g}"


def embedding(text: str, dimensions: int = DIMENSIONS) -> list[float]:
    """A hashed bag of words, normalised (a text without words: the first axis)."""
    vector = [0.0] * dimensions
    for word in _WORD.findall(text.lower()):
        digest = hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest()
        index = int.from_bytes(digest[:4], "little") % dimensions
        vector[index] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vector))
    if norm == 0:
        vector[0] = 1.0
        return vector
    return [v / norm for v in vector]


def word_count(text: str) -> int:
    return len(_WORD.findall(text))
