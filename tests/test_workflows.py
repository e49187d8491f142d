"""Workflows over real HTTP to the loopback server: a 3-step pipeline (structured extract →
classify → yes/no filter) whose re-runs are counted in requests at the server; Python steps and
predicates; what fails before anything is sent; previews."""

from __future__ import annotations

import pandas as pd
import pytest

import llm_notebook
from llm_notebook.workflows import Step, Workflow, WorkflowError, results

MODEL = "loop/loopback-model"
TICKET = {"type": "object", "required": ["customer", "issue"],
          "properties": {"customer": {"type": "string"}, "issue": {"type": "string"}}}


def extracted(customer: str, issue: str) -> str:
    # The loopback answers a request with the text of a [[reply:...]] marker in its prompt.
    return f'[[reply:{{"customer": "{customer}", "issue": "{issue}"}}]]'


@pytest.fixture
def tickets() -> pd.DataFrame:
    return pd.DataFrame({
        "ticket": [f"I was charged twice {extracted('Ann', 'double charge')}",
                   f"The app crashes {extracted('Bob', 'crash on start')}",
                   f"Where is my parcel {extracted('Cy', 'late delivery')}",
                   f"Refund please {extracted('Dee', 'refund')}"],
        # What the judge answers for each row (the filter's prompt names this column).
        "verdict": ['[[reply:{"answer": "yes"}]]', '[[reply:{"answer": "no"}]]',
                    '[[reply:{"answer": "yes"}]]', '[[reply:{"answer": "no"}]]'],
    }, index=["t1", "t2", "t3", "t4"])


def triage() -> Workflow:
    return (Workflow("triage")
            .llm("Extract the customer and the issue: {ticket}", name="extract", schema=TICKET,
                 model=MODEL)
            .llm("Classify as billing, bug or shipping: {issue}", output="category", model=MODEL)
            .filter("Is a '{category}' ticket urgent? {verdict}", name="urgent", model=MODEL))


def sent(loopback) -> int:
    return loopback.stats()["requests"]


def calls_logged(session) -> int:
    return session.log.read("SELECT count(*) FROM calls")[0][0]


def statuses(out) -> list[str]:
    return [s["status"] for s in out.attrs["workflow"]["steps"]]


def test_three_steps_then_incremental_reruns_counted_at_the_server(loop_session, loopback, tickets):
    wf = triage()
    out = wf.run(tickets, progress=False)
    assert sent(loopback) == 12                      # 4 rows x 3 steps
    assert list(out.index) == ["t1", "t3"]           # the judge said yes to these
    assert list(out["customer"]) == ["Ann", "Cy"]
    assert list(out["issue"]) == ["double charge", "late delivery"]
    assert list(out["category"]) == ["Echo: Classify as billing, bug or shipping: double charge",
                                     "Echo: Classify as billing, bug or shipping: late delivery"]
    assert statuses(out) == ["ran", "ran", "ran"]
    info = out.attrs["workflow"]
    assert (info["rows_in"], info["rows_out"]) == (4, 2)
    assert [s["requests"] for s in info["steps"]] == [4, 4, 4]

    # Unchanged workflow, same data: nothing is sent, nothing is even logged.
    logged = calls_logged(loop_session)
    again = wf.run(tickets, progress=False)
    assert sent(loopback) == 12
    assert calls_logged(loop_session) == logged
    assert statuses(again) == ["skipped", "skipped", "skipped"]
    pd.testing.assert_frame_equal(again, out)

    # Step 2 edited: step 1 is skipped; step 2 runs, and step 3 (it reads step 2's column).
    wf.edit("category", prompt="One word for the kind of issue: {issue}")
    edited = wf.run(tickets, progress=False)
    assert sent(loopback) == 12 + 4 + 4
    assert statuses(edited) == ["skipped", "ran", "ran"]
    assert edited["category"].str.startswith("Echo: One word").all()

    # Step 3 edited: only step 3 runs.
    wf.edit("urgent", prompt="Should '{category}' be answered today? {verdict}")
    wf.run(tickets, progress=False)
    assert sent(loopback) == 20 + 4

    # One new row: each step runs, and sends only that row (the others come from the cache).
    more = pd.concat([tickets, pd.DataFrame(
        {"ticket": [f"Locked out {extracted('Eve', 'lost password')}"],
         "verdict": ['[[reply:{"answer": "yes"}]]']}, index=["t5"])])
    grown = wf.run(more, progress=False)
    assert sent(loopback) == 24 + 3
    assert statuses(grown) == ["ran", "ran", "ran"]
    assert [s["cached"] for s in grown.attrs["workflow"]["steps"]] == [4, 4, 4]
    assert list(grown.index) == ["t1", "t3", "t5"]

    # Another process (this one's memory dropped): the kept results are read from the log.
    results.forget(loop_session)
    logged = calls_logged(loop_session)
    from_log = wf.run(more, progress=False)
    assert sent(loopback) == 27
    assert calls_logged(loop_session) == logged
    assert statuses(from_log) == ["skipped", "skipped", "skipped"]
    pd.testing.assert_frame_equal(from_log, grown)


