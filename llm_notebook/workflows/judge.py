"""The LLM judgement of a filter step: one yes/no question per row, answered in JSON mode.

`judge` is the one seam between filter steps and the model. It asks the batch engine for an
answer constrained to {"answer": "yes" | "no"} (the embedded model's grammar allows nothing
else; servers with a JSON schema mode are held to it, others are checked against it), so a
chatty reply can neither keep nor drop a row by accident. When `df.llm.filter` exists (the
semantic operators), this function is where filter steps move onto it.
"""

from __future__ import annotations

from collections.abc import Callable

ANSWER_SCHEMA = {
    "title": "judgement",
    "type": "object",
    "properties": {"answer": {"type": "string", "enum": ["yes", "no"]}},
    "required": ["answer"],
}
INSTRUCTION = "Answer yes or no."


def judge(frame, condition, *, map_rows: Callable, **settings):
    """A boolean mask aligned to `frame`'s rows: True where the model answered yes, False for
    no, <NA> where the row got no valid answer (its error is in the batch job).

    condition: a prompt with {column} placeholders, or a saved Template (its model, options and
    defaults apply as in df.llm.map); the instruction to answer yes or no is added to its text.
    `map_rows(frame, prompt, **settings)` runs the batch (workflows/batching.py)."""
    import dataclasses

    import pandas as pd

    if isinstance(condition, str):
        prompt = f"{condition.rstrip()}\n\n{INSTRUCTION}"
    else:
        prompt = dataclasses.replace(condition, prompt=f"{condition.prompt.rstrip()}\n\n{INSTRUCTION}")
    answers = map_rows(frame, prompt, schema=ANSWER_SCHEMA, **settings)
    said = answers["answer"].astype("string").str.strip().str.lower()
    kept = pd.array([None if pd.isna(v) else v == "yes" for v in said], dtype="boolean")
    out = pd.Series(kept, index=frame.index, name="kept")
    out.attrs["llm"] = answers.attrs.get("llm", {})
    return out
