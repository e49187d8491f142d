"""Static snapshots of the widgets (llm_notebook/widgets/snapshot.py) and how they are shown and
kept current (widgets/display.py): answers from the loopback server over real HTTP, displays
through IPython's real display machinery, captured."""

from __future__ import annotations

import re

import time

import pandas as pd
import pytest
from cells import ok
from IPython.core.displaypub import DisplayPublisher
from IPython.utils.capture import capture_output

from llm_notebook import checks, redact
from llm_notebook.widgets import snapshot as snap

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
HOSTILE = ('<script>window.__pwned=1</script> <img src=x onerror="window.__pwned=2"> '
           '[click](javascript:window.__pwned=3) ![beacon](http://192.0.2.1/b.png) **bold**')
# What must never be in a snapshot's HTML: markup that runs or loads something.
DANGEROUS = re.compile(r"<script|<img|<iframe|\son\w+\s*=|javascript:|href=\"(?!https?:|mailto:)|src=",
                       re.IGNORECASE)


def dangerous_markup(html: str) -> list[str]:
    # Escaped text (&lt;img ...) is what hostile input should become: strip it before looking.
    return DANGEROUS.findall(re.sub(r"&lt;.*?&gt;|\(javascript:[^)]*\)|\[[^\]]*javascript:[^\]]*\]",
                                    "", html))


def wait_for(predicate, timeout=10.0):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


# -- the snapshot of each widget ----------------------------------------------------------------


def turn(prompt, response, **extra):
    return {"id": 1, "prompt": prompt, "response": response, "model": "loop/m", "input_tokens": 3,
            "output_tokens": 4, "cost": 0.00012, "status": "ok", "duration_ms": 1234.5,
            "ttft_ms": 200.0, "ts": 1_700_000_000.0, "branch": {"index": 0, "ids": [1]}, **extra}


def test_chat_snapshot_shows_each_message_with_model_tokens_and_cost_but_no_timings():
    s = snap.chat_snapshot("ideas", "Be brief", [turn("Name a cat", "**Tom**"),
                                                 turn("Another", "Felix", status="interrupted",
                                                      branch={"index": 1, "ids": [1, 5]})])
    assert 'data-llmnb-snapshot="chat"' in s.html
    assert "Chat · ideas" in s.html and "System: Be brief" in s.html
    assert "<strong>Tom</strong>" in s.html and "Felix" in s.html
    assert "loop/m · 3+4 tokens · $0.0001" in s.html
    assert "interrupted · branch 2/2" in s.html
    # Deterministic: no durations, times or dates of the calls.
    assert "1.2 s" not in s.html and "2023" not in s.html and "1234" not in s.html
    assert s == snap.chat_snapshot("ideas", "Be brief", [turn("Name a cat", "**Tom**"),
                                                         turn("Another", "Felix", status="interrupted",
                                                              branch={"index": 1, "ids": [1, 5]})])
    assert s.text.startswith("Chat · ideas — 2 message(s)")
    assert "You: Name a cat\nAssistant: **Tom**" in s.text


def test_an_empty_chat_says_so_and_unnamed_chats_show_no_id():
    s = snap.chat_snapshot(None, None, [])
    assert "No messages yet." in s.html and s.text == "Chat — no messages yet"
    assert ">Chat<" in s.html


