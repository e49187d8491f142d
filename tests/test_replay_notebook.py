"""A shared notebook re-runs with no key: the showcase notebook (`%%llm`, `s.ask`, a chat,
`df.llm.map`, `compare`, tests/browser/showcase.py) executed headless (nbclient) in record mode
against a loopback server; its folder copied elsewhere, the server stopped, no key, a fresh log:
executed again in replay mode, every cell runs and shows the same answers."""

from __future__ import annotations

import json
import re
import sqlite3

import nbformat
import pytest

from browser import showcase

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    work = tmp_path_factory.mktemp("travel")
    with pytest.MonkeyPatch.context() as monkeypatch:
        recorded, replayed, seen = showcase.record_and_replay(work, monkeypatch)
    return work, recorded, replayed, seen


def _calls(log: str) -> list[tuple]:
    with sqlite3.connect(log) as db:
        return db.execute("SELECT model, prompt, response, status, input_tokens, output_tokens, "
                          "replayed, cost FROM calls ORDER BY id").fetchall()


# What a cell shows beside its answers: footers and totals (costs, times, "replayed"), ids.
_NOT_ANSWERS = [re.compile(r"(?m)^.* · .*$"),                       # footers, run summaries
                re.compile(r"\b(cost|unpriced|duration_ms|ttft_ms|replayed)=[^,)]*"),  # Responses
                re.compile(r"\bid=\d+")]


def _shown(cell) -> list[str]:
    shown = []
    for output in cell.outputs:
        assert output.output_type != "error", output
        text = output.get("text") or output.get("data", {}).get("text/plain", "")
        for pattern in _NOT_ANSWERS:
            text = pattern.sub("…", text)
        shown.append(text)
    return shown


def test_every_cell_replays_the_same_answers_with_no_server_key_or_log(replayed):
    work, recorded, replayed_path, seen = replayed
    author = nbformat.read(str(recorded), as_version=4)
    colleague = nbformat.read(str(replayed_path), as_version=4)
    # The copy carried its recordings: one per request the server answered.
    recordings = (work / "colleague" / "llm-recordings.jsonl").read_text().splitlines()
    assert len(recordings) == seen["requests"] == 9
    assert all(json.loads(line)["answer"]["status"] == "ok" for line in recordings)
    # The same calls, with the same answers and token counts, in both logs; the colleague's
    # were replayed and cost nothing. (Compared as sets of rows: a batch's rows are logged in
    # the order they finish, which concurrency does not fix.)
    made = _calls(str(work / "author-log" / "llm-log.db"))
    again = _calls(str(work / "colleague-log" / "llm-log.db"))
    assert sorted(c[:6] for c in again) == sorted(c[:6] for c in made) and len(made) == 9
    assert {c[6:] for c in again} == {(1, 0.0)} and {c[6] for c in made} == {0}
    # Every cell ran (nbclient stops at an error) and shows the same answers.
    usage = next(i for i, c in enumerate(author.cells) if "UsagePanel" in c.source)
    for index, (a, b) in enumerate(zip(author.cells, colleague.cells)):
        assert b.execution_count is not None
        if index != usage:  # its totals are costs: replayed calls cost nothing
            assert _shown(b) == _shown(a), a.source
    for text in (showcase.EXPECTED["magic"], showcase.EXPECTED["ask"],
                 showcase.HOSTILE_ANSWER, *showcase.EXPECTED["grid_answers"]):
        assert any(text in "".join(_shown(c)) for c in colleague.cells), text
    plain = ["".join(o.get("data", {}).get("text/plain", "") for o in c.outputs)
             for c in colleague.cells]
    assert "9 calls · 70 input + 43 output tokens" in plain[usage]
    # The footers say the answers were replayed (the author's did not).
    assert " · replayed · " in "".join(plain) and " · replayed · " not in "".join(
        o.get("data", {}).get("text/plain", "") for c in author.cells for o in c.outputs)
