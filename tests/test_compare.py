"""llm_notebook.compare(): cells through the batch engine over real HTTP (loopback server), checks
including an LLM judge, the cache, re-runs, ratings in the log, and the widget's messages."""

from __future__ import annotations

import json
import sqlite3
import time

import pandas as pd
import pytest

from llm_notebook import checks
from llm_notebook.comparison import ComparisonGrid, compare

COUNTRIES = [{"country": "France", "expected": "Paris"},
             {"country": "Japan", "expected": "Tokyo"},
             {"country": "Peru", "expected": "Lima"}]


def calls(log_path: str, where: str = "1", params=()) -> list[dict]:
    with sqlite3.connect(log_path) as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute(f"SELECT * FROM calls WHERE {where} ORDER BY id", params)]


def test_every_cell_runs_concurrently_and_fills_the_grid(loop_session, loopback, log_path):
    loopback.configure(latency=0.5)
    started = time.perf_counter()
    grid = compare(["Capital of {country}?", "Name the capital city of {country}."],
                   ["loop/a", "loop/b"], inputs=pd.DataFrame(COUNTRIES), max_tokens=30)
    assert isinstance(grid, ComparisonGrid)
    df = grid.to_pandas()
    elapsed = time.perf_counter() - started
    # 12 cells of 0.5 s each: one after another would take 6 s.
    assert elapsed < 3.0, elapsed
    assert loopback.stats()["max_in_flight"] > 1
    assert len(df) == 12 and set(df["status"]) == {"ok"}
    for column in ("prompt", "model", "country", "expected", "output", "tokens", "cost", "latency",
                   "rating", "score", "comment", "input_tokens", "output_tokens", "cached"):
        assert column in df.columns
    row = df[(df.model == "loop/b") & (df.country == "Japan")
             & (df.prompt == "Capital of {country}?")].iloc[0]
    assert row["output"] == "Echo: Capital of Japan?"
    assert row["prompt_text"] == "Capital of Japan?"
    assert row["tokens"] == row["input_tokens"] + row["output_tokens"] > 0
    assert 0.4 < row["latency"] < 3.0 and not row["cached"]
    # one logged call per cell, with the model each cell named
    logged = calls(log_path)
    assert len(logged) == 12
    assert sorted({c["model"] for c in logged}) == ["loop/a", "loop/b"]
    assert all(c["job_id"] for c in logged)  # sent by the batch engine


def test_checks_and_a_rubric_judged_by_a_loopback_model(loop_session, loopback, log_path):
    judge_pass = '[[reply:{"pass": true, "reason": "names the capital"}]]'
    grid = compare("Capital of {country}? [[reply:The capital is {expected}.]]", ["loop/a"],
                   inputs=COUNTRIES,
                   checks=[checks.contains("Paris"), {"regex": r"^The capital is \w+\.$"},
                           checks.equals(column="expected"),
                           checks.contains(column="expected"),
                           checks.rubric(f"Names the capital {judge_pass}", model="loop/judge"),
                           checks.rubric("Is in French [[reply:Perhaps it is.]]", model="loop/judge",
                                         name="french"),
                           lambda out: ("Tokyo" not in out, "no Tokyo")])
    df = grid.to_pandas().set_index("country")
    assert df.loc["France", "check:contains('Paris')"] == True
    assert df.loc["Japan", "check:contains('Paris')"] == False
    assert df["check:regex('^The capital is \\\\w+\\\\.$')"].all()
    assert not df["check:equals(column=expected)"].any()      # the output is a sentence
    assert df["check:contains(column=expected)"].all()
    rubric_col = [c for c in df.columns if c.startswith("check:rubric(")][0]
    assert df[rubric_col].all()
    assert not df["check:french"].any()
    assert "not the JSON asked for" in df.loc["France", "failed_checks"]
    assert df.loc["Japan", "check:custom"] == False
    assert df.loc["Japan", "failed_checks"].count(";") == 3  # Paris, equals, french, custom

    # the judge's calls are logged like any call, with the rubric and the output in them
    judged = [c for c in calls(log_path) if "Rubric:" in (c["prompt"] or "")]
    assert len(judged) == 6 and all(c["status"] == "ok" for c in judged)
    assert any("The capital is Lima." in c["prompt"] for c in judged)
    assert all(json.loads(c["options"])["temperature"] == 0 for c in judged)

    summary = grid.summary().iloc[0]
    assert summary["cells"] == 3 and summary["passed"] == 0 and summary["pass_rate"] == 0.0