def test_a_step_with_failed_rows_is_not_kept_and_the_next_run_sends_only_those(
        loop_session, loopback, tickets):
    wf = triage()
    loopback.script([{"kind": "400", "match": "crashes"}])      # not retried: the row fails
    first = wf.run(tickets, progress=False)
    steps = first.attrs["workflow"]["steps"]
    assert steps[0]["errors"] == 1 and steps[0]["status"] == "ran"
    assert pd.isna(first["customer"]).sum() == 0          # t2 had no answer, so it got no verdict
    before = sent(loopback)
    second = wf.run(tickets, progress=False)
    # Step 1 runs again for its one failed row; the rows downstream that changed with it too.
    assert statuses(second)[0] == "ran"
    assert second.attrs["workflow"]["steps"][0]["requests"] == 1
    assert sent(loopback) == before + 1 + 1 + 1
    assert statuses(wf.run(tickets, progress=False)) == ["skipped", "skipped", "skipped"]


def test_python_steps_and_predicates_are_skipped_until_their_code_or_input_changes(
        loop_session, loopback, tickets):
    seen = []

    def shout(df):
        seen.append("shout")
        return df.assign(loud=df["ticket"].str.upper().str[:12])

    def billing(df):
        seen.append("billing")
        return df["category"].str.contains("charge")

    wf = (Workflow("py").llm("Classify: {ticket}", output="category", model=MODEL)
          .filter(billing).python(shout))
    out = wf.run(tickets, progress=False)
    assert list(out.index) == ["t1"] and out["loud"].iloc[0] == "I WAS CHARGE"
    assert seen == ["billing", "shout"]
    wf.run(tickets, progress=False)
    assert seen == ["billing", "shout"]          # both skipped

    def shout(df):  # noqa: F811  (the cell edited and run again)
        seen.append("shout")
        return df.assign(loud=df["ticket"].str.lower().str[:12])

    wf.edit("shout", function=llm_notebook.workflows.functions.adopt(shout))
    again = wf.run(tickets, progress=False)
    assert again["loud"].iloc[0] == "i was charge"
    assert seen == ["billing", "shout", "shout"]
    assert statuses(again) == ["skipped", "skipped", "ran"]


def test_a_global_value_a_function_reads_is_part_of_its_key(loop_session, loopback, tickets):
    namespace = {"LIMIT": 5}
    exec("def cut(df):\n    return df.assign(short=df['ticket'].str[:LIMIT])", namespace)
    wf = Workflow("g").python(namespace["cut"])
    assert wf.run(tickets, progress=False)["short"].iloc[0] == "I was"
    namespace["LIMIT"] = 2
    assert wf.run(tickets, progress=False)["short"].iloc[0] == "I "


def test_problems_fail_before_anything_is_sent(loop_session, loopback, tickets):
    wf = triage().edit("urgent", prompt="Urgent? {catgory} {verdict}")
    with pytest.raises(WorkflowError, match=r"step 'urgent' uses \{catgory\}.*did you mean 'category'"):
        wf.run(tickets, progress=False)
    with pytest.raises(WorkflowError, match="step 'extract'.*lab/"):
        triage().edit("extract", model="lab/x").run(tickets, progress=False)
    missing = Workflow("m").llm("Say {ticket}", model=MODEL).python("not_registered_anywhere")
    with pytest.raises(WorkflowError, match="'not_registered_anywhere', which is not registered"):
        missing.run(tickets, progress=False)
    with pytest.raises(WorkflowError, match="no template named 'nope'"):
        Workflow("t").llm(template="nope").run(tickets, progress=False)
    with pytest.raises(WorkflowError, match="over a DataFrame"):
        triage().run([1, 2], progress=False)
    with pytest.raises(WorkflowError, match="unknown setting.*temperature"):
        triage().run(tickets, temperature=0.5)
    with pytest.raises(WorkflowError, match="no steps"):
        Workflow("empty").run(tickets)
    assert sent(loopback) == 0