def test_hostile_llm_output_is_inert_in_every_snapshot():
    chat = snap.chat_snapshot("x", None, [turn(HOSTILE, HOSTILE)])
    template = snap.template_snapshot(
        {"name": "t", "version": 1, "prompt": HOSTILE, "system": HOSTILE, "variables": [],
         "message": HOSTILE}, ["loop/m"],
        {"results": [{"model": "loop/m", "ok": True, "text": HOSTILE},
                     {"model": "loop/<b>x</b>", "ok": False, "error": HOSTILE}]})
    others = [snap.picker_snapshot(HOSTILE, ""), snap.batch_snapshot(HOSTILE),
              snap.usage_snapshot({"totals": {"calls": 1}, "models": [[HOSTILE, 1, 0.5, 0]],
                                   "filters": {"model": HOSTILE}, "error": HOSTILE})]
    # The detector finds what the renderer must never let through.
    assert dangerous_markup('<img src=x onerror="y">') and dangerous_markup('<a href="javascript:y">')
    for s in [chat, template, *others]:
        assert dangerous_markup(s.html) == [], s.html
        assert "<b>x</b>" not in s.html
    # The markdown still renders, and the link stays text.
    assert "<strong>bold</strong>" in chat.html
    assert "[image: beacon — http://192.0.2.1/b.png]" in chat.html
    assert "[click](javascript:window.__pwned=3)" in chat.html


def test_keys_are_masked_in_every_part_of_a_snapshot():
    key = "sk-test-" + "k" * 30
    redact.register(key)
    s = snap.chat_snapshot("n", f"system {key}", [turn(f"my key is {key}", f"echo {key}")])
    assert key not in s.html and key not in s.text
    assert "[REDACTED]" in s.html and "[REDACTED]" in s.text


def test_a_long_chat_keeps_its_latest_messages_within_the_size_limit(monkeypatch):
    monkeypatch.setattr(snap, "MAX_HTML_CHARS", 20_000)
    turns = [turn(f"question {i}", f"answer {i} " + "x" * 2_000) for i in range(40)]
    s = snap.chat_snapshot("long", None, turns)
    assert len(s.html) < 25_000
    assert "answer 39" in s.html and "answer 0 " not in s.html
    assert re.search(r"\d+ earlier message\(s\) are not shown here", s.html)
    assert len(s.text) <= snap.MAX_TEXT_CHARS and "answer 39" in s.text
    assert "the latest shown" in s.text


def test_a_very_long_message_is_cut_with_a_note():
    s = snap.chat_snapshot("n", None, [turn("q", "y" * (snap.MAX_MESSAGE_CHARS + 500))])
    assert "500 more characters in the live widget" in s.html


def test_usage_snapshot_has_totals_and_cost_by_model_but_no_dates():
    summary = {"filters": {"since": "2025-01-01", "until": "", "model": "", "notebook": "a.ipynb",
                           "group_by": "model"},
               "totals": {"calls": 1234, "input_tokens": 5000, "output_tokens": 700, "cost": 0.5,
                          "errors": 2, "cached": 3, "unpriced": 1},
               "models": [["openai/gpt-4o-mini", 1000, 0.4, 0], ["loop/m", 234, 0.1, 1],
                          ["loop/free", 5, 0.0, 5]],
               "series": {"points": [[1_700_000_000, 3, 0.1, 0, 0]]}, "updated": 1_700_000_123.0}
    s = snap.usage_snapshot(summary)
    assert "1,234 calls · 5,000 input + 700 output tokens · $0.5000 · 2 errors · 3 cached" in s.html
    assert "1 unpriced" in s.html and "since: 2025-01-01" in s.html and "notebook: a.ipynb" in s.html
    assert "openai/gpt-4o-mini" in s.html and "$0.4000" in s.html
    assert "1700000" not in s.html and "2023" not in s.html
    assert "loop/m: 234 calls, $0.1000" in s.text
    assert "loop/free: 5 calls, price unknown" in s.text  # not "$0" for calls nobody priced


