"""The check CI runs on notebooks/ (llm_notebook/testing/notebooks.py): a notebook recorded and
saved replays to the same outputs, and a change in what it shows — one recorded answer — fails
the check, while times and random ids do not."""

from __future__ import annotations

import json

import nbformat
import pytest

from llm_notebook.testing import notebooks


def _cell(*outputs, source="x = 1"):
    cell = nbformat.v4.new_code_cell(source)
    cell.outputs = list(outputs)
    return cell


def _display(text, html=None):
    data = {"text/plain": text, "application/vnd.jupyter.widget-view+json": {"model_id": text[:3]}}
    if html is not None:
        data["text/html"] = html
    return nbformat.v4.new_output("display_data", data=data)


def test_only_times_dates_and_random_ids_are_sanitized():
    footer = "loop/m · 7+5 tokens · replayed · $0.0000 · 0.4 s"
    assert notebooks.sanitize(footer) == "loop/m · 7+5 tokens · replayed · $0.0000 · <time> s"
    assert notebooks.sanitize("job 3f28e2d15691, job 477006574960, chat 0b4d46be, at 0x7f3a2c") \
        == "job <id>, job <id>, chat <id>, at <address>"
    assert notebooks.sanitize("2026-12-02 00:48:09.160119772+00:00 and 1765432100.5") == \
        "<date> and <unix time>"
    assert notebooks.sanitize("'/tmp/llm-demo-k3j4h5g6/log.db' http://127.0.0.1:4311/v1") == \
        "'<tmp>/log.db' http://127.0.0.1:<port>/v1"
    # What an answer says is never sanitized: words, numbers, costs.
    for answer in ("The capital of France is Paris.", "12 apples", "$0.0115", "deadbeef",
                   "0.1234567891", "0.011500000000000002"):
        assert notebooks.sanitize(answer) == answer


def test_differences_name_the_cell_whose_answer_changed():
    saved = nbformat.v4.new_notebook(cells=[
        _cell(_display("Paris · 0.3 s", "<p>Paris</p>"), source="%%llm\nCapital of France?"),
        _cell(nbformat.v4.new_output("stream", name="stdout", text="a"),
              nbformat.v4.new_output("stream", name="stdout", text="b\n")),
    ])
    same = nbformat.v4.new_notebook(cells=[
        _cell(_display("Paris · 1.9 s", "<p>Paris</p>"), source="%%llm\nCapital of France?"),
        _cell(nbformat.v4.new_output("stream", name="stdout", text="ab\n")),
    ])
    assert notebooks.differences(saved, same) == []
    changed = nbformat.v4.new_notebook(cells=[
        _cell(_display("Lyon · 0.3 s", "<p>Lyon</p>"), source="%%llm\nCapital of France?"),
        same.cells[1]])
    [found] = notebooks.differences(saved, changed)
    assert found.startswith("cell 0 ('%%llm')") and "-Paris" in found and "+Lyon" in found
    errored = nbformat.v4.new_notebook(cells=[
        saved.cells[0], _cell(nbformat.v4.new_output("error", ename="NotRecorded", evalue="x",
                                                     traceback=[]))])
    assert "[error] NotRecorded: x" in notebooks.differences(saved, errored)[0]


@pytest.mark.slow
def test_a_recorded_notebook_checks_clean_until_an_answer_changes(tmp_path, loopback):
    path = tmp_path / "tour.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext llm_notebook\nimport llm_notebook\n"
                                  "s = llm_notebook.session()\n"
                                  f"s.add_endpoint('loop', {loopback.url!r})"),
        nbformat.v4.new_markdown_cell("Ask:"),
        nbformat.v4.new_code_cell("%%llm -m loop/m\nSay hi [[reply:Hello from the tour]]"),
        nbformat.v4.new_code_cell("s.ask('Again [[reply:Second answer]]', model='loop/m').text"),
    ]
    nbformat.write(nb, str(path))
    notebooks.record(path)
    assert loopback.stats()["requests"] == 2              # the record run; the replay sends none
    saved = nbformat.read(str(path), as_version=4)
    assert "Hello from the tour" in saved.cells[2].outputs[0].data["text/plain"]
    assert "replayed" in saved.cells[2].outputs[0].data["text/plain"]
    assert notebooks.main(["check", str(path)]) == 0 and loopback.stats()["requests"] == 2
    # Someone changes a recorded answer: the notebook no longer shows what it was saved with.
    recordings = tmp_path / "llm-recordings.jsonl"
    entries = [json.loads(line) for line in recordings.read_text().splitlines()]
    entries[1]["answer"]["text"] = "A different answer"
    recordings.write_text("".join(json.dumps(e) + "\n" for e in entries))
    [found] = notebooks.check(path)
    assert found.startswith("cell 3 (\"s.ask('Again")
    assert "-'Second answer'" in found and "+'A different answer'" in found
