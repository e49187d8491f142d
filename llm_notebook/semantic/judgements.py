"""Per-row judgements: `filter` (a yes/no per row), `classify` (one label per row) and
`extract` (fields into columns). One call per row, on the batch engine; the answers are
constrained by a JSON schema (a boolean, an enum), never parsed out of free text."""

from __future__ import annotations

from ..errors import OperatorArgumentError
from . import plan, rows

FILTER_SYSTEM = ("Decide whether the condition below holds for the row the user sends. Answer "
                 "true or false.\nCondition: {condition}")
CLASSIFY_SYSTEM = ("Classify the row the user sends with exactly one of these labels: {labels}. "
                   "Answer {other} when none fits.\nTask: {instruction}")
EXTRACT_SYSTEM = "Extract the fields of the schema from the row the user sends."
OTHER = "other"

VERDICT_SCHEMA = {"type": "object", "properties": {"answer": {"type": "boolean"}},
                  "required": ["answer"], "additionalProperties": False}


def _condition(condition) -> str:
    if not isinstance(condition, str) or not condition.strip():
        raise OperatorArgumentError("a condition is a sentence the model judges for each row, e.g. "
                         "\"the review mentions 'refund'\"")
    return condition.strip()


def _filter_request(frame, condition, columns):
    system = FILTER_SYSTEM.format(condition=_condition(condition))
    return rows.texts(frame, columns), system


def filter_mask(session, frame, condition: str, *, columns=None, **settings):
    """A boolean Series on the frame's index: the model's yes/no per row (<NA> where a row's
    call failed). A clean function of (frame, condition, model, options), for other callers
    (e.g. a workflow's filter step); with background=True an OperatorJob whose result() is
    that Series."""
    prompts, system = _filter_request(frame, condition, columns)
    return plan.run_stage(session, prompts, system=system, schema=VERDICT_SCHEMA,
                          settings=settings, finish=lambda result: _mask(frame.index, result))


def _mask(index, result):
    import pandas as pd

    values = [None if v is None else bool(v.get("answer")) for v in result]
    mask = pd.Series(pd.array(values, dtype="boolean"), index=index)
    mask.attrs["llm"] = getattr(result, "info", {})
    return mask


def estimate_filter(session, frame, condition: str, *, columns=None, **settings):
    prompts, system = _filter_request(frame, condition, columns)
    first = plan.estimate_stage(session, prompts, system=system, schema=VERDICT_SCHEMA,
                                settings=settings)
    return plan.OperatorEstimate("filter", first.model, len(prompts), "one per row", first)


def _label_schema(labels) -> tuple[list[str], dict]:
    if isinstance(labels, str) or not labels:
        raise OperatorArgumentError("labels is a list of at least two strings, e.g. ['positive', 'negative']")
    names = [str(label) for label in labels]
    if len(set(names)) != len(names) or len(names) < 2:
        raise OperatorArgumentError(f"labels must be at least two different strings, got {names}")
    allowed = names + ([OTHER] if OTHER not in names else [])
    schema = {"type": "object", "properties": {"label": {"type": "string", "enum": allowed}},
              "required": ["label"], "additionalProperties": False}
    return allowed, schema


def _classify_request(frame, labels, instruction, columns):
    allowed, schema = _label_schema(labels)
    system = CLASSIFY_SYSTEM.format(labels=", ".join(str(label) for label in labels),
                                    other=OTHER, instruction=instruction or "classify the row")
    return rows.texts(frame, columns), system, schema, allowed


def classify(session, frame, labels, *, instruction: str | None = None, columns=None,
             **settings):
    """One of `labels` per row, or "other" when the model finds none fits (<NA> where the
    row's call failed), as a categorical Series on the frame's index (background=True: an
    OperatorJob whose result() is that Series)."""
    prompts, system, schema, allowed = _classify_request(frame, labels, instruction, columns)
    return plan.run_stage(session, prompts, system=system, schema=schema, settings=settings,
                          finish=lambda result: _labels(frame.index, result, allowed))


def _labels(index, result, allowed):
    import pandas as pd

    values = [None if v is None else v.get("label") for v in result]
    out = pd.Series(pd.Categorical(values, categories=allowed), index=index)
    out.attrs["llm"] = getattr(result, "info", {})
    return out


def estimate_classify(session, frame, labels, *, instruction: str | None = None, columns=None,
                      **settings):
    prompts, system, schema, _ = _classify_request(frame, labels, instruction, columns)
    first = plan.estimate_stage(session, prompts, system=system, schema=schema, settings=settings)
    return plan.OperatorEstimate("classify", first.model, len(prompts), "one per row", first)


def extract_prompt(frame, columns=None) -> str:
    """A map() prompt that shows the row's columns (`column: {column}` lines)."""
    names = list(frame.columns) if columns is None else (
        [columns] if isinstance(columns, str) else list(columns))
    bad = [c for c in names if not (isinstance(c, str) and c.isidentifier())]
    if bad:
        raise OperatorArgumentError(f"column {bad[0]!r} cannot be a {{placeholder}}; pass columns=[...] of "
                         "plainly named columns, or your own prompt=")
    return "\n".join(f"{name}: {{{name}}}" for name in names)
