"""`%%llm` through IPython's InteractiveShell, against the loopback server over real HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from html.parser import HTMLParser

import pytest
from cells import ok, run
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from llm_notebook.magics.errors import ReplyInterrupted

HOSTILE = "Hi <script>alert(1)</script> and <img src=x onerror=alert(2)> ![t](http://evil/x.png) **bold**"


# -- helpers -----------------------------------------------------------------------------------



def usage_error(shell, cell: str) -> str:
    """Run a cell that must fail with a one-line UsageError; return the message."""
    result, cap = run(shell, cell)
    assert isinstance(result.error_in_exec, UsageError), (result.error_in_exec, cap.stdout, cap.stderr)
    shown = cap.stdout + cap.stderr
    assert "Traceback" not in shown and "File " not in shown
    message = str(result.error_in_exec)
    assert "\n" not in message
    assert f"UsageError: {message}" in shown
    return message


def final_output(cap) -> dict:
    """The last state of the cell's one display (after all updates)."""
    assert cap.outputs, "nothing was displayed"
    return cap._outputs[-1]


def updates(cap) -> list[dict]:
    return [o for o in cap._outputs if o["update"]]


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def tags_of(html: str) -> list[tuple[str, dict]]:
    parser = _Tags()
    parser.feed(html)
    return parser.tags


def assert_harmless(html: str) -> None:
    for tag, attrs in tags_of(html):
        assert tag not in ("script", "img", "iframe", "style", "object", "svg"), html
        for name, value in attrs.items():
            assert not name.startswith("on") and name != "src", html
            if name == "style":  # only our own styling: nothing that can load a resource
                assert "url(" not in value and "expression" not in value, html
            if name == "href":
                assert value.startswith(("http://", "https://", "mailto:")), html


@pytest.fixture
def ip(ipshell, loop_session):
    return ipshell


# -- loading -----------------------------------------------------------------------------------