def test_template_and_picker_and_batch_snapshots():
    t = snap.template_snapshot({"name": "summarize", "version": 3, "prompt": "Sum up {text}",
                                "system": "Be short", "variables": ["text"], "message": "tighter"},
                               ["loop/a", "loop/b"],
                               {"results": [{"model": "loop/a", "ok": True, "text": "A *short* one",
                                             "input_tokens": 5, "output_tokens": 3, "cost": None},
                                            {"model": "loop/b", "ok": False, "error": "timed out"}]})
    assert "summarize v3" in t.html and "Sum up {text}" in t.html and "Be short" in t.html
    assert "variables: text" in t.html and "tighter" in t.html
    assert "Models: loop/a, loop/b" in t.html
    assert "A <em>short</em> one" in t.html and "Error: timed out" in t.html
    assert "loop/b: error: timed out" in t.text
    new = snap.template_snapshot(None, ["local/smollm2"], None)
    assert "new (not saved yet)" in new.html
    p = snap.picker_snapshot("loop/m", "loop/m")
    assert "<strong>loop/m</strong>" in p.html and "the session's default" in p.text
    b = snap.batch_snapshot("3/3 rows · $0.0000 · finished")
    assert b.text == "Batch run: 3/3 rows · $0.0000 · finished"


# -- the widgets' snapshots and their outputs ----------------------------------------------------


@pytest.fixture
def shell(ipshell, loopback, nb_session):
    nb_session.add_endpoint("loop", loopback.url)
    ipshell.user_ns["URL"] = loopback.url
    return ipshell


def outputs_of(cap):
    return [(o.update, o.transient.get("display_id"), o.data) for o in cap.outputs]


def test_a_chat_is_shown_with_its_snapshot_and_its_output_follows_each_answer(shell):
    ok(shell, "import llm_notebook\nchat = llm_notebook.Chat(model='loop/m', name='follow')")
    cap = ok(shell, "chat")
    (update, display_id, data), = outputs_of(cap)
    assert not update and display_id
    assert set(data) == {WIDGET_VIEW, "text/html", "text/plain"}
    assert data[WIDGET_VIEW]["model_id"] == shell.user_ns["chat"].model_id
    assert "No messages yet." in data["text/html"]

    cap = ok(shell, "r = chat.ask('Hi [[reply:Hello **there**]]')")
    (update, same_id, data), = outputs_of(cap)
    assert update and same_id == display_id
    assert WIDGET_VIEW in data  # the live widget stays the live widget
    assert "Hello <strong>there</strong>" in data["text/html"]
    assert "Assistant: Hello **there**" in data["text/plain"]
    assert shell.user_ns["chat"].snapshot == data["text/html"]

    # Nothing changed, nothing sent: a second display shows the same snapshot, updated together.
    cap = ok(shell, "display(chat)\nchat.flush_snapshot()")
    (update, again, data), = outputs_of(cap)
    assert not update and again == display_id and "there" in data["text/html"]


def test_the_front_end_gets_the_snapshot_a_moment_after_a_turn_it_sent(shell):
    from recorders import MessageRecorder

    ok(shell, "import llm_notebook\nchat = llm_notebook.Chat(model='loop/m')")
    chat = MessageRecorder().attach(shell.user_ns["chat"])
    with capture_output() as cap:
        chat._repr_mimebundle_()
        shell.user_ns["chat"]._ipython_display_()
        chat._handle_custom_msg({"type": "request", "id": "r1", "method": "send",
                                 "params": {"prompt": "Yo [[reply:ahoy]]"}}, [])
        assert wait_for(lambda: chat.recorder.response("r1"))
        assert wait_for(lambda: any(o.update for o in cap.outputs))
    update = [o for o in cap.outputs if o.update][-1]
    assert "ahoy" in update.data["text/html"] and "ahoy" in chat.snapshot
    assert chat.recorder.response("r1")["ok"]
    assert chat.recorder.response("ping") is None
    chat._handle_custom_msg({"type": "request", "id": "p", "method": "ping", "params": {}}, [])
    assert chat.recorder.response("p") == {"type": "response", "id": "p", "ok": True, "result": True}


