"""Suite 13 — safe to share: templates, notebook cells and `.env` files from someone else.

The loopback server plays the stranger's server: it records every request with its
Authorization header, body and headers. The user has their own OpenAI key (a fresh sentinel in
OPENAI_API_KEY) and a legitimate endpoint of their own. A hostile corpus — templates that name
hosts, headers, proxies, callbacks, credentials or an endpoint this kernel never configured;
`%%llm --option` doing the same; templates whose placeholders name the notebook's credentials;
a template planted in the log by something that skipped validation; a `.env` that sets base
URLs and proxies — is saved, imported, edited and run every way a user would. Passing: each is
refused before anything is sent, with one line naming the option (or variable) and what to do
instead, nothing is imported or saved, and the user's key never reaches the loopback.
"""

from __future__ import annotations

import json
import os
import time
import uuid

import pandas as pd
import pytest
from cells import run
from IPython.utils.capture import capture_output

from llm_notebook.errors import LLMError
from llm_notebook.templates import TemplateError

from .helpers import Sentinels

SUITE = "13 safe to share"


def _routing_corpus(url: str) -> dict:
    """Options a stranger's template would use to move a call (or its data) elsewhere."""
    return {
        "api_base": url, "base_url": url, "api_key": "sk-stranger-0123456789abcdef",
        "extra_headers": {"X-Exfil": "1"}, "headers": {"Authorization": "Bearer x"},
        "default_headers": {"X": "1"}, "api_version": "2024-02-01", "organization": "org-evil",
        "custom_llm_provider": "openai", "proxy": url, "proxies": {"https": url},
        "callbacks": ["langfuse"], "success_callback": ["langfuse"],
        "failure_callback": ["langsmith"], "langfuse_host": url, "langsmith_base_url": url,
        "s3_endpoint_url": url, "model_list": [{"model_name": "x", "litellm_params": {"api_base": url}}],
        "fallbacks": [{"openai/gpt-4o-mini": [f"openai/{url}"]}], "deployment_id": "evil",
        "aws_bedrock_runtime_endpoint": url, "extra_body": {"x": 1}, "extra_query": {"x": 1},
        "metadata": {"x": 1}, "client": "x", "azure_ad_token": "x", "aws_secret_access_key": "x",
        "vertex_credentials": "x", "github_token": "x",
    }


# Not routing, but not generation options either: refused as such (an allowlist, not a denylist).
NOT_GENERATION = {"mock_response": "fake answer", "tools": [{"type": "mcp", "server_url": "x"}],
                  "web_search_options": {}, "timeout": 1, "anything_else": 1}


@pytest.fixture
def user(loop_session, loopback, monkeypatch):
    """The user's kernel: their own OpenAI key (a sentinel) and their own endpoint `loop`."""
    secrets = Sentinels()
    monkeypatch.setenv("OPENAI_API_KEY", secrets.shaped())
    loop_session.config.max_retries = 0
    loop_session.config.deadline = 20
    return loop_session, secrets


def _leaks(loopback, secrets: Sentinels) -> list[str]:
    """Every sentinel that reached the stranger's server, in any part of any request."""
    return secrets.found_in(json.dumps(loopback.requests(), default=str))


def _one_line(message: str) -> bool:
    return "\n" not in message.strip() and "Traceback" not in message


def _files(tmp_path, name: str, option: str, value) -> list:
    """The same hostile template as our YAML, our JSON and an llm template."""
    ours = {"llm_notebook_templates": 1, "templates": [
        {"name": name, "prompt": "Summarise {text}", "options": {option: value}}]}
    yaml_file = tmp_path / f"{name}.yaml"
    import yaml

    yaml_file.write_text(yaml.safe_dump(ours))
    json_file = tmp_path / f"{name}.json"
    json_file.write_text(json.dumps(ours))
    llm_file = tmp_path / f"{name}-llm.yaml"
    llm_file.write_text(yaml.safe_dump({"prompt": "Summarise $text", "options": {option: value}}))
    return [yaml_file, json_file, llm_file]


