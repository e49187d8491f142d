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

from .helpers import Sentinels, attempt

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
    problems: dict[str, list] = {}

    def judged(what: str, option: str, problem: str | None) -> None:
        if not record.check(f"{option}: {what}", problem is None):
            problems.setdefault(option, []).append(f"{what}: {problem}")

    def refuses(what: str, option: str, fn) -> None:
        try:
            fn()
        except (TemplateError, ValueError) as exc:
            message = str(exc)
            judged(what, option, None if option in message and _one_line(message)
                   else f"unclear message {message!r}")
            return
        judged(what, option, "accepted")

    for n, (option, value) in enumerate(corpus.items()):
        name = f"hostile{n}"
        refuses("save", option, lambda: s.templates.save(name, "Summarise {text}",
                                                           options={option: value}))
        for path in _files(tmp_path, name, option, value):
            refuses(f"import {path.suffix}", option, lambda: s.templates.import_file(path))
        # The TemplateEditor's save and run requests (what its browser side sends).
        for method in ("save", "run"):
            request = uuid.uuid4().hex
            params = {"name": name, "prompt": "Hi {text}", "options": {option: value}}
            if method == "run":
                params.update(values={"text": "x"}, models=["loop/m"])
            editor._on_custom_msg(editor, {"type": "request", "id": request, "method": method,
                                           "params": params}, [])
            reply = _wait_response(editor.recorder, request)
            judged(f"editor {method}", option,
                   None if not reply["ok"] and option in reply["error"] and _one_line(reply["error"])
                   else str(reply))
        # `%%llm --option` in a notebook cell.
        raw = json.dumps(value, separators=(",", ":"))
        result, cap = run(ipshell, f"%%llm loop/m --option {option}='{raw}'\nHi")
        error = cap.stderr + cap.stdout
        judged("--option", option,
               None if result.error_in_exec is not None and f"{option}=" in error
               and "UsageError" in error else repr(error[:200]))
        # The message says what to do instead.
        if option in _routing_corpus(loopback.url):
            try:
                s.templates.save(name, "Hi {text}", options={option: value})
                judged("save says add_endpoint", option, "accepted")
            except TemplateError as exc:
                judged("save says add_endpoint", option,
                       None if "add_endpoint" in str(exc) else f"no add_endpoint in {exc}")
    editor.close()
    saved, requests = s.templates.names(), loopback.requests()
    record.note(f"{len(corpus)} hostile options × (save, 3 file formats, TemplateEditor save+run, "
                f"--option): {sum(len(p) for p in problems.values())} not refused in one line "
                f"naming the option; {len(saved)} saved, {len(requests)} requests sent")

    assert saved == []
    assert requests == []            # nothing was sent anywhere
    assert problems == {}, problems


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

    with record.trial("get('planted') refused"):
        with pytest.raises(TemplateError, match="option 'api_base' sets where the request goes"):
            s.templates.get("planted")
    with record.trial("map('planted') refused, not sent as the word"):
        with pytest.raises(TemplateError, match="option 'api_base'"):
            pd.DataFrame({"text": ["a"]}).llm.map("planted", progress=False)
    with record.trial("list() shows it, never runs it"):
        listed = s.templates.list()       # still listed (so it can be found and deleted)
        assert list(listed["name"]) == ["foreign", "planted"]
        assert listed.set_index("name")["variables"]["planted"] is None
    for line, expected in (("%llm -t planted --var text=x --no-stream", "api_base"),
                           ("%llm -t foreign --var text=x --no-stream",
                            "no endpoint 'theirs' is configured in this kernel")):
        with record.trial(f"{line}: refused in one line"):
            result, cap = run(ipshell, line)
            assert result.error_in_exec is not None and expected in cap.stderr, cap.stderr
            assert _one_line(cap.stderr.split("UsageError: ", 1)[-1])
    # The issue's own example: rendering and sending a template's model and options.
    t = s.templates.get("foreign")
    with record.trial("ask(t.render(), model=t.model, **t.options) refused"):
        with pytest.raises(LLMError, match="no endpoint 'theirs'"):
            s.ask(t.render(text="x"), model=t.model, **t.options)
    with record.trial("map('foreign') refused"):
        with pytest.raises(LLMError, match="no endpoint 'theirs'"):
            pd.DataFrame({"text": ["a", "b"]}).llm.map("foreign", progress=False)
    refused_sent = len(loopback.requests())
    # The same template runs once the user says where it goes.
    result, cap = run(ipshell, "%llm -t foreign -m loop/m --var text=fine --no-stream")
    sent = [r["body"]["messages"][-1]["content"] for r in loopback.requests()]
    leaks = _leaks(loopback, secrets)
    record.check("with -m loop/m it runs, and sends only that", result.error_in_exec is None
                 and sent == ["Summarise fine"])
    record.note(f"a template planted in the log and one naming another kernel's endpoint: "
                f"refused by get, %%llm -t, ask, map with {refused_sent} requests sent; "
                f"{len(leaks)} user keys reached the server")
    assert result.error_in_exec is None, cap.stderr
    assert sent == ["Summarise fine"]
    assert leaks == []
    assert s.templates.delete("planted") == 1


