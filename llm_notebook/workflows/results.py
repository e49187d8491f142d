"""What finished steps produced, by step key: in this process, and in the log.

A step's result is kept as what it changed, not as the DataFrame it returned:

    {"columns": {field: [value, ...]}}   an LLM step: its answers, one per input row
    {"kept": [position, ...]}            a filter: the input rows it kept

Both are JSON and go to the log (`workflow_results`), so another kernel or a scheduled command
line run of the same workflow on the same data skips the step too. A Python step's result is a
DataFrame of anything the function made: it is kept in this process only (the log is a plain
file people share: pickled objects in it would run code when read, and JSON would quietly change
types), so a new process runs Python steps again; they cost no requests.
"""

from __future__ import annotations

import collections
import weakref

from . import store

MEMO_ENTRIES = 64           # results kept in memory per session (a few workflows' edits)
MAX_STORED_CHARS = 32_000_000   # a result larger than this as JSON stays in memory only

_memos: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _memo(session) -> "collections.OrderedDict":
    memo = _memos.get(session)
    if memo is None:
        memo = _memos[session] = collections.OrderedDict()
    return memo


def recall(session, key: str, *, persistent: bool):
    """The result kept under `key` (a dict, or a DataFrame copy), or None."""
    memo = _memo(session)
    if key in memo:
        memo.move_to_end(key)
        found = memo[key]
        return found.copy() if hasattr(found, "iloc") else found
    if not persistent:
        return None
    found = store.get_result(session.log, key)
    if found is not None:
        _remember(memo, key, found)
    return found


def keep(session, key: str, result, *, workflow: str, step: str, kind: str, rows: int) -> None:
    """Keep a step's result: in memory, and (a JSON result within MAX_STORED_CHARS) in the log."""
    _remember(_memo(session), key, result.copy() if hasattr(result, "iloc") else result)
    if isinstance(result, dict) and _size(result) <= MAX_STORED_CHARS:
        store.put_result(session.log, key, workflow=workflow, step=step, kind=kind, rows=rows,
                         data=result)


def forget(session) -> None:
    """Drop this process's memory of results (the log's stay)."""
    _memos.pop(session, None)


def _remember(memo, key: str, value) -> None:
    memo[key] = value
    memo.move_to_end(key)
    while len(memo) > MEMO_ENTRIES:
        memo.popitem(last=False)


def _size(result: dict) -> int:
    # A cheap bound: text lengths plus a little per value (the JSON is written only if it fits).
    total = 0
    for values in (result.get("columns") or {}).values():
        total += sum(len(v) + 8 if isinstance(v, str) else 32 for v in values)
    total += 12 * len(result.get("kept") or ())
    return total