def test_hostile_template_options_are_refused_at_save_import_edit_and_cell(user, loopback, ipshell,
                                                                          tmp_path, record):
    s, secrets = user
    from llm_notebook.widgets.template_editor import TemplateEditor
    from recorders import MessageRecorder

    corpus = {**_routing_corpus(loopback.url), **NOT_GENERATION}
    editor = MessageRecorder().attach(TemplateEditor())
    tried = refused = 0
    problems: dict[str, list] = {}

    def refuses(what: str, option: str, fn) -> None:
        nonlocal tried, refused
        tried += 1
        try:
            fn()
        except (TemplateError, ValueError) as exc:
            message = str(exc)
            if option in message and _one_line(message):
                refused += 1
                return
            problems.setdefault(option, []).append(f"{what}: unclear message {message!r}")
            return
        problems.setdefault(option, []).append(f"{what}: accepted")

    for n, (option, value) in enumerate(corpus.items()):
        name = f"hostile{n}"
        refuses("save", option, lambda: s.templates.save(name, "Summarise {text}",
                                                           options={option: value}))
        for path in _files(tmp_path, name, option, value):
            refuses(f"import {path.suffix}", option, lambda: s.templates.import_file(path))
        # The TemplateEditor's save and run requests (what its browser side sends).
        for method in ("save", "run"):
            tried += 1
            request = uuid.uuid4().hex
            params = {"name": name, "prompt": "Hi {text}", "options": {option: value}}
            if method == "run":
                params.update(values={"text": "x"}, models=["loop/m"])
            editor._on_custom_msg(editor, {"type": "request", "id": request, "method": method,
                                           "params": params}, [])
            reply = _wait_response(editor.recorder, request)
            if not reply["ok"] and option in reply["error"] and _one_line(reply["error"]):
                refused += 1
            else:
                problems.setdefault(option, []).append(f"editor {method}: {reply}")
        # `%%llm --option` in a notebook cell.
        tried += 1
        raw = json.dumps(value, separators=(",", ":"))
        result, cap = run(ipshell, f"%%llm loop/m --option {option}='{raw}'\nHi")
        error = cap.stderr + cap.stdout
        if result.error_in_exec is not None and f"{option}=" in error and "UsageError" in error:
            refused += 1
        else:
            problems.setdefault(option, []).append(f"--option: {error[:200]!r}")
        # The message says what to do instead.
        if option in _routing_corpus(loopback.url):
            with pytest.raises(TemplateError, match="add_endpoint"):
                s.templates.save(name, "Hi {text}", options={option: value})
    editor.close()

    assert s.templates.names() == []
    assert loopback.requests() == []            # nothing was sent anywhere
    assert problems == {}, problems
    record(tried=tried, kept=refused,
           note=f"{len(corpus)} hostile options × (save, 3 file formats, TemplateEditor save+run, "
                "--option): all refused in one line naming the option, nothing saved or sent")


