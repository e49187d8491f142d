"""A step's key: a hash of what the step does and of the input it reads.

Two runs of a step with the same key give the same result, so the second one is skipped: an
unchanged workflow on the same data sends nothing and writes nothing. The key covers

- the step's definition (its prompt, or the content of the template it names, system, model as
  resolved in this kernel, options, schema, output names; a Python function's fingerprint),
- the input: the row index (which rows, in which order) and the values of the columns the step
  reads: an LLM step or judgement reads its placeholders' columns, a Python step or predicate
  the whole DataFrame.

So editing step 2 changes step 2's key, and step 3's whenever step 3 reads what step 2 wrote:
steps 2..n run again, steps before 2 do not.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

KEY_FORMAT = 1


def frame_fingerprint(frame, columns: Iterable | None = None) -> str:
    """A hash of the index and of `columns` (default: all), names, types and values."""
    chosen = list(frame.columns) if columns is None else list(columns)
    digest = hashlib.sha256()
    digest.update(json.dumps([len(frame), [str(c) for c in chosen]]).encode())
    digest.update(_values_hash(frame.index))
    for column in chosen:
        values = frame[column]
        digest.update(str(values.dtype).encode())
        digest.update(_values_hash(values))
    return digest.hexdigest()


def _values_hash(values) -> bytes:
    import pandas as pd

    digest = hashlib.sha256()
    try:
        digest.update(pd.util.hash_pandas_object(values, index=False).to_numpy().tobytes())
    except TypeError:       # unhashable cells: lists, dicts (structured answers)
        for value in values:
            digest.update(json.dumps(value, sort_keys=True, default=str).encode() + b"\0")
    if values.dtype == object:
        # pandas hashes object cells by their text: 1 and "1" would look the same.
        digest.update("\0".join(type(v).__name__ for v in values).encode())
    return digest.digest()


def step_key(definition: dict, input_fingerprint: str) -> str:
    payload = json.dumps({"format": KEY_FORMAT, "step": definition, "input": input_fingerprint},
                         sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()