@pytest.mark.parametrize("bad, message", [
    ({"name": "x", "kind": "llm", "prompt": "Hi {a}", "options": {"api_base": "http://evil"}},
     "option 'api_base' sets where the request goes"),
    ({"name": "x", "kind": "llm", "prompt": "Hi {a}", "options": {"extra_headers": {"a": "b"}}},
     "extra_headers"),
    ({"name": "x", "kind": "llm", "prompt": "Hi {a}", "code": "import os"}, "unknown key"),
    ({"name": "x", "kind": "python", "function": "os.system('rm -rf ~')"}, "must name a registered"),
    ({"name": "x", "kind": "python", "function": "f", "prompt": "Hi {a}"}, "has no 'prompt'"),
    ({"name": "x", "kind": "llm", "prompt": "no placeholders"}, "no {column} placeholders"),
    ({"name": "x", "kind": "llm", "prompt": "Hi {a.__class__}"}, "attribute access"),
    ({"name": "x", "kind": "llm", "prompt": "Hi {a}", "schema": {"type": "nope"}}, "not a valid JSON schema"),
    ({"name": "x", "kind": "llm", "prompt": "Hi {a}", "output": {"f": "g"}}, "without a schema"),
    ({"name": "x", "kind": "filter", "prompt": "Hi {a}", "function": "f"}, "exactly one of"),
    ({"name": "x y", "kind": "llm", "prompt": "Hi {a}"}, "names are 1–100"),
    ({"name": "x", "kind": "shell", "prompt": "Hi {a}"}, "kind must be one of"),
])
def test_steps_are_checked_whoever_builds_them(bad, message):
    with pytest.raises(WorkflowError, match=message):
        Step.from_dict(bad)


def test_duplicate_step_names_and_lambdas(loop_session):
    wf = Workflow("d").llm("A {x}", output="a")
    with pytest.raises(WorkflowError, match="already has a step named 'a'"):
        wf.llm("B {x}", name="a")
    with pytest.raises(WorkflowError, match="a lambda has no name"):
        llm_notebook.workflows.register(lambda df: df)
    wf.filter(lambda df: df["x"] > 1, name="big")
    assert wf.step("big").function == "big"
    assert wf.llm("C {x}").names() == ["a", "big", "llm"]


def test_bad_predicate_results_are_one_line_errors(loop_session, tickets):
    def count(df):
        return len(df)

    with pytest.raises(WorkflowError, match="returned 1 values for 4 rows"):
        Workflow("p").filter(count).run(tickets, progress=False)

    def words(df):
        return df["ticket"].str[:3]

    with pytest.raises(WorkflowError, match="not True/False"):
        Workflow("p").filter(words).run(tickets, progress=False)

    def not_a_frame(df):
        return df["ticket"].tolist()

    with pytest.raises(WorkflowError, match="returned list, not a DataFrame"):
        Workflow("p").python(not_a_frame).run(tickets, progress=False)


def test_preview_shows_each_steps_columns_side_by_side(loop_session, loopback, tickets):
    preview = triage().preview(tickets, n=3)
    assert sent(loopback) == 9
    table = preview.table
    assert list(table.columns) == [("input", "ticket"), ("input", "verdict"),
                                   ("extract", "customer"), ("extract", "issue"),
                                   ("category", "category"), ("urgent", "kept")]
    assert list(table[("urgent", "kept")]) == [True, False, True]
    assert list(preview.result.index) == ["t1", "t3"]
    data = preview.to_dict()
    assert data["rows"][1]["dropped_at"] == "urgent" and data["rows"][0]["dropped_at"] is None
    assert "<table" in preview._repr_html_() and "&lt;" not in "".join(table.columns[0])
    # The full run reuses what the preview's rows got: only the fourth row is sent.
    triage().run(tickets, progress=False)
    assert sent(loopback) == 9 + 3


def test_a_template_step_reruns_when_the_template_gets_a_new_version(loop_session, loopback):
    tickets = pd.DataFrame({"ticket": ["charged twice", "app crashes", "parcel late", "refund"]})
    loop_session.templates.save("kind", "Kind of ticket: {ticket}", model=MODEL, options={"max_tokens": 40})
    wf = Workflow("tpl").llm(template="kind", output="kind")
    first = wf.run(tickets, progress=False)
    assert first["kind"].iloc[0].startswith("Echo: Kind of ticket:")
    wf.run(tickets, progress=False)
    assert sent(loopback) == 4
    loop_session.templates.save("kind", "Sort this ticket: {ticket}", model=MODEL)
    second = wf.run(tickets, progress=False)
    assert sent(loopback) == 8 and second["kind"].iloc[0].startswith("Echo: Sort this ticket:")
    # A pinned version stays put.
    pinned = Workflow("tpl1").llm(template="kind@1", output="kind").run(tickets, progress=False)
    assert sent(loopback) == 8 and pinned["kind"].equals(first["kind"])


