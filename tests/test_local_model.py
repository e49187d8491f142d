"""The embedded model (SmolLM2-135M through llama-cpp-python), end to end and offline.

Its words vary, so these tests check structure: text, tokens, rows, usage, streaming.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import llm_notebook
from llm_notebook.providers import local

# No skip when the extra is missing: that would hide a broken install. Deselect these tests
# explicitly with `-m "not local_model"` on a machine without llama-cpp-python.
pytestmark = pytest.mark.local_model

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(llm_notebook.__file__)))


def test_ask_works_and_is_logged(nb_session):
    r = nb_session.ask("Name a colour", model="local/smollm2", max_tokens=16)
    assert r.status == "ok" and r.model == "local/smollm2"
    assert r.text.strip()
    assert r.input_tokens > 0 and 0 < r.output_tokens <= 16
    assert r.cost == 0.0 and r.unpriced is False        # the embedded model is free
    row = nb_session.log.call(r.id)
    assert row["status"] == "ok" and row["input_tokens"] > 0 and row["output_tokens"] > 0
    assert row["response"] == r.text and row["provider"] == "local"


def test_stream_and_usage(nb_session):
    st = nb_session.stream("Say hello to a friend", model="local/smollm2", max_tokens=12)
    chunks = list(st)
    assert len(chunks) >= 2 and "".join(chunks) == st.response.text
    r = st.response
    assert r.status == "ok" and r.ttft_ms is not None and r.ttft_ms <= r.duration_ms
    assert r.input_tokens > 0 and 0 < r.output_tokens <= 12
    plain = nb_session.ask("Say hello to a friend", model="local/smollm2", max_tokens=4)
    # A stream counts its prompt the way a plain call does (chat template included).
    assert plain.input_tokens == r.input_tokens

    usage = nb_session.usage(by="model").set_index("model").loc["local/smollm2"]
    assert usage["calls"] == 2
    assert usage["input_tokens"] == 2 * r.input_tokens
    assert usage["output_tokens"] == r.output_tokens + plain.output_tokens
    assert usage["cost"] == 0


def test_is_the_default_without_keys_and_chats(nb_session):
    assert nb_session.default_model() == "local/smollm2"
    chat = nb_session.chat()
    chat.ask("My name is Ada.", max_tokens=8)
    second = chat.ask("What is my name?", max_tokens=8)
    assert second.model == "local/smollm2"
    assert nb_session.log.call(second.id)["parent_id"] is not None
    # The second prompt carried the first turn: the model saw more tokens.
    assert second.input_tokens > nb_session.log.thread(second.id)[0]["input_tokens"]


def test_litellm_custom_provider(nb_session):
    from llm_notebook.providers.litellm_route import get_litellm

    litellm = get_litellm()
    messages = [{"role": "user", "content": "Name a colour"}]
    resp = litellm.completion(model="local/smollm2", messages=messages, max_tokens=8)
    assert resp.choices[0].message.content.strip()
    assert resp.usage.prompt_tokens > 0 and 0 < resp.usage.completion_tokens <= 8

    chunks = list(litellm.completion(model="local/smollm2", messages=messages, max_tokens=8,
                                     stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() and len(chunks) >= 3
    usage = [c.usage for c in chunks if getattr(c, "usage", None)]
    assert usage and usage[-1].completion_tokens > 0


async def test_litellm_custom_provider_async(nb_session):
    from llm_notebook.providers.litellm_route import get_litellm

    litellm = get_litellm()
    messages = [{"role": "user", "content": "Name a colour"}]
    resp = await litellm.acompletion(model="local/smollm2", messages=messages, max_tokens=6)
    assert resp.choices[0].message.content.strip()
    stream = await litellm.acompletion(model="local/smollm2", messages=messages, max_tokens=6,
                                       stream=True)
    pieces = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    assert "".join(pieces).strip()


def test_streamed_prompt_count_matches_litellm(nb_session):
    # llama.cpp reports no usage for streams: ours counts the templated prompt, and must agree
    # with what a plain completion through litellm's custom provider reports.
    from llm_notebook.providers.litellm_route import get_litellm

    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Name a colour"}]
    st = nb_session.stream("Name a colour", system="Be brief.", model="local/smollm2", max_tokens=4)
    list(st)
    theirs = get_litellm().completion(model="local/smollm2", messages=messages, max_tokens=4)
    assert st.response.input_tokens == theirs.usage.prompt_tokens > 5


def test_works_offline_in_a_fresh_process(tmp_path):
    # No socket may connect anywhere: the model, its weights and the log are all local.
    script = textwrap.dedent("""
        import socket
        def refuse(self, *args, **kwargs):
            raise OSError("network disabled by the test")
        socket.socket.connect = refuse
        socket.socket.connect_ex = refuse
        import llm_notebook
        s = llm_notebook.session()
        r = s.ask("Name a colour", model="local/smollm2", max_tokens=10)
        row = s.log.call(r.id)
        print("RESULT", r.status, bool(r.text.strip()), row["input_tokens"] > 0,
              row["output_tokens"] > 0, s.log.count_calls())
    """)
    env = dict(os.environ, LLM_NOTEBOOK_LOG=str(tmp_path / "log.db"), HF_HUB_OFFLINE="1",
               PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for var in [v for v in env if v.endswith("_API_KEY")]:
        env.pop(var)
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         timeout=180, cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "RESULT ok True True True 1" in out.stdout
    assert "Traceback" not in out.stderr            # not even at interpreter exit



def test_a_stop_cuts_the_reading_of_a_long_prompt_and_the_model_stays_sound(capfd):
    # llama.cpp reads a prompt in decodes of 512 tokens with no token in between: the stop must
    # reach it inside a decode (its abort callback), and the context must be fine afterwards.
    import threading

    llm = local.get_model()
    long_prompt = [{"role": "user", "content": "Summarise: " + "the quick brown fox " * 375}]
    short = [{"role": "user", "content": "Name three colours."}]
    greedy = {"max_tokens": 12, "temperature": 0, "seed": 1}

    def text(messages) -> str:
        return "".join(p for p in local.generate(messages, greedy, threading.Event())
                       if isinstance(p, str))

    before = text(short)
    prompt_length = len(llm.tokenize(long_prompt[0]["content"].encode()))
    stop = threading.Event()
    timer = threading.Timer(0.1, stop.set)
    timer.start()
    try:
        pieces = list(local.generate(long_prompt, greedy, stop))
    finally:
        timer.cancel()
    assert stop.is_set() and pieces == []                  # no text, and no Finish
    assert llm.n_tokens < prompt_length                    # cut before the prompt was read
    assert "decode" not in capfd.readouterr().err          # llama.cpp's abort line is not shown
    # Nothing half-read is left behind (the short prompt shares the chat template's first
    # tokens with the cut one, which llama-cpp-python reuses): the same answer as before.
    assert text(short) == before


def test_a_generation_stopped_before_its_turn_does_not_start():
    import threading

    stop = threading.Event()
    stop.set()
    assert list(local.generate([{"role": "user", "content": "Hi"}], {}, stop)) == []
