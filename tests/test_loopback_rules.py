"""The loopback judge's fixed rules (llm_notebook/testing/loopback_rules.py): the known answers
the semantic operators' tests rely on, and the embeddings' nearness."""

from __future__ import annotations

import json
import math

from llm_notebook.testing import loopback_rules as rules


def schema(**props) -> dict:
    return {"type": "object", "properties": props}


def test_schema_of_reads_both_json_modes():
    inner = schema(answer={"type": "boolean"})
    assert rules.schema_of({"response_format": {"type": "json_schema",
                                                "json_schema": {"schema": inner}}}) == inner
    assert rules.schema_of({"response_format": {"type": "json_object", "schema": inner}}) == inner
    assert rules.schema_of({"response_format": {"type": "text"}}) is None
    assert rules.schema_of({}) is None


def test_a_boolean_is_true_when_a_keyword_is_in_every_item():
    verdict = schema(answer={"type": "boolean"})
    assert json.loads(rules.judge("asks for a 'refund'", "I want a Refund", verdict)) == {"answer": True}
    assert json.loads(rules.judge("asks for a 'refund'", "refunded", verdict)) == {"answer": False}
    pair = "### left\nrefund me\n\n### right\nrefund policy"
    assert json.loads(rules.judge("both 'refund' or 'late'", pair, verdict))["answer"] is True
    apart = "### left\nrefund me\n\n### right\nlate parcel"
    assert json.loads(rules.judge("both 'refund' or 'late'", apart, verdict))["answer"] is False


def test_a_label_is_the_first_found_else_other():
    labels = schema(label={"type": "string", "enum": ["bug", "billing", "other"]})
    assert json.loads(rules.judge("", "a billing bug", labels)) == {"label": "bug"}
    assert json.loads(rules.judge("", "nothing", labels)) == {"label": "other"}
    no_other = schema(label={"enum": ["a", "b"]})
    assert json.loads(rules.judge("", "zzz", no_other)) == {"label": "b"}


def test_a_ranking_orders_items_by_keyword_count_or_first_number():
    best = schema(best={"type": "array", "items": {"type": "integer"}, "maxItems": 2})
    data = "### 0\nurgent\n\n### 1\nurgent urgent urgent\n\n### 2\nurgent urgent"
    assert json.loads(rules.judge("how 'urgent'", data, best)) == {"best": [1, 2]}
    numbers = "intro\n### a\nscore 3\n### b\nscore 9\n### c\nno number"
    names = schema(best={"type": "array", "items": {"type": "string"}})
    assert json.loads(rules.judge("", numbers, names)) == {"best": ["b", "a", "c"]}


def test_other_fields_are_read_as_written():
    fields = schema(order={"type": "integer"}, total={"type": "number"}, note={"type": "string"},
                    missing={"type": "string"}, bad={"type": "integer"})
    data = "order: 17, total = 30.5\nnote: fragile\nbad: none"
    assert json.loads(rules.judge("", data, fields)) == {"order": 17, "total": 30.5, "note": "fragile"}


def test_plain_text_is_the_sum_of_the_numbers():
    assert rules.judge("add up", "### 1\nprice 10\n### 2\nprice 2.5", None) == "12.5"
    assert rules.judge("add up", "3 and 4", None) == "7"


def test_embeddings_are_unit_vectors_nearer_when_words_are_shared():
    a, b, c = (rules.embedding(t) for t in ("refund my order", "refund please", "blue sky"))
    assert len(a) == rules.DIMENSIONS and math.isclose(sum(v * v for v in a), 1.0, rel_tol=1e-9)
    dot = lambda x, y: sum(p * q for p, q in zip(x, y))  # noqa: E731
    assert dot(a, b) > dot(a, c)
    assert rules.embedding("!!!", 8) == [1.0] + [0.0] * 7
    assert rules.word_count("two words") == 2
