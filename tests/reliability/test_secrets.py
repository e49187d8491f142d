"""Suite 10 — secrets.

Sentinel keys, and a provider that echoes the key it gets in its errors (the loopback's 401
with `require_key`, and 500s whose long message carries the key near where messages are cut):
the sentinels must be absent from the log file (and its -wal/-shm), saved .ipynb files
(outputs, metadata and widget state), stderr, exception text and widget messages. The server
extension's responses are checked in server/test_secrets_server.py.

Each scenario gets its own sentinels, so one that is only safe because an earlier scenario
registered its key cannot pass unnoticed. Two shapes: key-shaped ("sk-...", caught by pattern
too) and plain (only known-key redaction can catch it).
"""

from __future__ import annotations

import json
import os
import warnings

import nbformat
import pandas as pd
import pytest

from llm_notebook.errors import LLMError

from .helpers import REPO_ROOT, Sentinels, exception_texts, log_bytes

SUITE = "10 secrets"
RIGHT_KEY = "the-one-right-key"
MODEL = "loop/loopback-model"


@pytest.fixture
def echoing(loopback):
    loopback.configure(require_key=RIGHT_KEY)
    return loopback


def test_echoed_keys_reach_no_log_exception_stream_or_widget(loop_session, echoing, log_path,
                                                             monkeypatch, capfd, record):
    loopback = echoing
    s = loop_session
    secrets = Sentinels()
    s.config.max_retries = 0
    failures: list[BaseException] = []

    def expect_failure(fn, *args, **kw):
        with pytest.raises(LLMError) as caught:
            fn(*args, **kw)
        failures.append(caught.value)
        return caught.value

    # Lean HTTP: a named endpoint whose key comes from a variable with a plain name.
    plain = secrets.plain()
    monkeypatch.setenv("LOOPCRED", plain)
    s.add_endpoint("cred", loopback.url, api_key_env="LOOPCRED")
    assert expect_failure(s.ask, "lean ask", model="cred/loopback-model").kind == "auth"
    expect_failure(lambda: list(s.stream("lean stream", model="cred/loopback-model")))
    expect_failure(s.chat(model="cred/loopback-model").ask, "a conversation turn")
    check = s.check("cred/loopback-model")
    assert check["ok"] is False and check["kind"] == "auth"

    # A key given directly to an endpoint, and one per call (litellm), each never seen before.
    s.add_endpoint("direct", loopback.url, api_key=secrets.plain())
    expect_failure(s.ask, "endpoint key", model="direct/loopback-model")
    expect_failure(s.ask, "litellm per-call plain key", model="openai/gpt-4o-mini",
                   api_base=loopback.url, api_key=secrets.plain())
    # The provider's key from the environment, through litellm, to a server the user added for
    # it (a per-call api_base alone never takes the configured key along: see suite 13).
    monkeypatch.setenv("OPENAI_API_KEY", secrets.shaped())
    s.add_endpoint("envlit", loopback.url, api_key_env="OPENAI_API_KEY", via="litellm")
    expect_failure(s.ask, "litellm env key", model="envlit/gpt-4o-mini")
    expect_failure(lambda: list(s.stream("litellm stream", model="envlit/gpt-4o-mini")))
    s.add_endpoint("vialitellm", loopback.url, api_key=secrets.plain(), via="litellm")
    expect_failure(s.ask, "endpoint via litellm", model="vialitellm/loopback-model")

    # A provider that puts the key deep in a long message, right where messages are cut.
    for via, model, kw in (("lean", "deep/loopback-model", {}),
                           ("litellm", "openai/gpt-4o-mini", {"api_base": loopback.url})):
        key = secrets.plain()
        if via == "lean":
            s.add_endpoint("deep", loopback.url, api_key=key)
        else:
            kw["api_key"] = key
        cut = 500 if via == "lean" else 800
        for offset in (-len(key) // 2, -4, 0):
            pad = "x" * (cut + offset - 60)
            loopback.script([{"kind": "500", "match": f"deep {via}",
                              "message": f"{pad} upstream refused credential {key} (trace 1f)"}])
            expect_failure(s.ask, f"deep {via} {offset}", model=model, **kw)

    # Batches: every row refused with the echo.
    batch_key = secrets.plain()
    s.add_endpoint("batchcred", loopback.url, api_key=batch_key)
    out = pd.DataFrame({"t": ["one", "two", "three"]}).llm.map(
        "Say {t}", model="batchcred/loopback-model", progress=False)
    assert out.attrs["llm"]["error"] == 3
    shown = {"batch result": repr(out), "batch result as text": out.to_string(),
             "batch attrs": str(out.attrs),
             "batch errors": s.job(out.attrs["llm"]["job_id"]).errors().to_html(),
             "history": s.history().to_html(), "jobs": s.jobs().to_html(),
             "endpoints": repr(s.endpoints), "keys": repr(s.keys()), "check()": repr(check)}

    # Chat widget: its error line to the browser, its synced state.
    import llm_notebook

    sent_to_browser: list = []
    chat = llm_notebook.Chat(model="batchcred/loopback-model")
    monkeypatch.setattr(chat, "send", lambda content, buffers=None: sent_to_browser.append(content))
    expect_failure(chat.ask, "widget turn")
    shown.update({"Chat messages to the browser": json.dumps(sent_to_browser, default=str),
                  "Chat widget state": json.dumps(chat.get_state(), default=str),
                  "Chat state()": json.dumps(chat.state(), default=str),
                  "Chat markdown": chat.to_markdown()})
    chat.close()

    # Options that carry a credential in a header are sent, never logged.
    header_key = secrets.plain()
    expect_failure(s.ask, "key in a header", model="openai/gpt-4o-mini", api_base=loopback.url,
                   api_key=secrets.plain(),
                   extra_headers={"Authorization": f"Bearer {header_key}", "X-Trace": "1"})

    # Every place a key could surface, searched for every sentinel.
    places = {f"exception {i}: {exc.message[:50]}": exception_texts(exc)
              for i, exc in enumerate(failures)}
    places.update(shown)
    captured = capfd.readouterr()
    places.update(stdout=captured.out, stderr=captured.err)
    s.log.close()
    places["log file (+ -wal/-shm)"] = log_bytes(log_path)
    leaks = {}
    for place, text in places.items():
        if not record.check(f"no key in {place}", not secrets.found_in(text)):
            leaks[place] = secrets.found_in(text)
    # The provider did get each key (the test would prove nothing otherwise).
    received = len(secrets.found_in(json.dumps(loopback.requests())))
    record.note(f"{len(secrets.all)} sentinel keys (the provider received {received}) over "
                f"{len(failures)} failed calls (lean/litellm/stream/batch/chat/widget/deep-in-message "
                f"errors): {len(places) - len(leaks)} of {len(places)} places hold none")

    assert received >= len(secrets.all) - 1   # (the header may be replaced)
    assert leaks == {}, leaks


NOTEBOOK_CELLS = [
    "%load_ext llm_notebook\n"
    "import llm_notebook, pandas as pd\n"
    "s = llm_notebook.session()\n"
    "s.add_endpoint('cred', LOOP_URL, api_key_env='LOOPCRED')\n"
    "s.add_endpoint('envlit', LOOP_URL, api_key_env='OPENAI_API_KEY', via='litellm')\n"
    "s.config.max_retries = 0",
    "%%llm cred/loopback-model\nSay hello",
    "%%llm envlit/gpt-4o-mini --no-stream\nSay hello",
    "s.ask('a plain call', model='cred/loopback-model')",
    "out = pd.DataFrame({'t': ['a', 'b']}).llm.map('Say {t}', model='cred/loopback-model',"
    " progress=False)\ns.job(out.attrs['llm']['job_id']).errors()",
    "%llm history",
    "s.check('openai/gpt-4o-mini')",
    "chat = llm_notebook.Chat(model='cred/loopback-model')\nchat",
    "try:\n    chat.ask('hello from the widget')\nexcept Exception as exc:\n    print(exc)",
    "_llm",
]


def test_saved_notebook_and_kernel_stderr_hold_no_key(echoing, tmp_path, record):
    from jupyter_client import KernelManager
    from nbclient import NotebookClient

    loopback = echoing
    secrets = Sentinels()
    plain, shaped = secrets.plain(), secrets.shaped()
    env = dict(os.environ, LOOPCRED=plain, OPENAI_API_KEY=shaped,
               LLM_NOTEBOOK_LOG=str(tmp_path / "log.db"),
               PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(f"LOOP_URL = {loopback.url!r}")]
    nb.cells += [nbformat.v4.new_code_cell(c.replace("{LOOP_URL}", loopback.url)) for c in NOTEBOOK_CELLS]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}

    stderr_path = tmp_path / "kernel-stderr.txt"
    with open(stderr_path, "wb") as err:
        km = KernelManager(kernel_name="python3")
        km.start_kernel(env=env, cwd=str(tmp_path), stderr=err, stdout=err)
        try:
            client = NotebookClient(nb, km=km, timeout=120, allow_errors=True,
                                    store_widget_state=True, kernel_name="python3")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                client.execute()
        finally:
            km.shutdown_kernel(now=True)
    saved = tmp_path / "secrets.ipynb"
    nbformat.write(nb, str(saved))

    outputs = [o for cell in nb.cells for o in cell.get("outputs", [])]
    errors = [o for o in outputs if o.get("output_type") == "error"]
    places = {f"cell {i} outputs": json.dumps(cell.get("outputs", []))
              for i, cell in enumerate(nb.cells)}
    places.update({"notebook metadata (widget state)": json.dumps(nb.metadata),
                   "saved notebook file": saved.read_bytes(),
                   "kernel stderr": stderr_path.read_bytes(),
                   "kernel's log": log_bytes(str(tmp_path / "log.db"))})
    leaks = {}
    for place, blob in places.items():
        if not record.check(f"no key in {place}", not secrets.found_in(blob)):
            leaks[place] = secrets.found_in(blob)
    received = len(secrets.found_in(json.dumps(loopback.requests())))
    echoed = sum("Incorrect API key" in json.dumps(o) for o in outputs)
    record.note(f"a notebook of {len(nb.cells)} cells (%%llm lean+litellm, ask, map, history, "
                f"check, Chat widget) run by nbclient and saved, {echoed} outputs showing the "
                f"provider's echo of a key it received ({received} of {len(secrets.all)}): "
                f"{len(places) - len(leaks)} of {len(places)} places hold none")

    # The calls really failed with the echo (so the outputs are about the key).
    assert echoed > 0, outputs
    assert all(o["ename"] in ("UsageError", "LLMError", "AuthenticationError") for o in errors), errors
    # The Chat widget's state was saved with the notebook (and is checked with it).
    assert "application/vnd.jupyter.widget-state+json" in nb.metadata.get("widgets", {})
    assert received == 2
    assert leaks == {}, leaks