def test_rerun_uses_the_cache_with_zero_new_requests(loop_session, loopback, log_path):
    loopback.configure(latency=0.2)
    spec = dict(prompts=["Capital of {country}?"], models=["loop/a", "loop/b"], inputs=COUNTRIES,
                checks=[checks.max_latency(5), checks.rubric(
                    'ok [[reply:{"pass": true, "reason": "fine"}]]', model="loop/judge")])
    first = compare(**spec).to_pandas()
    sent = loopback.stats()["requests"]
    # 6 cells; both models echo alike, so 3 distinct judge requests (one call each)
    assert sent == 6 + 3

    again = compare(**spec).to_pandas()
    assert loopback.stats()["requests"] == sent
    assert again["cached"].all()
    assert list(again["output"]) == list(first["output"])
    # a cached cell shows the call that made its answer: same latency, tokens and verdicts
    assert list(again["latency"]) == list(first["latency"])
    assert list(again["tokens"]) == list(first["tokens"])
    assert again["checks_passed"].all()

    grid = compare(**spec).wait()
    grid.rerun(failed_only=False).wait()      # everything again: still from the cache
    assert loopback.stats()["requests"] == sent
    grid.rerun(failed_only=False, cache=False).wait()
    assert loopback.stats()["requests"] == sent + 6 + 3


def test_rerun_failed_only_sends_just_the_failed_cells(loop_session, loopback):
    loopback.script([{"kind": "400"}, {"kind": "400"}])  # not retryable
    grid = compare("Say {country}", ["loop/a"], inputs=COUNTRIES, concurrency=1)
    df = grid.to_pandas()
    assert list(df["status"]) == ["error", "error", "ok"]
    assert df.loc[0, "error"] and "row 0" not in df.loc[0, "error"]
    assert grid.progress()["errors"] == 2
    before = loopback.stats()["requests"]
    grid.rerun(failed_only=True).wait()
    assert loopback.stats()["requests"] == before + 2
    assert list(grid.to_pandas()["status"]) == ["ok", "ok", "ok"]


def test_ratings_are_saved_and_found_by_a_new_grid(loop_session, loopback, log_path):
    spec = dict(prompts=["Capital of {country}?"], models=["loop/a", "loop/b"], inputs=COUNTRIES)
    grid = compare(**spec).wait()
    grid.rate(0, thumb="up", score=0.8, comment="  concise  ")
    grid.rate((2, "Capital of {country}?", "loop/b"), thumb="down")
    with pytest.raises(ValueError, match="score must be a number from 0 to 1"):
        grid.rate(1, score=1.5)
    with pytest.raises(ValueError, match="thumb must be"):
        grid.rate(1, thumb="sideways")
    with pytest.raises(IndexError):
        grid.rate(99, thumb="up")

    fresh = ComparisonGrid(**spec)   # not even run: the ratings come from the log
    df = fresh.to_pandas(wait=False)
    assert (df.loc[0, "rating"], df.loc[0, "score"], df.loc[0, "comment"]) == (1, 0.8, "concise")
    assert df.loc[5, "rating"] == -1
    assert df["rating"].notna().sum() == 2

    other = ComparisonGrid(prompts=spec["prompts"], models=["loop/c"], inputs=COUNTRIES)
    assert other.to_pandas(wait=False)["rating"].isna().all()

    grid.rate(0, thumb=None, score=None, comment="")   # cleared: the row is gone
    with sqlite3.connect(log_path) as db:
        rows = db.execute("SELECT thumb, model, output FROM ratings").fetchall()
    assert rows == [(-1, "loop/b", "Echo: Capital of Peru?")]