def test_a_filter_judged_with_a_template_keeps_its_model_and_options(loop_session, loopback, tickets):
    loop_session.templates.save("urgent", "Urgent? {verdict}", model=MODEL,
                                options={"temperature": 0.1})
    out = Workflow("j").filter(template="urgent").run(tickets, progress=False)
    assert list(out.index) == ["t1", "t3"]
    body = loopback.requests()[-1]["body"]
    assert body["temperature"] == 0.1 and "Answer yes or no." in body["messages"][-1]["content"]
    assert body["response_format"]["json_schema"]["schema"]["properties"]["answer"]["enum"] == ["yes", "no"]


def test_cache_false_runs_every_step_again(loop_session, loopback, tickets):
    wf = Workflow("c").llm("Say {ticket}", output="said", model=MODEL)
    wf.run(tickets, progress=False)
    out = wf.run(tickets, progress=False, cache=False)
    assert sent(loopback) == 8 and statuses(out) == ["ran"]


def test_progress_lines_say_what_each_step_did(loop_session, loopback, tickets, capsys):
    wf = triage()
    wf.run(tickets, progress="text")
    wf.run(tickets, progress="text")
    err = capsys.readouterr().err
    assert "[1/3] extract (llm): 4 rows · 4 sent · 0 cached · 0 errors" in err
    assert "[3/3] urgent (filter): 4 rows → 2 kept · 4 sent" in err
    assert "[2/3] category (llm): unchanged, skipped · 4 rows" in err


def test_budget_covers_the_whole_run(loop_session, loopback, tickets):
    loop_session.config.prices = {MODEL: {"input": 1000.0, "output": 1000.0}}
    wf = (Workflow("b").llm("Say {ticket}", output="said", model=MODEL, max_tokens=5)
          .llm("Again {said}", output="again", model=MODEL, max_tokens=5))
    with pytest.warns(UserWarning, match="before crossing its budget"):
        out = wf.run(tickets, progress=False, budget=0.00001)
    assert sent(loopback) == 0 and out["said"].isna().all()
    out = wf.run(tickets, progress=False, budget=1.0)
    spent = [s["cost"] for s in out.attrs["workflow"]["steps"]]
    assert sent(loopback) == 8 and all(c > 0 for c in spent) and sum(spent) <= 1.0


def test_edit_takes_generation_options_as_llm_does_and_refuses_routing(loop_session):
    wf = Workflow("w").llm("Summarize {text}", name="s", model=MODEL, max_tokens=5)
    wf.edit("s", max_tokens=8, temperature=0)
    assert wf.step("s").options == {"max_tokens": 8, "temperature": 0}
    with pytest.raises(WorkflowError, match="option 'api_base' sets where the request goes"):
        wf.edit("s", api_base="http://elsewhere.example")
    assert wf.step("s").options == {"max_tokens": 8, "temperature": 0}


def test_registering_functions_and_loading_the_users_file(tmp_path):
    from llm_notebook.workflows import functions

    with pytest.raises(WorkflowError, match="a lambda has no name"):
        functions.register(lambda df: df)
    with pytest.raises(WorkflowError, match="takes a function"):
        functions.register(42)
    with pytest.raises(WorkflowError, match="name is letters, digits"):
        functions.register(lambda df: df, name="no spaces")
    (tmp_path / "mine.py").write_text(
        "import llm_notebook\n\n@llm_notebook.workflows.register(name='mine.clean', version='2')\n"
        "def clean(df):\n    return df\n")
    try:
        functions.load(str(tmp_path / "mine.py"))
        assert "mine.clean" in functions.registered()
        before = functions.fingerprint("mine.clean")
        functions.register(functions.lookup("mine.clean", "s"), name="mine.clean", version="3")
        assert functions.fingerprint("mine.clean") != before       # a new version, a new key
    finally:
        functions.unregister("mine.clean")
    with pytest.raises(WorkflowError, match="no Python file or importable module"):
        functions.load("no_such_module_for_workflows")
    functions.load("json")                                          # an importable module


def test_a_preview_shows_what_a_python_step_added_or_changed_and_escapes_model_output(
        loop_session, loopback):
    frame = pd.DataFrame({"text": ["<b>hi</b>", "yo"], "n": [1, 2]})

    def louder(df):
        return df.assign(text=df["text"].str.upper(), length=df["text"].str.len())

    wf = (Workflow("p").python(louder)
          .llm("[[reply:<script>x()</script> {text}]]", output="said", model=MODEL))
    preview = wf.preview(frame, n=2)
    assert list(preview.table.columns) == [("input", "text"), ("louder", "text"),
                                           ("louder", "length"), ("said", "said")]
    assert preview.outputs["louder"]["length"].tolist() == [9, 2]
    html = preview._repr_html_()
    assert "<script>" not in html and "&lt;script&gt;" in html
    text = repr(preview)
    assert text.startswith("louder (python): 2 rows\nsaid (llm): 2 rows · 2 sent")
    with pytest.raises(WorkflowError, match="whole number >= 1"):
        wf.preview(frame, n=0)
