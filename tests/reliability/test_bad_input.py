"""Suite 12 — bad input.

Magics (in a real kernel), `df.llm.map` / `session.batch`, single calls, templates and config
traits fed malformed values: wrong types, NaN, empty, huge, binary, unknown names. Each must
get a clear one-line error (UsageError in a magic) or a per-row error, nothing logged may be
lost (every request the provider saw has its row), and the kernel must live on. The server
extension's endpoints are in server/test_bad_input_server.py.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest
from traitlets import TraitError

from llm_notebook.errors import LLMError

from .helpers import Kernel, read_log

SUITE = "12 bad input"
MODEL = "loop/loopback-model"
# What a clear error is: one of these types, one line, short, and not Python's own wording.
CLEAR_TYPES = (ValueError, TypeError, LookupError, LLMError, TraitError)
RAW_WORDING = ("not supported between instances", "object has no attribute", "Errno",
               "unhashable type", "list index out of range", "unable to open database",
               "Traceback")


class Trials:
    """Each input is counted on the test's `record` as it is judged: kept when it got a clear
    error (or worked, for inputs that should); what went wrong is kept for the assertion."""

    def __init__(self, record):
        self.record = record
        self.tried = 0
        self.problems: list[str] = []

    def judge(self, label: str, problem: str | None) -> None:
        self.tried += 1
        self.record.check(label, problem is None)
        if problem is not None:
            self.problems.append(problem)

    def error(self, label: str, fn, *types) -> BaseException | None:
        """`fn()` must raise a clear error (one of `types`, default CLEAR_TYPES)."""
        try:
            result = fn()
        except BaseException as exc:  # noqa: BLE001 - judged below
            message = str(exc)
            if not isinstance(exc, types or CLEAR_TYPES):
                self.judge(label, f"{label}: {type(exc).__name__}: {message[:150]}")
            elif not message.strip() or "\n" in message.strip() or len(message) > 700 \
                    or any(w in message for w in RAW_WORDING):
                self.judge(label, f"{label}: unclear {type(exc).__name__}: {message[:150]!r}")
            else:
                self.judge(label, None)
            return exc
        self.judge(label, f"{label}: accepted, returned {result!r:.120}")
        return None

    def works(self, label: str, fn, check=None):
        """`fn()` must work, and its result pass `check` (which returns a problem or None)."""
        try:
            result = fn()
        except BaseException as exc:  # noqa: BLE001
            self.judge(label, f"{label}: raised {type(exc).__name__}: {str(exc)[:150]}")
            return None
        self.judge(label, check(result) if check else None)
        return result


def test_batch_inputs_fail_clearly_or_per_row(loop_session, loopback, record):
    s = loop_session
    s.config.max_retries = 0
    t = Trials(record)
    df = pd.DataFrame({"t": ["a", "b"]})

    def run(**kw):
        return lambda: df.llm.map(kw.pop("prompt", "Say {t}"), model=kw.pop("model", MODEL),
                                  progress=False, **kw)

    # Whole-call mistakes: refused before anything is sent.
    t.error("prompt not a string", run(prompt=123))
    t.error("prompt empty", run(prompt=""))
    t.error("prompt without placeholders", run(prompt="hello"))
    t.error("unknown column", run(prompt="Say {nope}"))
    t.error("bad placeholder", run(prompt="Say {t"))
    t.error("binary prompt", run(prompt=b"Say {t}"))
    t.error("unknown model", run(model="nosuch/model"))
    t.error("model not a string", run(model=42))
    for name, values in (("concurrency", [0, -1, 1.5, "8", True, math.nan]),
                         ("rpm", [-1, 0, math.nan, "x", [60]]),
                         ("tpm", [-5, math.nan, "many"]),
                         ("budget", [-1, math.nan, "1$"]),
                         ("deadline", [0, -3, math.nan, "5"]),
                         ("timeout", [0, math.nan, "slow"]),
                         ("max_retries", [-1, 1.5, "3", math.nan]),
                         ("on_error", ["ignore", None, 3]),
                         ("schema", ["nonsense", 42, {"type": "nonsense"}])):
        for value in values:
            t.error(f"{name}={value!r}", run(**{name: value}))
    t.error("temperature NaN", run(temperature=math.nan))
    t.error("temperature infinite", run(temperature=math.inf))
    t.error("batch(None)", lambda: s.batch(None, model=MODEL, progress=False))
    t.error("batch('a string')", lambda: s.batch("one prompt", model=MODEL, progress=False))
    t.error("batch(42)", lambda: s.batch(42, model=MODEL, progress=False))

    # Bad cells fail their own row only; the others run.
    cells = ["fine", None, math.nan, pd.NA, "", "   \n\t", b"\xff\xfe bytes", "\ud800 lone",
             "x" * 1_000_000, np.float64("nan"), {"k": [1, 2]}, 12, math.inf, "\x00\x01 nul"]
    bad_rows = {1, 2, 3, 4, 5, 7, 8, 9}            # missing, empty, lone surrogate, huge

    def fail_their_own_rows(out) -> str | None:
        info = out.attrs["llm"]
        errors = s.job(info["job_id"]).errors()
        if set(errors.index) != bad_rows:
            return f"bad cells: errors on rows {sorted(errors.index)}, expected {sorted(bad_rows)}"
        if not all(isinstance(m, str) and m.startswith(f"row {i}:") and "\n" not in m
                   for i, m in errors["error"].items()):
            return f"bad cells: unclear row errors {list(errors['error'])[:3]}"
        if info["ok"] != len(cells) - len(bad_rows):
            return f"bad cells: {info['ok']} ok"
        return None

    t.works("bad cells", lambda: pd.DataFrame({"t": cells}).llm.map(
        "Say {t}", model=MODEL, progress=False), fail_their_own_rows)
    t.works("bad prompts in a list", lambda: s.batch(
        [None, 1, b"\xff", math.nan, "", "\ud800", {"a": 1}, "ok"], model=MODEL, progress=False),
        lambda result: None if [i for i, v in enumerate(result) if v is None] == [0, 3, 4, 5]
        else f"bad prompts in a list: {list(result)}")
    t.works("empty DataFrame", lambda: pd.DataFrame({"t": []}).llm.map("Say {t}", model=MODEL,
                                                                     progress=False))

    # Single calls.
    t.error("ask(bytes)", lambda: s.ask(b"hi", model=MODEL))
    t.error("ask(None)", lambda: s.ask(None, model=MODEL))
    t.error("ask('')", lambda: s.ask("  ", model=MODEL))
    t.error("ask temperature NaN", lambda: s.ask("hi", model=MODEL, temperature=math.nan))
    t.error("ask unknown model", lambda: s.ask("hi", model="nosuch-model-xyz"))
    t.error("alias with a slash", lambda: s.alias("a/b", MODEL))
    t.error("endpoint without scheme", lambda: s.add_endpoint("x", "localhost:1234"))
    t.works("ask with NUL bytes", lambda: s.ask("hi\x00there", model=MODEL))

    # Nothing logged is lost: every request the provider saw has its row.
    sent = loopback.stats()["requests"]
    logged = s.log.read("SELECT count(*) FROM calls WHERE cached = 0")[0][0]
    record.count(tried=sent, kept=min(sent, logged), what="requests the provider saw, logged")
    record.note(f"map/batch/ask: {t.tried} malformed inputs, {len(t.problems)} unclear or "
                f"accepted; {sent} requests sent, {logged} rows logged")
    assert logged == sent, f"{sent} requests sent, {logged} rows logged"
    assert t.problems == [], "\n".join(t.problems)


def test_templates_and_config_traits(loop_session, loopback, tmp_path, record):
    s = loop_session
    t = Trials(record)
    lib = s.templates
    for label, fn in (
            ("template name ''", lambda: lib.save("", "x")),
            ("template name with NUL", lambda: lib.save("a\x00b", "x")),
            ("template name 1000 chars", lambda: lib.save("n" * 1000, "x")),
            ("template name not a string", lambda: lib.save(7, "x")),
            ("template prompt bytes", lambda: lib.save("t", b"\xff")),
            ("template prompt None", lambda: lib.save("t", None)),
            ("template syntax", lambda: lib.save("t", "{unclosed")),
            ("template bad variable name", lambda: lib.save("t", "{1x}")),
            ("template options not a dict", lambda: lib.save("t", "x {a}", options="hot")),
            ("template defaults not a dict", lambda: lib.save("t", "x {a}", defaults=[1])),
            ("unknown template", lambda: lib.get("nosuch")),
            ("template version 0", lambda: (lib.save("v", "x {a}"), lib.get("v", 0))),
            ("template version 'two'", lambda: lib.get("v", "two")),
            ("render a missing variable", lambda: lib.get("v").render()),
            ("import a missing file", lambda: lib.import_file(tmp_path / "nope.yaml")),
            ("import a binary file", lambda: (tmp_path.joinpath("b.yaml").write_bytes(b"\xff\x00\xfe"),
                                              lib.import_file(tmp_path / "b.yaml"))),
    ):
        t.error(label, fn)
    t.works("huge template", lambda: lib.save("big", "{a} " + "y" * 1_000_000))
    t.works("render with binary-ish text", lambda: lib.get("v").render(a="\x00\xff"))

    config = s.config
    for name, values in (("timeout", [math.nan, -1, 0, "abc", None]),
                         ("deadline", [math.nan, 0, "soon"]),
                         ("max_retries", [-1, 1.5, "3"]),
                         ("budget_session", [math.nan, -0.5, "10"]),
                         ("budget_day", [math.nan, -1]),
                         ("cache", ["yes", 2]),
                         ("prices", ["cheap", 3]),
                         ("default_model", [42]),
                         ("log_path", [7])):
        for value in values:
            t.error(f"config.{name}={value!r}", lambda n=name, v=value: setattr(config, n, v))
    # Values a trait accepts but a call cannot use: the call says so.
    config.default_model = "nosuch-model-xyz"
    t.error("default_model unknown at call time", lambda: s.ask("hi"))
    config.default_model = ""
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    config.log_path = str(blocked / "log.db")
    t.error("log_path under a file", lambda: s.ask("hi", model=MODEL))
    config.log_path = str(tmp_path)          # a directory
    t.error("log_path is a directory", lambda: s.ask("hi", model=MODEL))
    config.log_path = str(tmp_path / "log-after.db")
    t.works("a good log_path works again", lambda: s.ask("hi", model=MODEL))

    record.note(f"templates + config traits: {t.tried} bad values, {len(t.problems)} unclear or "
                "accepted")
    assert t.problems == [], "\n".join(t.problems)


# -- magics in a real kernel -------------------------------------------------------------------

MAGIC_ERRORS = [
    ("unknown model", "%%llm nosuch/model\nhi"),
    ("empty cell", "%%llm loop/loopback-model\n   "),
    ("--max-tokens abc", "%%llm loop/loopback-model --max-tokens abc\nhi"),
    ("--max-tokens 0", "%%llm loop/loopback-model --max-tokens 0\nhi"),
    ("-T nan", "%%llm loop/loopback-model -T nan\nhi"),
    ("-T inf", "%%llm loop/loopback-model -T inf\nhi"),
    ("--option without =", "%%llm loop/loopback-model --option top_p\nhi"),
    ("--option =3", "%%llm loop/loopback-model --option =3\nhi"),
    ("--option NaN", "%%llm loop/loopback-model --option top_p=NaN\nhi"),
    ("--option api_key", "%%llm loop/loopback-model --option api_key=sk-abc\nhi"),
    ("-o 1bad", "%%llm loop/loopback-model -o 1bad\nhi"),
    ("-f yaml", "%%llm loop/loopback-model -f yaml\nhi"),
    ("unknown flag", "%%llm loop/loopback-model --frobnicate\nhi"),
    ("undefined {name}", "%%llm loop/loopback-model\nSay {undefined_variable_xyz}"),
    ("unclosed {", "%%llm loop/loopback-model\nSay {unclosed"),
    ("unclosed quote", "%%llm loop/loopback-model -s 'unclosed\nhi"),
    ("--var without -t", "%%llm loop/loopback-model --var a=1\nhi"),
    ("--chat and --new", "%%llm loop/loopback-model --chat a --new\nhi"),
    ("unknown template", "%llm -t nosuch_template"),
    ("huge prompt over the context window", "%%llm loop/loopback-model\n" + "word " * 200_000),
    ("provider refuses (400)", "%%llm loop/loopback-model\nplease refuse me"),
    ("unknown command", "%llm nosuchcommand"),
    ("history -n abc", "%llm history -n abc"),
    ("use unknown model", "%llm use nosuch/model"),
    ("-f json, not JSON", "%%llm loop/loopback-model -f json\nnot json at all"),
]
MAGIC_WORKS = [
    ("NUL and control characters", "%%llm loop/loopback-model\nhi \x00\x01\x7f there"),
    ("huge --max-tokens", "%%llm loop/loopback-model --max-tokens 99999999999\nhi"),
    ("bare %llm", "%llm"),
    ("--help", "%%llm --help\nignored"),
]
CONFIG_ERRORS = [
    ("%config timeout = -1", "%config LLMNotebook.timeout = -1"),
    ("%config timeout = 'abc'", "%config LLMNotebook.timeout = 'abc'"),
    ("%config deadline = nan", "%config LLMNotebook.deadline = float('nan')"),
    ("%config max_retries = 1.5", "%config LLMNotebook.max_retries = 1.5"),
]


@pytest.fixture(scope="module")
def magic_kernel(tmp_path_factory, loopback_server):
    path = tmp_path_factory.mktemp("magics") / "log.db"
    kernel = Kernel({"LLM_NOTEBOOK_LOG": str(path)})
    kernel.path = str(path)
    yield kernel
    kernel.close()


def test_magics_answer_bad_input_with_one_line(magic_kernel, loopback, record):
    loopback.configure(context_window=100_000)
    loopback.script([{"kind": "400", "match": "please refuse me", "times": 5}])
    k = magic_kernel
    setup = k.run(f"%load_ext llm_notebook\nimport llm_notebook\n"
                  f"llm_notebook.session().add_endpoint('loop', {loopback.url!r})\n"
                  "llm_notebook.session().config.max_retries = 0")
    assert setup.status == "ok", setup
    problems = []
    for label, cell in MAGIC_ERRORS + CONFIG_ERRORS:
        outcome = k.run(cell, timeout=120)
        said = "".join(outcome.stderr).strip()
        if cell.startswith("%config"):
            # IPython's %config reports a refused value as one logged line; the cell goes on.
            trait = cell.split(".")[1].split()[0]
            clear = said.startswith("ERROR:root:") and trait in said
        else:
            # A UsageError: the cell fails and IPython prints one line, no traceback.
            clear = outcome.status == "error" and outcome.error is None \
                and said.startswith("UsageError: ")
        if not record.check(label, clear and "\n" not in said
                            and not any(w in said for w in RAW_WORDING)):
            problems.append(f"{label}: status {outcome.status}, error {outcome.error and outcome.error[:2]}, "
                            f"said {said[:200]!r}")
    for label, cell in MAGIC_WORKS:
        outcome = k.run(cell, timeout=120)
        if not record.check(label, outcome.status == "ok"):
            problems.append(f"{label}: {outcome}")
    alive = k.run("print(sum(range(5)))")
    record.check("the kernel still answers", k.alive() and alive.text.strip() == "10")

    # Every request the provider saw has its row in the kernel's log.
    logged = read_log(k.path, "SELECT count(*) AS n FROM calls WHERE cached = 0")[0]["n"]
    sent = loopback.stats()["requests"]
    record.count(tried=sent, kept=min(sent, logged), what="requests the provider saw, logged")
    tried = len(MAGIC_ERRORS + CONFIG_ERRORS + MAGIC_WORKS)
    record.note(f"{tried} magic/%config inputs in a real kernel: {tried - len(problems)} answered "
                f"in one line or worked; {sent} requests sent, {logged} rows logged; kernel "
                f"{'alive' if k.alive() else 'dead'}")

    assert k.alive() and alive.text.strip() == "10", alive
    assert logged == sent > 0
    assert problems == [], "\n".join(problems)


# -- widgets: malformed requests from the front-end ---------------------------------------------

WIDGET_VALUES = [None, "", 0, -1, 10**30, math.nan, "x" * 200_000, "\x00\xff\ud800", [], {},
                 [1, 2], {"a": {"b": None}}, True]


def test_widgets_answer_every_malformed_request(loop_session, loopback, record):
    """Every request gets exactly one answer (ok, or an error of one line), nothing escapes to
    the kernel, and the widget still answers a good request afterwards."""
    import inspect
    import json
    import threading

    import llm_notebook

    loop_session.config.max_retries = 0
    sent: list[dict] = []
    lock = threading.Lock()

    def recorder(content, buffers=None):
        with lock:
            sent.append(json.loads(json.dumps(content)))   # what the comm could carry

    widgets = {
        "Chat": llm_notebook.Chat(model=MODEL),
        "ModelPicker": llm_notebook.ModelPicker(),
        "TemplateEditor": llm_notebook.TemplateEditor(models=[MODEL]),
        "UsagePanel": llm_notebook.UsagePanel(),
        "ComparisonGrid": llm_notebook.compare("Say {x}", [MODEL], inputs=[{"x": "hi"}]),
    }
    requests = 0
    expected: dict[str, str] = {}
    for name, widget in widgets.items():
        widget.send = recorder
        for content in (None, "text", 42, [], {"type": "request"}, {"type": "nonsense"},
                        {"type": "request.cancel", "id": 5}):
            widget._on_custom_msg(widget, content, [])          # no answer due, no crash
        for method, handler in sorted(widget._handlers.items()):
            params = [p for p in inspect.signature(handler).parameters.values()
                      if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
            attempts = [{"unknown_name": 1}, "not a dict", [1]]
            attempts += [{p.name: v} for p in params for v in WIDGET_VALUES]
            for params_value in attempts:
                requests += 1
                rid = f"{name}-{requests}"
                expected[rid] = f"{name}.{method}({str(params_value)[:60]})"
                widget._on_custom_msg(widget, {"type": "request", "id": rid, "method": method,
                                               "params": params_value}, [])
        requests += 1
        expected[f"{name}-unknown"] = f"{name}.nosuch"
        widget._on_custom_msg(widget, {"type": "request", "id": f"{name}-unknown",
                                       "method": "nosuch", "params": {}}, [])

    def answered():
        with lock:
            return {m["id"] for m in sent if m.get("type") == "response"}

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not set(expected) <= answered():
        time.sleep(0.1)
    with lock:
        responses = [m for m in sent if m.get("type") == "response"]
    by_id: dict[str, list] = {}
    for m in responses:
        by_id.setdefault(m["id"], []).append(m)
    problems = []
    for rid, label in expected.items():
        answers = by_id.get(rid, [])
        unclear = [m["error"][:120] for m in answers if not m["ok"] and (
            not m["error"].strip() or "\n" in m["error"] or len(m["error"]) > 500)]
        if not record.check(label, len(answers) == 1 and not unclear):
            problems.append(f"{label}: {len(answers)} answers" if len(answers) != 1
                            else f"{label}: unclear error {unclear[0]!r}")
    # Still alive: a good request to each widget is answered.
    chat_reply = widgets["Chat"].ask("still there?")
    record.check("the Chat widget answers a good request afterwards", chat_reply.status == "ok")
    record.note(f"widgets: {len(expected)} malformed front-end requests to {len(widgets)} widgets, "
                f"{len(expected) - len(problems)} answered once, clearly")
    for widget in widgets.values():
        widget.close()
    assert chat_reply.status == "ok"
    assert problems == [], "\n".join(problems[:30])
