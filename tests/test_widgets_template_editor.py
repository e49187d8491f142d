"""TemplateEditor's kernel side: its request handlers answered through the real message path
(`_on_custom_msg` → handler → response), runs streamed from the loopback server over real HTTP,
and the placeholder cases the front-end's grammar is tested against.

Run as a script to rewrite js/test/fixtures/placeholder_cases.json after changing the grammar:
    python tests/test_widgets_template_editor.py --write-cases
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CASES_FILE = ROOT / "js" / "test" / "fixtures" / "placeholder_cases.json"

# Texts whose Python answers the JS grammar (js/src/widgets/template_editor/grammar.ts) must
# reproduce: valid forms, every error kind, lines, non-ASCII names, astral characters.
CASE_TEXTS = [
    "Summarize {text} in {n} words.",
    "No placeholders at all.",
    "",
    "{a}{b}{a}",
    "Literal {{braces}} and {{{x}}}",
    'JSON: {{"k": {value}}}',
    "{In[3]} and {Out[-1]}",
    "{d['key']} {d[\"other key\"]}",
    "Hello {name",
    "Hello }",
    "line one\nline {two} and {three\n}",
    "{}",
    "{0}",
    "{ name}",
    "{name }",
    "{a.b}",
    "{a!r}",
    "{a:>10}",
    "{a()}",
    "{a[0][1]}",
    "{a[x]}",
    "{a['x}",
    "{a[0}",
    "{a[0]x}",
    "{a{b}",
    "{-x}",
    "{a-b}",
    "{café} {naïve_1} {名前}",
    "{_private} {x2}",
    "ok {a}\nbad {b.c} later {d}",
    "🙂 {x} 🙂 {y.z}",
    "tab {a\tb}",
    "{a\\b}",
    "{a'b}",
    "}} {{ }",
    "{{}}",
    "{{{}}}",
    "multi\n\n  {x}\n{",
    "{x}}",
]

# (text, values) → Python's render(values, missing="keep"): what the instant preview shows.
FILL_CASES = [
    ("Summarize {text} in {n} words.", {"text": "the article", "n": "30"}),
    ("Summarize {text} in {n} words.", {"text": "the article"}),
    ("Literal {{braces}} and {{{x}}}", {"x": "X"}),
    ("{w[0]}{w[-1]} {w[9]}", {"w": "word"}),
    ("🙂{e[1]}🙂", {"e": "a🙂b"}),
    ("{a}{b}{a}", {"a": "{b}", "b": "}}"}),
    ("", {}),
]


def _python_answer(text: str) -> dict:
    from llm_notebook import placeholders

    try:
        parsed = placeholders.parse(text)
    except placeholders.PlaceholderSyntaxError as exc:
        return {"text": text, "error": {"line": exc.line, "column": exc.column, "kind": exc.kind,
                                        "message": exc.message},
                "variables": None, "placeholders": None}
    return {"text": text, "error": None, "variables": parsed.variables,
            "placeholders": [{"name": p.name, "key": p.key, "source": p.source, "start": p.start,
                              "end": p.end, "line": p.line, "column": p.column}
                             for p in parsed.placeholders]}


def python_cases() -> dict:
    from llm_notebook import placeholders

    return {
        "parse": [_python_answer(t) for t in CASE_TEXTS],
        "fill": [{"text": t, "values": v,
                  "result": placeholders.parse(t).render(v, missing="keep")} for t, v in FILL_CASES],
    }


def test_js_grammar_cases_are_pythons_answers():
    # The vitest suite checks the JS grammar against this file; this checks the file against
    # Python, so a change on either side that makes them disagree fails one of the two.
    recorded = json.loads(CASES_FILE.read_text(encoding="utf-8"))
    assert recorded == python_cases(), (
        "js/test/fixtures/placeholder_cases.json is stale: rewrite it with "
        "`python tests/test_widgets_template_editor.py --write-cases`, then make the JS grammar pass")
    kinds = {c["error"]["kind"] for c in recorded["parse"] if c["error"]}
    assert kinds >= {"unmatched_open", "unmatched_close", "empty", "invalid_name", "positional",
                     "attribute", "conversion", "format_spec", "call", "subscript", "unexpected"}


# -- a widget with its messages captured ------------------------------------------------------


class Captured:
    """Stands in for the comm: records what the widget sends, answers `request` like the JS."""

    def __init__(self, widget):
        self.widget = widget
        self.messages: list[dict] = []
        self._cond = threading.Condition()
        widget.send = self._send  # instance attribute: StreamSender and responses use it

    def _send(self, content, buffers=None):
        # Through JSON, like the real comm: what cannot be serialized fails here, not in a browser.
        with self._cond:
            self.messages.append(json.loads(json.dumps(content)))
            self._cond.notify_all()

    def post(self, method: str, **params) -> str:
        request_id = uuid.uuid4().hex
        self.widget._on_custom_msg(self.widget, {"type": "request", "id": request_id,
                                                 "method": method, "params": params}, [])
        return request_id

    def response(self, request_id: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for m in self.messages:
                    if m.get("type") == "response" and m.get("id") == request_id:
                        return m
                left = deadline - time.monotonic()
                assert left > 0, f"no response to {request_id} within {timeout} s"
                self._cond.wait(left)

    def call(self, method: str, **params):
        reply = self.response(self.post(method, **params))
        assert reply["ok"], reply["error"]
        return reply["result"]

    def error(self, method: str, **params) -> str:
        reply = self.response(self.post(method, **params))
        assert not reply["ok"], f"{method} should have failed: {reply}"
        return reply["error"]

    def streams(self) -> dict[str, dict]:
        """Each stream by id: its start meta, delta texts in order, end text/meta or error."""
        out: dict[str, dict] = {}
        with self._cond:
            messages = list(self.messages)
        for m in messages:
            kind = m.get("type")
            deltas = m["messages"] if kind == "stream.batch" else [m] if kind == "stream.delta" else []
            if kind == "stream.start":
                out[m["id"]] = {"meta": m["meta"], "deltas": [], "seqs": [], "end": None, "error": None}
            for d in deltas:
                out[d["id"]]["deltas"].append(d["delta"])
                out[d["id"]]["seqs"].append(d["seq"])
            if kind == "stream.end":
                out[m["id"]]["end"] = m
            if kind == "stream.error":
                out[m["id"]]["error"] = m
        return out

    def delta_messages(self) -> list[dict]:
        return [m for m in self.messages if m.get("type") in ("stream.delta", "stream.batch")]


@pytest.fixture
def make_editor(nb_session):
    from llm_notebook.widgets.template_editor import TemplateEditor

    made = []

    def make(*args, **kwargs):
        w = TemplateEditor(*args, **kwargs)
        made.append(w)
        return w, Captured(w)

    yield make
    for w in made:
        w.close()


# -- load, variables, preview -------------------------------------------------------------------


def test_new_editor_loads_empty_with_default_models(make_editor, nb_session):
    w, cap = make_editor()
    reply = cap.call("load")
    assert reply["template"] is None and reply["versions"] == []
    assert reply["models"]["selected"] == list(dict.fromkeys([nb_session.default_model(),
                                                                "local/smollm2"]))
    assert w.name is None and w.version is None


def test_editor_opens_a_saved_template_and_its_versions(make_editor, nb_session):
    nb_session.templates.save("greet", "Hello {who}", defaults={"who": "world"}, tags=["demo"])
    nb_session.templates.save("greet", "Hello {who}!", defaults={"who": "world"},
                              model="loop/a", message="exclaim")
    w, cap = make_editor("greet")
    reply = cap.call("load")
    t = reply["template"]
    assert (t["name"], t["version"], t["prompt"], t["defaults"], t["tags"], t["message"]) == (
        "greet", 2, "Hello {who}!", {"who": "world"}, ["demo"], "exclaim")
    assert [v["version"] for v in reply["versions"]] == [2, 1]
    # The template's model comes first among the models to run on.
    assert reply["models"]["selected"] == ["loop/a", "local/smollm2"]
    assert (w.name, w.version) == ("greet", 2)

    older = cap.call("load", name="greet", version=1)
    assert older["template"]["prompt"] == "Hello {who}" and w.version == 1
    assert make_editor("greet@1")[0].template.prompt == "Hello {who}"


def test_unknown_template_fails_at_construction_naming_it(make_editor, nb_session):
    from llm_notebook.templates import TemplateNotFound

    nb_session.templates.save("summarize", "Summarize {text}")
    with pytest.raises(TemplateNotFound, match="did you mean 'summarize'"):
        make_editor("sumarize")


def test_variables_lists_prompt_then_system_with_positions(make_editor):
    _, cap = make_editor()
    reply = cap.call("variables", prompt="Hi {name},\n{d['k']} and {name}", system="Be {tone}")
    assert reply["error"] is None
    assert reply["variables"] == ["name", "d", "tone"]
    assert [(p["field"], p["source"], p["line"], p["column"]) for p in reply["placeholders"]] == [
        ("prompt", "name", 1, 4), ("prompt", "d['k']", 2, 1), ("prompt", "name", 2, 14),
        ("system", "tone", 1, 4)]


def test_syntax_error_is_reported_with_line_and_column(make_editor, nb_session):
    _, cap = make_editor()
    reply = cap.call("variables", prompt="ok {a}\nbad {b.c}")
    assert reply["error"] == {
        "field": "prompt", "line": 2, "column": 7, "kind": "attribute",
        "message": reply["error"]["message"],
        "text": "prompt line 2, column 7: " + reply["error"]["message"]}
    assert "attribute access" in reply["error"]["message"]

    system_error = cap.call("variables", prompt="fine", system="{x")["error"]
    assert (system_error["field"], system_error["line"], system_error["column"]) == ("system", 1, 1)

    # save and run refuse it with one line that says where; nothing is saved.
    error = cap.error("save", name="broken", prompt="Hello {name")
    assert error == ("template 'broken': prompt line 1, column 7: unmatched '{' — write '{{' "
                     "for a literal brace")
    assert "\n" not in error
    assert "broken" not in nb_session.templates
    run_error = cap.error("run", prompt="Hi {", models=["loop/a"])
    assert "prompt line 1, column 4" in run_error


def test_preview_fills_values_then_defaults_and_keeps_missing(make_editor):
    _, cap = make_editor()
    reply = cap.call("preview", prompt="Summarize {text} in {n} words, {{literally}}.",
                     system="You write for {audience}.", values={"text": "the memo"},
                     defaults={"n": 30})
    assert reply["prompt"] == "Summarize the memo in 30 words, {literally}."
    assert reply["system"] == "You write for {audience}."
    assert reply["missing"] == ["audience"]
    assert reply["error"] is None

    bad = cap.call("preview", prompt="{x['k']}", values={"x": "text"})
    assert bad["error"]["kind"] == "lookup" and "index it with an integer index" in bad["error"]["text"]


# -- run ----------------------------------------------------------------------------------------


def test_run_streams_two_loopback_models_side_by_side(make_editor, loop_session, loopback):
    loopback.configure(tokens_per_second=40)  # ~0.3 s per answer: several deltas each
    _, cap = make_editor(models=["loop/a", "loop/b"])
    started = time.monotonic()
    reply = cap.call("run", prompt="Describe {topic} in a few words please, {style}.",
                     values={"topic": "the sea"}, defaults={"style": "briefly"},
                     models=["loop/a", "loop/b"], run_id="run-1")
    elapsed = time.monotonic() - started

    expected = "Echo: Describe the sea in a few words please, briefly."
    assert reply["prompt"] == expected[len("Echo: "):]
    assert [(r["model"], r["index"], r["ok"], r["text"]) for r in reply["results"]] == [
        ("loop/a", 0, True, expected), ("loop/b", 1, True, expected)]
    assert all(r["output_tokens"] == len(expected.split()) for r in reply["results"])

    streams = cap.streams()
    assert len(streams) == 2
    by_model = {s["meta"]["model"]: s for s in streams.values()}
    for index, model in enumerate(["loop/a", "loop/b"]):
        s = by_model[model]
        assert s["meta"] == {"run": "run-1", "model": model, "index": index}
        assert s["end"]["text"] == expected and s["error"] is None
        # Deltas are a prefix of the final text (the last bit may ride in the snapshot only).
        assert expected.startswith("".join(s["deltas"]))
        assert s["seqs"] == list(range(len(s["seqs"])))   # in order, none lost
        assert len(s["deltas"]) >= 2                      # it really streamed
        assert s["end"]["meta"]["output_tokens"] == len(expected.split())
    # Both streams share the widget's rate: at most 20 delta messages a second, plus one.
    assert len(cap.delta_messages()) <= 20 * elapsed + 1
    assert any(m["type"] == "stream.batch" for m in cap.delta_messages()) or len(
        cap.delta_messages()) >= 2

    # Logged like any call, one row per model, through the session.
    rows = loop_session.log.history_rows(limit=10)
    assert sorted(r["model"] for r in rows) == ["loop/a", "loop/b"]
    assert {r["status"] for r in rows} == {"ok"}
    assert {r["id"] for r in rows} == {r["id"] for r in reply["results"]}
    assert loopback.stats()["by_model"] == {"a": 1, "b": 1}


def test_run_uses_the_cache_per_settings(make_editor, loop_session, loopback):
    loop_session.config.cache = True
    _, cap = make_editor()
    first = cap.call("run", prompt="Same {x}", values={"x": "question"}, models=["loop/a"])
    again = cap.call("run", prompt="Same {x}", values={"x": "question"}, models=["loop/a"])
    assert (first["results"][0]["cached"], again["results"][0]["cached"]) == (False, True)
    assert again["results"][0]["text"] == first["results"][0]["text"]
    assert loopback.stats()["by_model"] == {"a": 1}


def test_one_failing_model_fails_only_its_column(make_editor, loop_session, loopback):
    loop_session.config.max_retries = 0
    loopback.script([{"kind": "400", "times": 1}])
    _, cap = make_editor()
    reply = cap.call("run", prompt="Hello {x}", values={"x": "there"}, models=["loop/a", "loop/b"])
    outcomes = sorted(r["ok"] for r in reply["results"])
    assert outcomes == [False, True]
    failed = next(r for r in reply["results"] if not r["ok"])
    assert failed["error"] and "\n" not in failed["error"]
    errors = [s["error"] for s in cap.streams().values() if s["error"]]
    assert len(errors) == 1 and errors[0]["error"] == failed["error"]


def test_run_names_a_missing_variable_and_checks_models(make_editor, loop_session):
    _, cap = make_editor()
    error = cap.error("run", prompt="Write about {topic} for {reader}", values={"topic": "x"},
                      models=["loop/a"])
    assert "needs a value for variable 'reader'" in error
    assert "choose at least one model" in cap.error("run", prompt="Hi", models=[])
    assert "at most 6 models" in cap.error("run", prompt="Hi",
                                           models=[f"loop/m{i}" for i in range(7)])
    assert cap.streams() == {}  # nothing started


def test_stop_cancels_the_run_and_logs_it_interrupted(make_editor, loop_session, loopback):
    loopback.configure(tokens_per_second=5)
    _, cap = make_editor()
    request_id = cap.post("run", prompt="Count {n}: " + " ".join(["word"] * 40),
                          values={"n": "slowly"}, models=["loop/a"], run_id="r")
    deadline = time.monotonic() + 30
    while not any(s["deltas"] for s in cap.streams().values()):
        assert time.monotonic() < deadline, "no text streamed"
        time.sleep(0.05)
    cap.widget._on_custom_msg(cap.widget, {"type": "request.cancel", "id": request_id}, [])
    reply = cap.response(request_id)
    assert not reply["ok"] and "cancelled" in reply["error"]
    # The answer comes at once; the call's task ends on the runner's loop a moment later.
    deadline = time.monotonic() + 10
    while not (next(iter(cap.streams().values()))["error"]
               and loop_session.log.history_rows(limit=1)):
        assert time.monotonic() < deadline, "the run did not stop"
        time.sleep(0.05)
    (stream,) = cap.streams().values()
    assert stream["error"]["error"] == "Stopped." and stream["end"] is None
    row = loop_session.log.history_rows(limit=1)[0]
    assert row["status"] == "interrupted" and row["response"]


def test_run_through_litellm_and_no_key_reaches_the_widget(make_editor, nb_session, loopback):
    secret = "sk-test-" + uuid.uuid4().hex
    nb_session.add_endpoint("lit", loopback.url, api_key=secret, via="litellm")
    w, cap = make_editor(models=["lit/a"])
    reply = cap.call("run", prompt="Say {word}", values={"word": "hi"}, models=["lit/a"])
    assert reply["results"][0]["ok"], reply["results"][0]["error"]
    assert reply["results"][0]["text"] == "Echo: Say hi"
    assert loopback.requests()[-1]["auth_present"]
    everything = json.dumps(cap.messages) + json.dumps(w.get_state())
    assert secret not in everything


# -- save, history, diff ------------------------------------------------------------------------


def test_save_makes_version_2_then_history_and_diff(make_editor, nb_session):
    w, cap = make_editor()
    first = cap.call("save", name="brief", prompt="Summarize {text}.",
                     defaults={"text": "the memo", "gone": "dropped: no longer used"},
                     tags=["work"], message="first")
    assert first["template"]["version"] == 1
    assert first["template"]["defaults"] == {"text": "the memo"}
    assert (w.name, w.version) == ("brief", 1)

    second = cap.call("save", name="brief", prompt="Summarize {text} in {n} words.",
                      defaults={"n": 20}, tags=["work", "short"], message="word limit")
    t = second["template"]
    assert (t["version"], t["message"], t["tags"], t["defaults"]) == (
        2, "word limit", ["work", "short"], {"n": 20})
    assert [(v["version"], v["message"]) for v in second["versions"]] == [
        (2, "word limit"), (1, "first")]
    assert w.version == 2
    assert nb_session.templates.get("brief").prompt == "Summarize {text} in {n} words."

    history = cap.call("history")
    assert [v["version"] for v in history["versions"]] == [2, 1]

    diff = cap.call("diff")  # default: the latest against the one before
    assert (diff["v1"], diff["v2"]) == (1, 2)
    assert diff["text"] == nb_session.templates.diff("brief", 1, 2)
    lines = diff["text"].splitlines()
    assert "-  Summarize {text}." in lines
    assert "+  Summarize {text} in {n} words." in lines
    assert "+tags: work, short" in lines


def test_save_refuses_bad_names_and_keys_in_options(make_editor, nb_session):
    _, cap = make_editor()
    assert "template names are" in cap.error("save", name="no spaces", prompt="Hi")
    assert "option 'api_key' sets a credential" in cap.error(
        "save", name="t", prompt="Hi", options={"api_key": "sk-nope"})
    assert "save the template first" in cap.error("diff")
    assert len(nb_session.templates) == 0


def test_unknown_method_and_bad_params_get_one_line_answers(make_editor):
    _, cap = make_editor()
    assert "this widget handles" in cap.error("nope")
    assert "prompt must be text" in cap.error("variables", prompt=3)


def test_state_holds_name_version_models_and_the_snapshot_once_shown(make_editor, nb_session):
    nb_session.templates.save("t", "Secretly {x}", options={"temperature": 0.1})
    w, _ = make_editor("t")
    synced = {k for k in w.get_state() if not k.startswith("_")}
    assert synced - {"layout", "tabbable", "tooltip"} == {"name", "version", "models", "snapshot"}
    assert "Secretly" not in json.dumps(w.get_state(), default=str)
    # Shown, the snapshot holds the saved version for a front-end without kernel; never options.
    w._repr_mimebundle_()
    assert "Secretly {x}" in w.get_state()["snapshot"] and "temperature" not in w.snapshot


def test_models_trait_is_checked(make_editor):
    w, _ = make_editor(models=[" loop/a ", "loop/a", "loop/b"])
    assert w.models == ["loop/a", "loop/b"]
    w.models = []
    assert w.models == []
    with pytest.raises(ValueError, match="at most 6 models"):
        w.models = [f"m/{i}" for i in range(7)]
    with pytest.raises(ValueError, match="model names are text"):
        make_editor(models=["ok/a", " "])


def test_bundle_is_the_template_editor_front_end():
    from llm_notebook.widgets._base import STATIC_DIR
    from llm_notebook.widgets.template_editor import TemplateEditor

    assert TemplateEditor._bundle == "template_editor"
    if (STATIC_DIR / "template_editor.js").is_file():
        assert "llm-te" in str(TemplateEditor._esm)


if __name__ == "__main__":
    if sys.argv[1:] == ["--write-cases"]:
        sys.path.insert(0, str(ROOT))
        CASES_FILE.parent.mkdir(parents=True, exist_ok=True)
        CASES_FILE.write_text(json.dumps(python_cases(), indent=1, ensure_ascii=False) + "\n",
                              encoding="utf-8")
        print(f"wrote {CASES_FILE}")
    else:
        print(__doc__)