def test_per_call_routing_in_own_code_never_takes_the_configured_key(user, loopback, record):
    s, secrets = user
    with record.trial("own-code api_base without its own key: refused"):
        with pytest.raises(LLMError, match="your openai key is not sent with it"):
            s.ask("hello", model="openai/gpt-4o-mini", api_base=loopback.url)
    with record.trial("own-code custom_llm_provider + base_url without its own key: refused"):
        with pytest.raises(LLMError, match="your openai key is not sent with it"):
            s.ask("hello", model="openai/gpt-4o-mini", custom_llm_provider="openai",
                  base_url=loopback.url)
    with record.trial("a per-call URL with a password: refused"):
        with pytest.raises(LLMError, match="user name and password"):
            s.ask("hello", model="openai/gpt-4o-mini", api_base=loopback.url.replace(
                "http://", "http://me:hunter2pass@"), api_key="sk-explicit-0123456789")
    refused_sent = len(loopback.requests())
    # With a key of its own for that server, the call goes there with that key only.
    r = s.ask("hello", model="openai/gpt-4o-mini", api_base=loopback.url,
              api_key="sk-explicit-for-this-server-01")
    keys_sent = [q["authorization"] for q in loopback.requests()]
    leaks = _leaks(loopback, secrets)
    record.check("with a key of its own: sent with that key only", r.status == "ok"
                 and keys_sent == ["Bearer sk-explicit-for-this-server-01"] and not leaks)
    record.note(f"own-code api_base/base_url/custom_llm_provider without a key of their own: "
                f"refused, {refused_sent} requests sent; with one: {len(keys_sent)} request, "
                f"{len(leaks)} carrying the user's key")
    assert refused_sent == 0
    assert r.status == "ok"
    assert keys_sent == ["Bearer sk-explicit-for-this-server-01"]
    assert leaks == []