def test_whole_grid_mistakes_fail_at_once_with_a_fix(loop_session, loopback):
    with pytest.raises(Exception, match="nope"):
        compare("Hi {x}", ["nope/model"], inputs=[{"x": 1}])
    with pytest.raises(KeyError, match="did you mean 'country'"):
        compare("Capital of {contry}?", ["loop/a"], inputs=COUNTRIES)
    with pytest.raises(ValueError, match="no inputs were given; pass inputs="):
        compare("Capital of {country}?", ["loop/a"])
    with pytest.raises(ValueError, match="no {column} placeholders"):
        compare("Capital of France?", ["loop/a"], inputs=COUNTRIES)
    with pytest.raises(ValueError, match="prompts is empty"):
        compare([], ["loop/a"])
    with pytest.raises(ValueError, match="models must be a non-empty list"):
        compare("Hi", [])
    with pytest.raises(ValueError, match="inputs has no rows"):
        compare("Hi {x}", ["loop/a"], inputs=[])
    with pytest.raises(ValueError, match="a check dict names exactly one kind"):
        compare("Hi", ["loop/a"], checks=[{"containz": "x"}])
    with pytest.raises(ValueError, match="concurrency must be"):
        compare("Hi", ["loop/a"], concurrency=0)
    with pytest.raises(TypeError, match="compare\\(\\) takes models=, not model="):
        compare("Hi", models=["loop/a"], model="loop/b")
    assert loopback.stats()["requests"] == 0


def test_a_bad_input_row_fails_only_its_cells(loop_session, loopback):
    grid = compare("Say {input}", ["loop/a", "loop/b"], inputs=["one", None, "three"],
                   checks=[checks.contains("Echo")])
    df = grid.to_pandas()
    assert list(df["status"]) == ["ok", "ok", "error", "error", "ok", "ok"]
    assert df.loc[2, "error"] == "input column 'input' is missing (None/NaN); the cell was not sent"
    assert df.loc[2, "check:contains('Echo')"] == False
    assert loopback.stats()["requests"] == 4


def test_input_shapes_and_prompt_labels(loop_session, loopback):
    loop_session.templates.save("capital", "Capital of {country}? Answer in {n} words.",
                                defaults={"n": 3}, options={"max_tokens": 7})
    grid = compare({"short": "Capital: {country}", "tmpl": "capital"}, ["loop/a"],
                   inputs={"country": ["France", "Peru"]})
    df = grid.to_pandas()
    assert list(df["prompt"]) == ["short", "tmpl", "short", "tmpl"]
    assert df.loc[1, "prompt_text"] == "Capital of France? Answer in 3 words."
    # the template's options went with its calls: max_tokens=7 cut the echo
    assert len(df.loc[1, "output"].split()) == 7
    by_name = compare("capital", ["loop/a"], inputs=[{"country": "Chad"}]).to_pandas()
    assert by_name.loc[0, "prompt"] == "capital@1"
    single = compare("Just say hi", "loop/a").to_pandas()
    assert len(single) == 1 and single.loc[0, "output"] == "Echo: Just say hi"


def test_the_widget_state_and_requests(loop_session, loopback):
    grid = ComparisonGrid("Capital of {country}?", ["loop/a", "loop/b"], inputs=COUNTRIES,
                          checks=[checks.contains("Paris")])
    sent: list[dict] = []
    grid.send = lambda msg, buffers=None: sent.append(msg)
    assert grid.spec["models"] == ["loop/a", "loop/b"]
    assert grid.spec["columns"] == ["country", "expected"]
    assert grid.spec["inputs"][1] == ["Japan", "Tokyo"]
    assert grid.spec["checks"] == ["contains('Paris')"]
    grid.run().wait()
    updates = [m for m in sent if m.get("type") == "grid.update"]
    assert updates and updates[-1]["progress"]["done"] == 6 and not updates[-1]["progress"]["running"]
    streamed = {c["index"] for m in updates for c in m["cells"] if c["status"] == "ok"}
    assert streamed == set(range(6))
    assert all(m["seq"] > n["seq"] for n, m in zip(updates, updates[1:]))

    state = grid.state()
    assert [c["index"] for c in state["cells"]] == list(range(6))
    first = state["cells"][0]
    assert first["output"] == "Echo: Capital of France?" and first["checks"] == [[False, "missing 'Paris'"]]

    # requests as the front-end sends them
    sent.clear()
    grid._handle_request({"type": "request", "id": "r1", "method": "rate",
                          "params": {"index": 3, "thumb": 1, "comment": "nice"}})
    response = next(m for m in sent if m.get("type") == "response")
    assert response["ok"] and response["result"]["thumb"] == 1 and response["result"]["comment"] == "nice"
    assert any(m.get("type") == "grid.update" and m["cells"][0]["index"] == 3 for m in sent)
    sent.clear()
    grid._handle_request({"type": "request", "id": "r2", "method": "rate",
                          "params": {"index": 3, "score": 7}})
    response = next(m for m in sent if m.get("type") == "response")
    assert not response["ok"] and "score must be a number from 0 to 1" in response["error"]
    sent.clear()
    grid._handle_request({"type": "request", "id": "r3", "method": "export",
                          "params": {"format": "csv"}})
    response = next(m for m in sent if m.get("type") == "response")
    assert response["result"]["filename"] == f"comparison-{grid.id}.csv"
    assert response["result"]["content"].startswith("prompt,model,country,expected,")
    detail = grid.detail(0)
    assert detail["messages"] == [{"role": "user", "content": "Capital of France?"}]