def test_output_updates_wait_while_the_user_works_in_the_widget(shell, monkeypatch):
    """An update renders the view again, which would drop keys typed meanwhile: while the
    front-end reports the focus inside, updates wait; they go out once it leaves, or when an
    idle hold runs out."""
    from recorders import MessageRecorder

    from llm_notebook.widgets import display as display_module

    ok(shell, "import llm_notebook\nchat = llm_notebook.Chat(model='loop/m')")
    chat = MessageRecorder().attach(shell.user_ns["chat"])
    with capture_output() as cap:
        shell.user_ns["chat"]._ipython_display_()
        chat._handle_custom_msg({"type": "focus", "inside": True}, [])
        chat._handle_custom_msg({"type": "request", "id": "r1", "method": "send",
                                 "params": {"prompt": "Yo [[reply:ahoy]]"}}, [])
        assert wait_for(lambda: chat.recorder.response("r1"))
        assert wait_for(lambda: "ahoy" in chat.snapshot)   # the trait follows at once
        time.sleep(display_module.SETTLE_SECONDS * 4)
        chat.flush_snapshot()                              # a Python call's flush waits too
        assert not any(o.update for o in cap.outputs)
        chat._handle_custom_msg({"type": "focus", "inside": False}, [])
        assert wait_for(lambda: any(o.update for o in cap.outputs))
    update = [o for o in cap.outputs if o.update][-1]
    assert "ahoy" in update.data["text/html"]

    # A hold nobody renews (a page closed with the focus inside) runs out by itself.
    monkeypatch.setattr(display_module, "HOLD_SECONDS", 0.3)
    with capture_output() as cap:
        chat._handle_custom_msg({"type": "focus", "inside": True}, [])
        chat._handle_custom_msg({"type": "request", "id": "r2", "method": "send",
                                 "params": {"prompt": "Again [[reply:once more]]"}}, [])
        assert wait_for(lambda: chat.recorder.response("r2"))
        started = time.monotonic()
        assert wait_for(lambda: any(o.update for o in cap.outputs))
    assert "once more" in [o for o in cap.outputs if o.update][-1].data["text/html"]
    assert time.monotonic() - started < 5


def test_a_terminal_gets_the_transcript_once_and_no_updates(shell, monkeypatch):
    ok(shell, "import llm_notebook\nchat = llm_notebook.Chat(model='loop/m')")
    chat = shell.user_ns["chat"]
    printed = []
    monkeypatch.setattr(shell, "display_pub", DisplayPublisher(shell=shell))
    monkeypatch.setattr(DisplayPublisher, "publish",
                        lambda self, data, metadata=None, source=None, *, transient=None,
                        update=False, **kw: printed.append((update, data.get("text/plain"))))
    chat._ipython_display_()
    chat.ask("Hi [[reply:ahoy]]")
    assert printed == [(False, "Chat — no messages yet")]
    assert "ahoy" in chat.snapshot  # the trait still follows, for a front-end


def test_a_comparison_shows_its_answers_once_done(shell, loopback):
    loopback.configure(latency=0.3)  # shown while it runs, then updated
    ok(shell, "import llm_notebook\nfrom llm_notebook import checks")
    cap = ok(shell, "grid = llm_notebook.compare('Capital of {country}? [[reply:It is <b>{expected}</b>]]', "
                    "['loop/a', 'loop/b'], inputs=[{'country': 'France', 'expected': 'Paris'}, "
                    "{'country': 'Peru', 'expected': 'Lima'}], "
                    "checks=[checks.contains('Paris')])\ndisplay(grid)\n_ = grid.wait()")
    shown = outputs_of(cap)
    first, last = shown[0], shown[-1]
    assert not first[0] and last[0] and first[1] == last[1]
    assert "0 ok · 0 error(s) · 4 pending" in first[2]["text/html"]
    html = last[2]["text/html"]
    assert html.count("It is &lt;b&gt;Paris&lt;/b&gt;") == 2 and html.count("Lima") >= 2
    assert "4 ok · 0 error(s) · 0 pending · price unknown" in html
    assert html.count("✓ contains") == 2 and html.count("✗ contains") == 2
    grid = shell.user_ns["grid"]
    assert grid.id not in html and grid.id not in last[2]["text/plain"]
    assert dangerous_markup(html) == []
    assert "[country: Peru; expected: Lima | loop/b] It is <b>Lima</b>" in last[2]["text/plain"]

    cap = ok(shell, "grid.rate(0, thumb='up', score=0.9, comment='good one')")
    (update, display_id, data), = outputs_of(cap)
    assert update and display_id == first[1]
    assert "👍 score 0.90" in data["text/html"] and "good one" in data["text/html"]