def _wait_response(recorder, request_id: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reply = recorder.response(request_id)
        if reply is not None:
            return reply
        time.sleep(0.01)
    raise AssertionError(f"no response to {request_id}")


def test_a_planted_or_foreign_template_sends_nothing(user, loopback, ipshell, record):
    """A template written into a shared log by something that skipped validation, and one that
    names an endpoint of someone else's kernel: refused before any request, by every face."""
    s, secrets = user
    with s.log.write() as db:  # what an older version or another tool could have stored
        db.execute("INSERT INTO templates (name, version, prompt, model, options, defaults, tags, "
                   "created) VALUES ('planted', 1, 'Summarise {text}', 'openai/gpt-4o-mini', ?, "
                   "'{}', '[]', ?)", (json.dumps({"api_base": loopback.url}), time.time()))
    s.templates.save("foreign", "Summarise {text}", model="theirs/gpt-4o", options={"seed": 1})
    tried = kept = 0

    with pytest.raises(TemplateError, match="option 'api_base' sets where the request goes"):
        s.templates.get("planted")
    with pytest.raises(TemplateError, match="option 'api_base'"):  # not sent as the word "planted"
        pd.DataFrame({"text": ["a"]}).llm.map("planted", progress=False)
    listed = s.templates.list()       # still listed (so it can be found and deleted), never run
    assert list(listed["name"]) == ["foreign", "planted"]
    assert listed.set_index("name")["variables"]["planted"] is None
    tried, kept = tried + 3, kept + 3
    for line, expected in (("%llm -t planted --var text=x --no-stream", "api_base"),
                           ("%llm -t foreign --var text=x --no-stream",
                            "no endpoint 'theirs' is configured in this kernel")):
        result, cap = run(ipshell, line)
        tried += 1
        assert result.error_in_exec is not None and expected in cap.stderr, cap.stderr
        assert _one_line(cap.stderr.split("UsageError: ", 1)[-1])
        kept += 1
    # The issue's own example: rendering and sending a template's model and options.
    t = s.templates.get("foreign")
    with pytest.raises(LLMError, match="no endpoint 'theirs'"):
        s.ask(t.render(text="x"), model=t.model, **t.options)
    with pytest.raises(LLMError, match="no endpoint 'theirs'"):
        pd.DataFrame({"text": ["a", "b"]}).llm.map("foreign", progress=False)
    tried, kept = tried + 2, kept + 2
    # The same template runs once the user says where it goes.
    result, cap = run(ipshell, "%llm -t foreign -m loop/m --var text=fine --no-stream")
    assert result.error_in_exec is None, cap.stderr
    assert [r["body"]["messages"][-1]["content"] for r in loopback.requests()] == ["Summarise fine"]
    assert _leaks(loopback, secrets) == []
    assert s.templates.delete("planted") == 1
    record(tried=tried, kept=kept, note="a template planted in the log and one naming another "
                                        "kernel's endpoint: refused by get, %%llm -t, ask, map")


def test_per_call_routing_in_own_code_never_takes_the_configured_key(user, loopback, record):
    s, secrets = user
    with pytest.raises(LLMError, match="your openai key is not sent with it"):
        s.ask("hello", model="openai/gpt-4o-mini", api_base=loopback.url)
    with pytest.raises(LLMError, match="your openai key is not sent with it"):
        s.ask("hello", model="openai/gpt-4o-mini", custom_llm_provider="openai",
              base_url=loopback.url)
    with pytest.raises(LLMError, match="user name and password"):
        s.ask("hello", model="openai/gpt-4o-mini", api_base=loopback.url.replace(
            "http://", "http://me:hunter2pass@"), api_key="sk-explicit-0123456789")
    assert loopback.requests() == []
    # With a key of its own for that server, the call goes there with that key only.
    r = s.ask("hello", model="openai/gpt-4o-mini", api_base=loopback.url,
              api_key="sk-explicit-for-this-server-01")
    assert r.status == "ok"
    assert [q["authorization"] for q in loopback.requests()] == ["Bearer sk-explicit-for-this-server-01"]
    assert _leaks(loopback, secrets) == []
    record(tried=4, kept=4, note="own-code api_base/base_url/custom_llm_provider without a key "
                                 "of their own: refused; with one: only that key is sent")


def test_notebook_credentials_never_fill_a_template(user, loopback, ipshell, record):
    s, secrets = user
    key = os.environ["OPENAI_API_KEY"]
    plain = secrets.plain()
    ipshell.user_ns.update(OPENAI_API_KEY=key, api_key=key, github_token=plain,
                           notes=f"remember: {key}", text="the quarterly report")
    s.templates.save("leaky", "Summarise {text}.\n{OPENAI_API_KEY} {api_key} {github_token} {notes}",
                     model="loop/m")
    result, cap = run(ipshell, "%llm -t leaky --no-stream")
    assert result.error_in_exec is not None
    message = cap.stderr.split("UsageError: ", 1)[-1]
    assert "look like credentials" in message and "OPENAI_API_KEY" in message and _one_line(message)
    assert loopback.requests() == []

    # With defaults for those names the template runs, and they stay defaults.
    s.templates.save("leaky", "Summarise {text}.\n{OPENAI_API_KEY} {api_key} {github_token} {notes}",
                     model="loop/m", defaults={"OPENAI_API_KEY": "-", "api_key": "-",
                                               "github_token": "-", "notes": "-"})
    with capture_output() as cap:
        result = ipshell.run_cell("%llm -t leaky --no-stream -f text")
    assert result.error_in_exec is None, cap.stderr
    sent = loopback.requests()[-1]["body"]["messages"][-1]["content"]
    assert sent == "Summarise the quarterly report.\n- - - -"
    footers = [o.data.get("text/html", "") for o in cap.outputs] + [cap.stdout]
    assert any("from the notebook: text" in f for f in footers), footers
    for name in ("OPENAI_API_KEY", "api_key", "github_token", "notes"):
        assert all(f"notebook: {name}" not in f and f", {name}" not in f for f in footers)
    assert _leaks(loopback, secrets) == []
    for name in ("OPENAI_API_KEY", "api_key", "github_token", "notes", "text"):
        ipshell.user_ns.pop(name, None)
    record(tried=4, kept=4, note="notebook variables named or shaped like keys never fill a "
                                 "template; the footer names what came from the notebook")


DOTENV = """
OPENAI_API_KEY=sk-from-dotenv-loses-0123456789
GROQ_API_KEY=gsk_from_dotenv_file_0123456789abcdef
OPENAI_BASE_URL={url}
OPENAI_API_BASE={url}
ANTHROPIC_BASE_URL={url}
HTTPS_PROXY={url}
HTTP_PROXY={url}
ALL_PROXY={url}
LITELLM_PROXY_API_BASE={url}
GOOGLE_APPLICATION_CREDENTIALS=/tmp/strangers-service-account.json
LAB_KEY=lab-key-from-dotenv-0123456789
LLM_NOTEBOOK_EXAMPLE=kept
"""


def test_a_dotenv_gives_keys_and_nothing_else(user, loopback, tmp_path, monkeypatch, record):
    s, secrets = user
    from llm_notebook import keys

    ignored = ["OPENAI_BASE_URL", "OPENAI_API_BASE", "ANTHROPIC_BASE_URL", "HTTPS_PROXY",
               "HTTP_PROXY", "ALL_PROXY", "LITELLM_PROXY_API_BASE", "GOOGLE_APPLICATION_CREDENTIALS",
               "LAB_KEY"]
    for var in ignored + ["GROQ_API_KEY", "LLM_NOTEBOOK_EXAMPLE", "https_proxy", "http_proxy"]:
        monkeypatch.setenv(var, "placeholder")   # so whatever loading sets is undone afterwards
        monkeypatch.delenv(var)
    (tmp_path / ".env").write_text(DOTENV.format(url=loopback.url))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(keys, "_dotenv_loaded", False)
    monkeypatch.setattr(keys, "_dotenv", {})

    assert keys.get_key("groq") == "gsk_from_dotenv_file_0123456789abcdef"
    assert keys.get_key("openai") == os.environ["OPENAI_API_KEY"] != "sk-from-dotenv-loses-0123456789"
    assert os.environ["LLM_NOTEBOOK_EXAMPLE"] == "kept"
    assert [v for v in ignored if v in os.environ] == []
    # A real call through litellm goes to OpenAI's own address (unreachable here), never to the
    # server the .env named.
    s.config.deadline = 10
    with pytest.raises(LLMError):
        s.ask("hello", model="openai/gpt-4o-mini", max_tokens=5)
    assert loopback.requests() == [] and _leaks(loopback, secrets) == []
    # A variable the user's own code names as an endpoint's key may come from the .env, and goes
    # only to that endpoint.
    s.add_endpoint("lab", loopback.url, api_key_env="LAB_KEY")
    assert s.ask("hi", model="lab/m").status == "ok"
    assert [q["authorization"] for q in loopback.requests()] == ["Bearer lab-key-from-dotenv-0123456789"]
    assert "LAB_KEY" not in os.environ
    record(tried=len(ignored) + 3, kept=len(ignored) + 3,
           note=f".env with {len(ignored)} base-URL/proxy/credential-file settings: none applied, "
                "no call reached its server; keys loaded, real variables kept")


def test_connection_errors_and_endpoint_reprs_hide_url_passwords(loop_session, record):
    s = loop_session
    s.config.max_retries = 0
    s.add_endpoint("pw", "http://alice:s3cret-pass-word@127.0.0.1:9/v1")
    with pytest.raises(LLMError) as caught:
        s.ask("hello", model="pw/m")
    text = str(caught.value) + repr(caught.value) + repr(s.endpoints)
    assert "s3cret-pass-word" not in text and "127.0.0.1:9" in text
    row = s.log.history_rows(limit=1)[0]
    assert "s3cret-pass-word" not in json.dumps(row, default=str)
    record(tried=3, kept=3, note="a password in an endpoint URL: absent from errors, reprs, log")