def test_stop_leaves_unsent_cells_for_rerun(loop_session, loopback):
    loopback.configure(latency=0.6)
    grid = compare("Say {input}", ["loop/a"], inputs=list(range(6)), concurrency=1)
    time.sleep(0.3)
    grid.stop()
    df = grid.to_pandas()
    assert 1 <= (df["status"] == "ok").sum() < 6
    stopped = df[df["status"] == "error"]
    assert not stopped.empty and stopped["error"].str.contains("stopped").all()
    grid.rerun().wait()
    assert (grid.to_pandas()["status"] == "ok").all()


def test_recheck_with_new_checks_on_the_same_outputs(loop_session, loopback):
    grid = compare("Say {input}", ["loop/a"], inputs=["apple", "berry"],
                   checks=[checks.contains("apple")]).wait()
    assert list(grid.to_pandas()["checks_passed"]) == [True, False]
    before = loopback.stats()["requests"]
    grid.recheck(checks=[checks.contains("berry"), "is_json"]).wait()
    df = grid.to_pandas()
    assert list(df["check:contains('berry')"]) == [False, True]
    assert not df["check:is_json"].any()
    assert grid.spec["checks"] == ["contains('berry')", "is_json"]
    assert loopback.stats()["requests"] == before


def test_the_litellm_path_over_real_http(nb_session, loopback, log_path):
    key = "sk-loopback-compare-secret-0123456789"
    grid = compare("Capital of {country}?", ["openai/gpt-4o-mini"], inputs=COUNTRIES[:2],
                   api_base=loopback.url, api_key=key, max_tokens=20,
                   checks=[checks.max_cost(0.01), checks.max_cost(1e-12, name="tiny")])
    df = grid.to_pandas()
    assert list(df["status"]) == ["ok", "ok"], df["error"].tolist()
    assert df["cost"].gt(0).all()                   # priced from litellm's map
    assert df["check:max_cost($0.01)"].all() and not df["check:tiny"].any()
    assert loopback.stats()["requests"] == 2
    # the key is sent, never stored or shown
    with sqlite3.connect(log_path) as db:
        dump = "\n".join(db.iterdump())
    for text in (dump, grid.to_json(), grid.to_html(), df.to_csv(), json.dumps(grid.spec)):
        assert key not in text


def test_package_exports_are_lazy_and_stay_functions():
    import subprocess
    import sys

    code = ("import sys, llm_notebook as l\n"
            "assert 'llm_notebook.comparison' not in sys.modules\n"
            "f = l.compare\n"
            "import types, llm_notebook.comparison.grid\n"
            "assert isinstance(l.compare, types.FunctionType) and l.compare is f\n"
            "assert l.checks.contains('a').name == \"contains('a')\"\n"
            "from llm_notebook import compare, ComparisonGrid\n"
            "assert callable(compare) and ComparisonGrid.__name__ == 'ComparisonGrid'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_a_judge_that_cannot_answer_fails_its_check_with_the_reason(loop_session, loopback):
    loop_session.add_endpoint("dead", "http://127.0.0.1:9/v1")   # nothing listens on port 9
    loopback.configure(latency=0.3)
    grid = compare("Say {input}", ["loop/a"], inputs=["x"],
                   checks=[checks.rubric("polite", model="dead/judge", max_retries=0)])
    with pytest.raises(TimeoutError, match="still running"):
        grid.wait(timeout=0.05)
    df = grid.to_pandas()
    assert df.loc[0, "status"] == "ok" and df.loc[0, "check:rubric('polite')"] == False
    assert df.loc[0, "failed_checks"].startswith("rubric('polite'): the judge's call failed:")
    assert grid.progress()["judging"] == 0