def test_a_comparison_snapshot_has_a_cell_limit(shell, monkeypatch):
    monkeypatch.setattr(snap, "MAX_GRID_CELLS", 4)
    ok(shell, "import llm_notebook")
    cap = ok(shell, "grid = llm_notebook.compare('Say {input}', ['loop/a', 'loop/b'], "
                    "inputs=list('abcdef')).wait()\ngrid")
    (_, _, data), = outputs_of(cap)
    assert "8 more cell(s) are in the live grid" in data["text/html"]


def test_a_batch_run_output_ends_with_its_final_numbers(shell):
    shell.user_ns["df"] = pd.DataFrame({"city": ["Paris", "Lima", "Oslo"]})
    ok(shell, "import llm_notebook")
    cap = ok(shell, "out = df.llm.map('Country of {city}? [[reply:somewhere]]', model='loop/m', "
                    "progress='widget')")
    shown = outputs_of(cap)
    assert not shown[0][0] and "0/3 rows" in shown[0][2]["text/html"]
    update, display_id, data = shown[-1]
    assert update and display_id == shown[0][1]
    assert "3/3 rows" in data["text/html"] and "done" in data["text/plain"]
    assert "rows/s" not in data["text/html"] and "ETA" not in data["text/html"]


def test_a_usage_panel_follows_calls_once_they_settle(shell, monkeypatch):
    from llm_notebook.widgets import usage_panel

    monkeypatch.setattr(usage_panel, "SNAPSHOT_SETTLE", 0.05)
    ok(shell, "import llm_notebook\npanel = llm_notebook.UsagePanel()")
    with capture_output() as cap:
        shell.user_ns["panel"]._ipython_display_()
        ok(shell, "llm_notebook.session().ask('Hi', model='loop/m')")
        assert wait_for(lambda: any(o.update for o in cap.outputs))
    first, update = cap.outputs[0], [o for o in cap.outputs if o.update][-1]
    assert "0 calls" in first.data["text/html"]
    assert "1 calls" in update.data["text/html"] and "loop/m" in update.data["text/html"]


def test_picker_and_template_editor_snapshots_follow_their_state(shell, nb_session):
    from llm_notebook.widgets.picker import ModelPicker
    from llm_notebook.widgets.template_editor import TemplateEditor

    nb_session.templates.save("greet", "Hello {name}", system="Be kind")
    picker = ModelPicker(value="loop/m")
    assert "<strong>loop/m</strong>" in picker._repr_mimebundle_()[0]["text/html"]
    editor = TemplateEditor("greet", models=["loop/m"])
    html = editor._repr_mimebundle_()[0]["text/html"]
    assert "greet v1" in html and "Hello {name}" in html and "Be kind" in html
    assert editor.snapshot == html


def test_a_widget_whose_snapshot_fails_still_displays(shell, monkeypatch, caplog):
    ok(shell, "import llm_notebook\nchat = llm_notebook.Chat(model='loop/m')")
    chat = shell.user_ns["chat"]
    monkeypatch.setattr(type(chat), "_build_snapshot", lambda self: 1 / 0)
    data, _ = chat._repr_mimebundle_()
    assert WIDGET_VIEW in data and data["text/plain"] == ""
    assert "could not build the snapshot" in caplog.text