def test_notebook_credentials_never_fill_a_template(user, loopback, ipshell, record):
    s, secrets = user
    key = os.environ["OPENAI_API_KEY"]
    plain = secrets.plain()
    ipshell.user_ns.update(OPENAI_API_KEY=key, api_key=key, github_token=plain,
                           notes=f"remember: {key}", text="the quarterly report")
    s.templates.save("leaky", "Summarise {text}.\n{OPENAI_API_KEY} {api_key} {github_token} {notes}",
                     model="loop/m")
    with record.trial("a template naming credential-like variables: refused in one line"):
        result, cap = run(ipshell, "%llm -t leaky --no-stream")
        assert result.error_in_exec is not None
        message = cap.stderr.split("UsageError: ", 1)[-1]
        assert "look like credentials" in message and "OPENAI_API_KEY" in message
        assert _one_line(message)
        assert loopback.requests() == []

    # With defaults for those names the template runs, and they stay defaults.
    s.templates.save("leaky", "Summarise {text}.\n{OPENAI_API_KEY} {api_key} {github_token} {notes}",
                     model="loop/m", defaults={"OPENAI_API_KEY": "-", "api_key": "-",
                                               "github_token": "-", "notes": "-"})
    with capture_output() as cap:
        result = ipshell.run_cell("%llm -t leaky --no-stream -f text")
    requests = loopback.requests()
    sent = requests[-1]["body"]["messages"][-1]["content"] if requests else None
    footers = [o.data.get("text/html", "") for o in cap.outputs] + [cap.stdout]
    record.check("with defaults it runs, and the defaults are sent",
                 result.error_in_exec is None and sent == "Summarise the quarterly report.\n- - - -")
    record.check("the footer names what came from the notebook",
                 any("from the notebook: text" in f for f in footers))
    for name in ("OPENAI_API_KEY", "api_key", "github_token", "notes"):
        record.check(f"the footer does not say {name} came from the notebook",
                     all(f"notebook: {name}" not in f and f", {name}" not in f for f in footers))
    leaks = _leaks(loopback, secrets)
    record.note(f"notebook variables named or shaped like keys never fill a template: "
                f"{len(requests)} request sent, with the defaults; {len(leaks)} keys reached it")
    assert result.error_in_exec is None, cap.stderr
    assert sent == "Summarise the quarterly report.\n- - - -"
    assert any("from the notebook: text" in f for f in footers), footers
    for name in ("OPENAI_API_KEY", "api_key", "github_token", "notes"):
        assert all(f"notebook: {name}" not in f and f", {name}" not in f for f in footers)
    assert leaks == []
    for name in ("OPENAI_API_KEY", "api_key", "github_token", "notes", "text"):
        ipshell.user_ns.pop(name, None)


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

    groq, openai = keys.get_key("groq"), keys.get_key("openai")
    record.check(".env: a provider key loaded", groq == "gsk_from_dotenv_file_0123456789abcdef")
    record.check(".env: a real variable wins over the file's", openai == os.environ["OPENAI_API_KEY"])
    record.check(".env: LLM_NOTEBOOK_* loaded", os.environ.get("LLM_NOTEBOOK_EXAMPLE") == "kept")
    for var in ignored:
        record.check(f".env: {var} not applied", var not in os.environ)
    # A real call through litellm goes to OpenAI's own address (unreachable here), never to the
    # server the .env named.
    s.config.deadline = 10
    with record.trial("a litellm call does not go where the .env says"):
        with pytest.raises(LLMError):
            s.ask("hello", model="openai/gpt-4o-mini", max_tokens=5)
        assert loopback.requests() == [] and _leaks(loopback, secrets) == []
    # A variable the user's own code names as an endpoint's key may come from the .env, and goes
    # only to that endpoint.
    s.add_endpoint("lab", loopback.url, api_key_env="LAB_KEY")
    with record.trial("an endpoint's api_key_env read from the .env, for that endpoint only"):
        assert s.ask("hi", model="lab/m").status == "ok"
        assert [q["authorization"] for q in loopback.requests()] == \
            ["Bearer lab-key-from-dotenv-0123456789"]
        assert "LAB_KEY" not in os.environ
    applied = [v for v in ignored if v in os.environ]
    record.note(f".env with {len(ignored)} base-URL/proxy/credential-file settings: "
                f"{len(applied)} applied; keys loaded, real variables kept")
    assert groq == "gsk_from_dotenv_file_0123456789abcdef"
    assert openai == os.environ["OPENAI_API_KEY"] != "sk-from-dotenv-loses-0123456789"
    assert os.environ["LLM_NOTEBOOK_EXAMPLE"] == "kept"
    assert applied == []


def test_connection_errors_and_endpoint_reprs_hide_url_passwords(loop_session, record):
    s = loop_session
    s.config.max_retries = 0
    s.add_endpoint("pw", "http://alice:s3cret-pass-word@127.0.0.1:9/v1")
    failed = attempt(s.ask, "hello", model="pw/m")
    row = s.log.history_rows(limit=1)[0]
    places = {"the error": str(failed.error) + repr(failed.error),
              "repr(s.endpoints)": repr(s.endpoints), "the log row": json.dumps(row, default=str)}
    shown = [place for place, text in places.items()
             if not record.check(f"no URL password in {place}", "s3cret-pass-word" not in text)]
    record.note(f"a password in an endpoint URL: in {len(shown)} of {len(places)} places "
                "(error, endpoints repr, log row)")
    assert failed.error is not None
    assert "127.0.0.1:9" in places["the error"]
    assert shown == [], places