def test_load_ext_is_fast_and_imports_neither_litellm_nor_pandas():
    code = textwrap.dedent("""
        import sys, time
        from IPython.core.interactiveshell import InteractiveShell
        shell = InteractiveShell.instance()
        started = time.perf_counter()
        shell.run_line_magic("load_ext", "llm_notebook")
        elapsed = time.perf_counter() - started
        print(elapsed, "litellm" in sys.modules, "pandas" in sys.modules,
              "llm" in shell.magics_manager.magics["cell"],
              "llm" in shell.magics_manager.magics["line"])
    """)
    import llm_notebook

    root = os.path.dirname(os.path.dirname(os.path.abspath(llm_notebook.__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    best = None
    for _ in range(2):  # best of two: the machine is shared and timings are noisy
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              cwd="/tmp", env=env, check=False)
        assert done.returncode == 0, done.stderr
        out = done.stdout.split()
        elapsed = float(out[0])
        best = elapsed if best is None else min(best, elapsed)
        assert out[1:] == ["False", "False", "True", "True"], out
    assert best <= 0.3, f"%load_ext llm_notebook took {best:.3f} s"


def test_config_sees_the_magic_and_session_settings(ip):
    names = {type(c).__name__ for c in ip.configurables}
    assert {"LLMMagics", "LLMNotebook"} <= names
    cap = ok(ip, "%config LLMMagics")
    assert "default_format" in cap.stdout and "max_updates_per_second" in cap.stdout
    ok(ip, "%config LLMMagics.default_format = 'text'")
    magics = next(c for c in ip.configurables if type(c).__name__ == "LLMMagics")
    assert magics.default_format == "text"
    cap = ok(ip, "%%llm loop/m\n[[reply:**not bold**]]")
    assert "**not bold**" in final_output(cap)["data"]["text/html"]  # shown as text, not rendered
    ok(ip, "%config LLMNotebook.cache = True")
    import llm_notebook

    assert llm_notebook.session().config.cache is True


def test_reload_and_unload(ip):
    ok(ip, "%reload_ext llm_notebook")
    magics = [c for c in ip.configurables if type(c).__name__ == "LLMMagics"]
    assert len(magics) == 1
    ip.run_line_magic("unload_ext", "llm_notebook")
    assert "llm" not in ip.magics_manager.magics["cell"]
    assert not any(type(c).__name__ == "LLMMagics" for c in ip.configurables)
    ip.run_line_magic("load_ext", "llm_notebook")
    assert "llm" in ip.magics_manager.magics["cell"]


# -- streaming and rendering -----------------------------------------------------------------------

def test_streams_then_renders_hostile_markdown_as_text(ip, loopback):
    loopback.configure(tokens_per_second=40)
    cap = ok(ip, f"%%llm loop/m\nSay it [[reply:{HOSTILE}]]")
    out = final_output(cap)
    html, plain = out["data"]["text/html"], out["data"]["text/plain"]
    assert_harmless(html)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(2)&gt;" in html
    assert "<strong>bold</strong>" in html                       # markdown is rendered
    assert "[image: t — http://evil/x.png]" in html               # images never load
    assert plain.startswith(HOSTILE)
    # Streaming: the display was updated with partial text before the final rendering.
    partial = [o for o in updates(cap)[:-1] if "llm-nb-streaming" in o["data"]["text/html"]]
    assert partial, "no partial update was shown"
    for o in partial:
        assert_harmless(o["data"]["text/html"])
        assert HOSTILE.startswith(o["data"]["text/plain"])
    # Each update shows more of the reply; the first came before the end (the last may hold all
    # of it, when the final token lands on an update tick).
    shown = [len(o["data"]["text/plain"]) for o in partial]
    assert shown == sorted(shown) and shown[0] < len(HOSTILE)
    # The footer and the metadata describe the logged call.
    response = ip.user_ns["_llm"]
    assert response.text == HOSTILE
    assert "llm-nb-footer" in html and response.footer() in html.replace("&#x27;", "'")
    meta = out["metadata"]["llm_notebook"]
    row = response and __import__("llm_notebook").session().log.call(response.id)
    assert meta["id"] == row["id"] and meta["model"] == "loop/m"
    assert meta["input_tokens"] == row["input_tokens"]
    assert meta["output_tokens"] == row["output_tokens"] == len(HOSTILE.split())
    assert "cost" in meta and meta["status"] == "ok"


def test_streaming_updates_are_throttled(ip, loopback):
    words = " ".join(f"w{i}" for i in range(300))
    loopback.configure(tokens_per_second=200, reply=words)  # 300 deltas over ~1.5 s
    started = time.monotonic()
    cap = ok(ip, "%%llm loop/m\ngo")
    elapsed = time.monotonic() - started
    partial = len(updates(cap)) - 1  # the last update is the final rendering
    assert ip.user_ns["_llm"].text == words
    assert 5 <= partial <= 20 * elapsed + 1, (partial, elapsed)

    magics = next(c for c in ip.configurables if type(c).__name__ == "LLMMagics")
    magics.max_updates_per_second = 4
    started = time.monotonic()
    cap = ok(ip, "%%llm loop/m --new\ngo")
    elapsed = time.monotonic() - started
    partial = len(updates(cap)) - 1
    assert 1 <= partial <= 4 * elapsed + 1, (partial, elapsed)


def test_rate_above_twenty_is_refused(ip):
    from traitlets import TraitError

    magics = next(c for c in ip.configurables if type(c).__name__ == "LLMMagics")
    run(ip, "%config LLMMagics.max_updates_per_second = 50")  # IPython logs the refusal
    assert magics.max_updates_per_second == 20
    with pytest.raises(TraitError, match="at most 20"):
        magics.max_updates_per_second = 0


def test_no_stream_shows_only_the_final_output(ip, loopback):
    cap = ok(ip, "%%llm loop/m --no-stream\n[[reply:all at once]]")
    assert loopback.requests()[-1]["body"].get("stream") in (None, False)
    assert len(updates(cap)) == 1
    assert "all at once" in final_output(cap)["data"]["text/html"]


def test_formats_text_and_html(ip):
    cap = ok(ip, "%%llm loop/m -f text\n[[reply:<b>x</b> **y**]]")
    html = final_output(cap)["data"]["text/html"]
    assert "&lt;b&gt;x&lt;/b&gt; **y**" in html and "<b>" not in html

    reply = ('<b>bold</b><script>alert(1)</script><img src=x onerror=alert(1)>'
             '<a href="javascript:alert(1)">j</a><a href="https://ok.example">ok</a>'
             '<p style="background:url(http://evil)" onclick="x()">p</p>')
    cap = ok(ip, f"%%llm loop/m -f html\n[[reply:{reply}]]")
    html = final_output(cap)["data"]["text/html"]
    assert_harmless(html)
    assert "<b>bold</b>" in html and 'href="https://ok.example"' in html
    assert "alert" not in html and "javascript" not in html and "evil" not in html


def test_format_code_puts_the_code_in_a_new_cell(ip, loopback):
    ip.rl_next_input = None
    reply = "Here you go:\n```python\nprint('<hi>')\nx = 1\n```\nEnjoy."
    loopback.configure(reply=reply)
    cap = ok(ip, "%%llm loop/m -f code -o code_resp\nwrite code")
    assert ip.rl_next_input == "print('<hi>')\nx = 1"
    html = final_output(cap)["data"]["text/html"]
    assert "print(&#x27;&lt;hi&gt;&#x27;)" in html and "Enjoy" not in html
    assert ip.user_ns["code_resp"] is ip.user_ns["_llm"]
    # The format asks the model for code only.
    system = loopback.requests()[-1]["body"]["messages"][0]
    assert system["role"] == "system" and "code" in system["content"]


def test_format_json_parses_and_assigns(ip, loopback):
    cap = ok(ip, '%%llm loop/m --raw -f json -o data\n[[reply:```json\n{"a": [1, 2], "b": "<x>"}\n```]]')
    assert ip.user_ns["data"] == {"a": [1, 2], "b": "<x>"}
    assert ip.user_ns["_llm"].text.startswith("```json")
    html = final_output(cap)["data"]["text/html"]
    assert "&quot;b&quot;: &quot;&lt;x&gt;&quot;" in html or '"b": "&lt;x&gt;"' in html
    message = usage_error(ip, "%%llm loop/m -f json -o data2\n[[reply:not json at all]]")
    assert "not valid JSON" in message
    assert "data2" not in ip.user_ns
    assert ip.user_ns["_llm"].text == "not json at all"


def test_out_assigns_the_response(ip):
    ok(ip, "%%llm loop/m -o answer\n[[reply:forty-two]]")
    assert ip.user_ns["answer"].text == "forty-two"
    assert ip.user_ns["answer"] is ip.user_ns["_llm"]
    assert "-o needs a Python variable name" in usage_error(ip, "%%llm loop/m -o 1x\nhi")


def test_options_reach_the_request(ip, loopback):
    ok(ip, "%%llm loop/m -s 'Be terse.' -T 0.3 --max-tokens 3 --option top_p=0.5 "
           "--option 'stop=[\"zz\"]' --option user=me\none two three four five [[reply:a b c d e]]")
    body = loopback.requests()[-1]["body"]
    assert body["temperature"] == 0.3 and body["max_tokens"] == 3
    assert body["top_p"] == 0.5 and body["stop"] == ["zz"] and body["user"] == "me"
    assert body["messages"][0] == {"role": "system", "content": "Be terse."}
    assert ip.user_ns["_llm"].text == "a b c"


def test_cache_flags(ip, loopback):
    ok(ip, "%%llm loop/m --cache --new\n[[reply:cached one]]")
    count = len(loopback.requests())
    ok(ip, "%%llm loop/m --cache --new\n[[reply:cached one]]")
    assert ip.user_ns["_llm"].cached and len(loopback.requests()) == count
    ok(ip, "%%llm loop/m --no-cache --new\n[[reply:cached one]]")
    assert not ip.user_ns["_llm"].cached and len(loopback.requests()) == count + 1


# -- conversations ------------------------------------------------------------------------------------

def test_consecutive_cells_continue_until_new(ip, loopback):
    ok(ip, "%%llm loop/m --new\nfirst [[reply:one]]")
    ok(ip, "%%llm loop/m\nsecond [[reply:two]]")
    messages = loopback.requests()[-1]["body"]["messages"]
    assert [m["content"] for m in messages] == ["first [[reply:one]]", "one", "second [[reply:two]]"]

    ok(ip, "%%llm loop/m --new\nthird [[reply:three]]")
    assert len(loopback.requests()[-1]["body"]["messages"]) == 1
    ok(ip, "%llm new")
    ok(ip, "%%llm loop/m\nfourth [[reply:four]]")
    assert len(loopback.requests()[-1]["body"]["messages"]) == 1


def test_new_with_system_keeps_it_for_the_conversation(ip, loopback):
    ok(ip, "%%llm loop/m --new -s 'You are a pirate.'\nhi [[reply:arr]]")
    ok(ip, "%%llm loop/m\nagain [[reply:arr arr]]")
    assert loopback.requests()[-1]["body"]["messages"][0] == {"role": "system", "content": "You are a pirate."}


def test_named_chat_is_separate_and_persists(ip, loopback):
    from llm_notebook.session import reset_session

    ok(ip, "%%llm loop/m --chat research\nA [[reply:a]]")
    ok(ip, "%%llm loop/m --new\nB [[reply:b]]")
    reset_session()  # a kernel restart: the named conversation is in the log
    llm_notebook = __import__("llm_notebook")
    llm_notebook.session().add_endpoint("loop", loopback.url)
    ok(ip, "%%llm loop/m --chat research\nC [[reply:c]]")
    contents = [m["content"] for m in loopback.requests()[-1]["body"]["messages"]]
    assert contents == ["A [[reply:a]]", "a", "C [[reply:c]]"]
    assert "use one of them" in usage_error(ip, "%%llm loop/m --chat x --new\nhi")


# -- interpolation -----------------------------------------------------------------------------------

def test_interpolates_variables_in_and_out(ip, loopback):
    ip.user_ns["topic"] = "<owls>"
    result = ip.run_cell("6 * 7", store_history=True)
    n = ip.execution_count - 1
    assert result.result == 42
    ok(ip, f"%%llm loop/m\nAbout {{topic}}: {{{{literal}}}} {{Out[{n}]}} / {{In[{n}]}}")
    sent = loopback.requests()[-1]["body"]["messages"][-1]["content"]
    assert sent == "About <owls>: {literal} 42 / 6 * 7"


def test_interpolates_a_dataframe_as_schema_and_sample(ip, loopback):
    pd = pytest.importorskip("pandas")
    ip.user_ns["sales"] = pd.DataFrame({"region": [f"r{i}|x" for i in range(500)],
                                        "amount": [i * 1.5 for i in range(500)]})
    ok(ip, "%%llm loop/m\nSummarize {sales}")
    sent = loopback.requests()[-1]["body"]["messages"][-1]["content"]
    assert "500 rows × 2 columns" in sent
    assert "region (object)" in sent or "region (str" in sent
    assert "amount (float64)" in sent
    assert "| region | amount |" in sent and "| r0\\|x | 0.0 |" in sent
    assert "| r19\\|x |" in sent and "r20" not in sent        # ≤ 20 rows
    assert len(sent) <= 4000 + len("Summarize ")

    magics = next(c for c in ip.configurables if type(c).__name__ == "LLMMagics")
    magics.dataframe_chars = 300
    ok(ip, "%%llm loop/m\n{sales}")
    sent = loopback.requests()[-1]["body"]["messages"][-1]["content"]
    assert len(sent) <= 300 and "First " in sent


def test_unknown_variable_names_it_and_says_how_to_escape(ip):
    ip.user_ns["topic"] = "x"
    message = usage_error(ip, "%%llm loop/m\nTell me about {topik}")
    assert "'topik'" in message and "did you mean 'topic'" in message and "{{" in message
    message = usage_error(ip, "%%llm loop/m\ndef f(): return {'a': 1}")
    assert "{{" in message and "--raw" in message


def test_raw_sends_braces_as_written(ip, loopback):
    ok(ip, "%%llm loop/m --raw\ndef f(): return {'a': 1} {nope}")
    assert loopback.requests()[-1]["body"]["messages"][-1]["content"] == "def f(): return {'a': 1} {nope}"


# -- templates ---------------------------------------------------------------------------------------

def test_template_flag(ip, loopback):
    import llm_notebook

    templates = llm_notebook.session().templates
    templates.save("shout", "Shout {word} [[reply:{word}!]] {input}", system="Sys {word}",
                   defaults={"input": ""})
    ok(ip, "%llm -m loop/m -t shout --var word=hey")
    body = loopback.requests()[-1]["body"]
    assert body["messages"][0] == {"role": "system", "content": "Sys hey"}
    assert ip.user_ns["_llm"].text == "hey!"
    ok(ip, "%%llm loop/m -t shout --var word=yo\nmore")
    assert body is not loopback.requests()[-1]["body"]
    assert loopback.requests()[-1]["body"]["messages"][-1]["content"].endswith("yo!]] more")
    assert "'word'" in usage_error(ip, "%llm -m loop/m -t shout")
    assert "nosuch" in usage_error(ip, "%llm -t nosuch")
    templates.save("plain", "No input here [[reply:ok]]")
    assert "has no {input}" in usage_error(ip, "%%llm loop/m -t plain\ncell text")
    ok(ip, "%llm -m loop/m -t plain")
    assert ip.user_ns["_llm"].text == "ok"
    assert "-t NAME" in usage_error(ip, "%%llm loop/m --var a=b\nhi")


def test_template_flag_without_templates(ip, monkeypatch):
    import llm_notebook
    from llm_notebook.session import Session

    monkeypatch.delattr(Session, "templates")
    assert not hasattr(llm_notebook.session(), "templates")
    assert usage_error(ip, "%llm -m loop/m -t x") == "templates are not available yet"


# -- user mistakes --------------------------------------------------------------------------------------

def test_user_mistakes_are_one_line_usage_errors(ip, monkeypatch):
    message = usage_error(ip, "%%llm gpt-4o-mni\nhi")
    assert "unknown model 'gpt-4o-mni'" in message and "gpt-4o-mini" in message
    message = usage_error(ip, "%%llm loop/m --bogus\nhi")
    assert "unrecognized arguments: --bogus" in message and "Usage: %%llm" in message
    message = usage_error(ip, "%%llm loop/m -f yaml\nhi")
    assert "invalid choice: 'yaml'" in message
    assert "cell is empty" in usage_error(ip, "%%llm loop/m\n   \n")
    message = usage_error(ip, "%%llm openai/gpt-4o-mini\nhi")
    assert "OPENAI_API_KEY" in message and "set_key" in message
    assert "give one" in usage_error(ip, "%%llm loop/a -m loop/b\nhi")
    assert "secret" in usage_error(ip, "%%llm loop/m --option api_key=sk-123456789\nhi")
    assert "-m/--model" in usage_error(ip, "%%llm loop/m --option model=x\nhi")
    for routing in ("api_base=http://127.0.0.1:9/v1", "base_url=http://x", 'extra_headers={"A":"b"}',
                    "custom_llm_provider=openai", "langfuse_host=http://x", "mock_response=hi"):
        message = usage_error(ip, f"%%llm loop/m --option {routing}\nhi")
        assert f"--option {routing.split('=')[0]}=" in message and "add_endpoint" in message \
            or "not a generation option" in message, message
    assert "takes a number" in usage_error(ip, "%%llm loop/m --option top_p='\"x\"'\nhi")
    assert "key=value" in usage_error(ip, "%%llm loop/m --option top_p\nhi")
    assert "quotes" in usage_error(ip, "%%llm loop/m -s 'unclosed\nhi")
    assert "--max-tokens" in usage_error(ip, "%%llm loop/m --max-tokens 0\nhi")


def test_help(ip):
    cap = ok(ip, "%%llm --help\nignored")
    assert "Usage: %%llm" in cap.stdout and "--no-stream" in cap.stdout and "--format" in cap.stdout
    assert "--chat" in ip.magics_manager.magics["cell"]["llm"].__doc__


def test_provider_errors_are_usage_errors(ip, loopback):
    import llm_notebook

    llm_notebook.session().config.max_retries = 0
    loopback.script([{"kind": "500", "times": 5}])
    result, cap = run(ip, "%%llm loop/m\nhi")
    assert isinstance(result.error_in_exec, UsageError)
    assert "Traceback" not in cap.stdout + cap.stderr
    row = llm_notebook.session().log.history_rows(limit=1)[0]
    assert row["status"] == "error"


def test_dropped_stream_keeps_the_partial_text(ip, loopback):
    loopback.configure(tokens_per_second=50)
    loopback.script([{"kind": "drop_mid_stream", "after_tokens": 3}])
    result, cap = run(ip, "%%llm loop/m\n[[reply:one two three four five six seven]]")
    assert isinstance(result.error_in_exec, UsageError), (cap.stdout, cap.stderr)
    response = ip.user_ns["_llm"]
    assert response.status == "incomplete" and response.text
    html = final_output(cap)["data"]["text/html"]
    assert response.text.split()[0] in html and "incomplete" in html


# -- Ctrl-C --------------------------------------------------------------------------------------------

def _interrupted_row(response):
    import llm_notebook

    return llm_notebook.session().log.call(response.id)


def test_ctrl_c_keeps_partial_text_and_logs_it(ip, loopback):
    import _thread

    loopback.configure(tokens_per_second=10)
    reply = " ".join(f"t{i}" for i in range(60))  # ~6 s if not interrupted

    def press_ctrl_c():
        deadline = time.monotonic() + 20
        while loopback.stats()["requests"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.6)  # a few tokens have streamed in by now
        _thread.interrupt_main()

    threading.Thread(target=press_ctrl_c, daemon=True).start()
    started = time.monotonic()
    result, cap = run(ip, f"%%llm loop/m\n[[reply:{reply}]]")
    assert time.monotonic() - started < 5.5  # stopped well before the reply's ~6 s
    assert isinstance(result.error_in_exec, ReplyInterrupted)
    assert isinstance(result.error_in_exec, KeyboardInterrupt)  # "Run all" stops here
    shown = cap.stdout + cap.stderr
    assert "Interrupted: the partial reply is kept" in shown and "Traceback" not in shown
    response = ip.user_ns["_llm"]
    assert response.status == "interrupted"
    assert response.text and reply.startswith(response.text.strip()) and len(response.text) < len(reply)
    row = _interrupted_row(response)
    assert row["status"] == "interrupted" and row["response"] == response.text
    out = final_output(cap)
    assert response.text.split()[-1] in out["data"]["text/html"] and "interrupted" in out["data"]["text/html"]
    assert out["metadata"]["llm_notebook"]["status"] == "interrupted"


def test_interrupt_between_chunks_cancels_the_request(ip, loopback, monkeypatch):
    from llm_notebook.magics import output

    loopback.configure(tokens_per_second=20)
    original = output.LiveDisplay.add
    seen = []

    def add(self, delta):
        original(self, delta)
        seen.append(delta)
        if len(seen) == 3:
            raise KeyboardInterrupt  # as if Ctrl-C landed while we were drawing

    monkeypatch.setattr(output.LiveDisplay, "add", add)
    reply = " ".join(f"u{i}" for i in range(40))
    result, cap = run(ip, f"%%llm loop/m\n[[reply:{reply}]]")
    assert isinstance(result.error_in_exec, ReplyInterrupted)
    response = ip.user_ns["_llm"]
    row = _interrupted_row(response)
    assert row["status"] == "interrupted"
    assert row["response"].startswith("u0 u1 u2") and len(row["response"]) < len(reply)
    assert "Traceback" not in cap.stdout + cap.stderr


# -- terminal IPython ---------------------------------------------------------------------------------

def test_terminal_prints_deltas_and_footer(ip, loopback):
    from IPython.core.displaypub import DisplayPublisher

    assert type(ip.display_pub) is DisplayPublisher
    with capture_output(display=False) as cap:
        result = ip.run_cell("%%llm loop/m\n[[reply:plain <b>text</b>]]")
    assert result.error_in_exec is None
    assert cap.stdout.startswith("plain <b>text</b>\n\n[loop/m · ")


# -- litellm ------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_through_litellm(ip, loopback, nb_session):
    # The server is configured in Python (a cell can never route a call: see below).
    nb_session.add_endpoint("viallm", loopback.url, api_key="sk-test-magic-0123456789",
                            via="litellm")
    loopback.configure(tokens_per_second=50)
    cap = ok(ip, f"%%llm viallm/gpt-4o-mini -o r\n[[reply:{HOSTILE}]]")
    response = ip.user_ns["r"]
    assert response.text == HOSTILE and response.model == "viallm/gpt-4o-mini"
    html = final_output(cap)["data"]["text/html"]
    assert_harmless(html)
    assert "&lt;script&gt;" in html
    assert len(updates(cap)) >= 2
    assert "sk-test-magic" not in json.dumps(cap._outputs, default=str)


# -- the embedded model -------------------------------------------------------------------------

@pytest.mark.local_model
@pytest.mark.slow
def test_new_user_without_keys_gets_the_embedded_model(ipshell, nb_session):
    # nb_session removed every *_API_KEY: this is a first run on a fresh machine.
    assert nb_session.default_model() == "local/smollm2"
    cap = ok(ipshell, "%%llm --max-tokens 8\nSay hello.")
    response = ipshell.user_ns["_llm"]
    assert response.model == "local/smollm2" and response.status == "ok"
    assert response.text.strip() and 0 < response.output_tokens <= 8
    out = final_output(cap)
    assert out["metadata"]["llm_notebook"]["model"] == "local/smollm2"
    assert "local/smollm2 ·" in out["data"]["text/html"]
