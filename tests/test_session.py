"""Session calls over real HTTP to the loopback server (lean aiohttp path): ask, stream, aask,
astream, the Response they return, models/aliases/endpoints, check(), the default model, and
the errors a user sees when a model or key is wrong."""

from __future__ import annotations

import pytest

import llm_notebook
from llm_notebook import keys
from llm_notebook.errors import LLMError, MissingKeyError, ResponseFormatError, UnknownModelError


@pytest.fixture(autouse=True)
def _isolated_keys(monkeypatch):
    """No key typed into an earlier test (set_key keeps keys in process memory) leaks in."""
    monkeypatch.setattr(keys, "_memory", {})
    monkeypatch.setattr(keys, "_dotenv_loaded", True)


def last_request(loopback) -> dict:
    return loopback.requests()[-1]


# ---------------------------------------------------------------- ask and the Response

def test_ask_fills_every_response_field_from_the_provider(loop_session, loopback):
    loopback.configure(latency=0.1)
    r = loop_session.ask("three little words", model="loop/m", max_tokens=50, temperature=0.3)

    assert isinstance(r, llm_notebook.Response)
    assert r.text == "Echo: three little words" and str(r) == r.text
    assert r.model == "loop/m" and r.status == "ok"
    # The loopback counts words: 3 in the prompt, 4 in the reply.
    assert (r.input_tokens, r.output_tokens) == (3, 4)
    # Nobody knows the price of a custom endpoint's model: None plus a flag, never a crash.
    assert r.cost is None and r.unpriced is True
    assert "price unknown" in r.footer()
    assert r.duration_ms >= 100          # the configured latency is inside the measured time
    assert r.ttft_ms is None             # only streamed calls have a time to first token
    assert r.cached is False

    body = last_request(loopback)["body"]
    assert body["model"] == "m"
    assert body["messages"] == [{"role": "user", "content": "three little words"}]
    assert body["max_tokens"] == 50 and body["temperature"] == 0.3
    assert "stream" not in body

    row = loop_session.log.call(r.id)    # id is the call's row in the log
    assert row["response"] == r.text and row["prompt"] == "three little words"
    assert (row["input_tokens"], row["output_tokens"]) == (3, 4)
    assert row["cost"] is None and row["unpriced"] == 1 and row["status"] == "ok"
    assert row["model"] == "loop/m" and row["attempts"] == 1


def test_system_prompt_goes_first(loop_session, loopback):
    loop_session.ask("hello", model="loop/m", system="be terse")
    assert last_request(loopback)["body"]["messages"] == [
        {"role": "system", "content": "be terse"}, {"role": "user", "content": "hello"}]
    row = loop_session.log.history_rows(limit=1)[0]
    assert loop_session.log.call(row["id"])["system"] == "be terse"


def test_configured_price_gives_a_cost(loop_session, loopback):
    loop_session.config.prices = {"loop/*": {"input": 1_000_000, "output": 2_000_000}}
    r = loop_session.ask("a b c", model="loop/m")
    # 3 input tokens at $1/token, 4 output tokens at $2/token.
    assert r.cost == pytest.approx(3 * 1.0 + 4 * 2.0) and r.unpriced is False


def test_stream_yields_chunks_and_leaves_the_response(loop_session, loopback):
    loopback.configure(latency=0.15, tokens_per_second=40)
    st = loop_session.stream("one two three four", model="loop/m")
    chunks = list(st)

    assert len(chunks) == 5              # one SSE event per token, as sent
    assert "".join(chunks) == "Echo: one two three four"
    r = st.response
    assert r.text == "".join(chunks) and r.status == "ok"
    assert (r.input_tokens, r.output_tokens) == (4, 5)
    assert r.ttft_ms is not None and 150 <= r.ttft_ms < r.duration_ms
    assert last_request(loopback)["body"]["stream"] is True
    row = loop_session.log.call(r.id)
    assert row["ttft_ms"] == pytest.approx(r.ttft_ms) and row["response"] == r.text


async def test_aask_and_astream(loop_session, loopback):
    from llm_notebook.providers import http

    try:
        r = await loop_session.aask("async question", model="loop/m")
        assert r.text == "Echo: async question" and r.id is not None
        chunks = [c async for c in loop_session.astream("async stream", model="loop/m")]
        assert "".join(chunks) == "Echo: async stream" and len(chunks) == 3
        rows = loop_session.log.history_rows()
        assert [row["prompt"] for row in rows] == ["async stream", "async question"]
        assert rows[0]["ttft_ms"] is not None and rows[1]["ttft_ms"] is None
    finally:
        await http.close_all()   # the aiohttp session belongs to this test's event loop


def test_json_parses_plain_and_fenced_output(loop_session, loopback):
    r = loop_session.ask("give me json", model="loop/loopback-json")
    assert r.json() == {"echo": "give me json"}
    fenced = loop_session.ask('[[reply:```json\n{"a": [1, 2]}\n```]]', model="loop/m")
    assert fenced.json() == {"a": [1, 2]}


def test_json_error_is_one_clear_line(loop_session, loopback):
    r = loop_session.ask("[[reply:Sure! Here it is: {oops}]]", model="loop/m")
    with pytest.raises(ResponseFormatError) as err:
        r.json()
    message = str(err.value)
    assert "not valid JSON" in message and "line 1" in message and "response_format" in message
    assert "\n" not in message


def test_repr_goes_through_the_one_sanitizer(loop_session, loopback):
    hostile = ('<script>alert(1)</script> <img src=x onerror=alert(2)> '
               '![pixel](http://evil.example/track.png) [a](JaVaScRiPt:alert(3)) '
               '[b](&#106;avascript:alert(4)) [c](data:text/html,x) $\\href{javascript:alert(5)}{m}$ '
               '& done')
    r = loop_session.ask(f"[[reply:{hostile}]]", model="loop/m")
    assert r.text == hostile
    html = r._repr_html_()
    assert "<script" not in html and "<img" not in html and "href=" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&amp; done" in html
    assert "mathjax_ignore" in html      # MathJax leaves the \\href alone
    assert "loop/m" in html              # the footer is there too
    assert not hasattr(r, "_repr_markdown_")  # no text/markdown for a front end to render


def test_prompt_must_be_text(loop_session):
    with pytest.raises(ValueError, match="empty"):
        loop_session.ask("   ", model="loop/m")
    with pytest.raises(TypeError, match="must be a string"):
        loop_session.ask(["not", "a", "string"], model="loop/m")


# ---------------------------------------------------------------- models

def test_alias_resolves_and_logs_the_real_model(loop_session, loopback):
    loop_session.alias("fast", "loop/small")
    r = loop_session.ask("hi", model="fast")
    assert r.model == "loop/small"
    assert last_request(loopback)["body"]["model"] == "small"
    with pytest.raises(ValueError, match="plain name"):
        loop_session.alias("a/b", "loop/small")


def test_alias_loop_is_a_clear_error(nb_session):
    nb_session.alias("a", "b")
    nb_session.alias("b", "a")
    with pytest.raises(UnknownModelError, match="alias loop"):
        nb_session.ask("hi", model="a")


def test_add_endpoint_checks_its_arguments(nb_session):
    with pytest.raises(ValueError, match="http://"):
        nb_session.add_endpoint("lab", "localhost:8000/v1")
    with pytest.raises(ValueError, match="plain word"):
        nb_session.add_endpoint("a/b", "http://localhost:8000/v1")
    with pytest.raises(ValueError, match="via"):
        nb_session.add_endpoint("lab", "http://localhost:8000/v1", via="grpc")


def test_endpoint_key_from_env_var_is_sent(nb_session, loopback, monkeypatch):
    monkeypatch.setenv("LOOP_SERVICE_KEY", "loop-env-secret-123456")
    nb_session.add_endpoint("loop", loopback.url, api_key_env="LOOP_SERVICE_KEY")
    nb_session.ask("hi", model="loop/m")
    assert last_request(loopback)["authorization"] == "Bearer loop-env-secret-123456"


def test_models_lists_providers_and_never_a_key(nb_session, loopback, monkeypatch):
    openai_key = "sk-models-openai-0123456789abcdef"
    endpoint_key = "loop-endpoint-secret-987654"
    monkeypatch.setenv("OPENAI_API_KEY", openai_key)
    nb_session.add_endpoint("loop", loopback.url, api_key=endpoint_key)
    nb_session.alias("fast", "loop/m")

    frame = nb_session.models()
    assert {"model", "provider", "key_present"} <= set(frame.columns)
    by_model = frame.set_index("model")
    assert by_model.loc["local/smollm2", "provider"] == "local"
    # The endpoint's models as its server lists them (asked with the endpoint's key).
    assert bool(by_model.loc["loop/loopback-model", "key_present"]) is True
    assert by_model.loc["fast", "group"] == "alias"
    openai_rows = frame[frame["provider"] == "openai"]
    anthropic_rows = frame[frame["provider"] == "anthropic"]
    assert len(openai_rows) > 10 and openai_rows["key_present"].all()
    assert len(anthropic_rows) > 5 and not anthropic_rows["key_present"].any()
    assert "openai/gpt-4o-mini" in set(frame["model"]) or "gpt-4o-mini" in set(frame["model"])
    dumped = frame.to_csv() + frame.to_json()
    assert openai_key not in dumped and endpoint_key not in dumped
    # keys() answers which providers have a key, never with the key.
    assert nb_session.keys()["openai"] is True and nb_session.keys()["anthropic"] is False
    assert openai_key not in repr(nb_session.keys())


def test_check_reports_latency(loop_session, loopback):
    loopback.configure(latency=0.05)
    report = loop_session.check("loop/m")
    assert report["ok"] is True and report["error"] is None
    assert report["latency_ms"] >= 50
    assert report["reply"].startswith("Echo:")
    assert last_request(loopback)["body"]["max_tokens"] == 5   # a tiny call


def test_check_reports_errors_without_raising(loop_session, loopback):
    loopback.script([{"kind": "401"}])
    report = loop_session.check("loop/m")
    assert report["ok"] is False and report["kind"] == "auth" and "401" in report["error"]
    unknown = loop_session.check("gpt-4o-mni")
    assert unknown["ok"] is False and unknown["kind"] == "config"
    assert "Did you mean" in unknown["error"] and "gpt-4o-mini" in unknown["error"]


def test_default_model_rules(nb_session, loopback, monkeypatch):
    # No key at all: the embedded model.
    assert nb_session.default_model() == "local/smollm2"
    # A provider key present: that provider's small model.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-default-rule-0123456789")
    assert nb_session.default_model() == "openai/gpt-4o-mini"
    # An alias named 'default' beats the provider rule.
    nb_session.add_endpoint("loop", loopback.url)
    nb_session.alias("default", "loop/aliased")
    assert nb_session.default_model() == "default"
    assert nb_session.ask("hi").model == "loop/aliased"
    # The configured default beats everything.
    nb_session.config.default_model = "loop/configured"
    r = nb_session.ask("hi")
    assert r.model == "loop/configured" and last_request(loopback)["body"]["model"] == "configured"


def test_use_checks_the_model_first(loop_session):
    with pytest.raises(UnknownModelError):
        loop_session.use("no-such-model-xyz")
    loop_session.use("loop/m")
    assert loop_session.config.default_model == "loop/m"


@pytest.mark.parametrize("typo, suggestion", [
    ("gpt-4o-mni", "gpt-4o-mini"),
    ("lopp/m", "loop/"),
    ("fsat", "fast"),
])
def test_unknown_model_suggests_close_matches(loop_session, typo, suggestion):
    loop_session.alias("fast", "loop/m")
    with pytest.raises(UnknownModelError) as err:
        loop_session.ask("hi", model=typo)
    message = str(err.value)
    assert f"unknown model {typo!r}" in message and "Did you mean" in message
    assert repr(suggestion) in message and "add_endpoint" in message
    assert "\n" not in message and isinstance(err.value, ValueError)


def test_unknown_embedded_model(nb_session):
    with pytest.raises(UnknownModelError, match="local/smollm2"):
        nb_session.ask("hi", model="local/llama9")


def test_missing_key_says_how_to_fix_it(nb_session):
    with pytest.raises(MissingKeyError) as err:
        nb_session.ask("hi", model="anthropic/claude-3-5-haiku-latest")
    message = str(err.value)
    assert "ANTHROPIC_API_KEY" in message and "set_key('anthropic')" in message
    assert ".env" in message and err.value.kind == "auth"
    assert nb_session.log.count_calls() == 0   # refused before anything was sent or logged


# ---------------------------------------------------------------- keys

def test_key_from_environment(nb_session, monkeypatch):
    monkeypatch.setenv("MISTRAL_API_KEY", "mistral-env-key-0123456789")
    assert keys.get_key("mistral") == "mistral-env-key-0123456789"
    assert nb_session.keys()["mistral"] is True
    route = nb_session.resolve("mistral/mistral-small-latest")
    assert route.api_key == "mistral-env-key-0123456789" and route.kind == "litellm"


def test_key_from_dotenv_file_in_the_working_folder(nb_session, tmp_path, monkeypatch):
    # Registered with monkeypatch first, so whatever .env loading sets is undone after the test.
    monkeypatch.setenv("GROQ_API_KEY", "placeholder")
    monkeypatch.delenv("GROQ_API_KEY")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-real-env-wins-0123456789")
    (tmp_path / ".env").write_text(
        "GROQ_API_KEY=gsk_from_dotenv_file_0123456789abcdef\n"
        "OPENAI_API_KEY=sk-dotenv-loses-0123456789\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(keys, "_dotenv_loaded", False)
    monkeypatch.setattr(keys, "_dotenv", {})

    assert keys.get_key("groq") == "gsk_from_dotenv_file_0123456789abcdef"
    assert nb_session.keys()["groq"] is True
    # A real environment variable is never overridden by the file.
    assert keys.get_key("openai") == "sk-real-env-wins-0123456789"


def test_set_key_asks_with_getpass(nb_session, monkeypatch):
    prompts = []

    def fake_getpass(prompt=""):
        prompts.append(prompt)
        return "  cohere-typed-key-0123456789  \n"

    monkeypatch.setattr("getpass.getpass", fake_getpass)
    assert nb_session.keys()["cohere"] is False
    nb_session.set_key("cohere")
    assert prompts == ["API key for cohere: "]
    assert keys.get_key("cohere") == "cohere-typed-key-0123456789"   # stripped
    assert nb_session.keys()["cohere"] is True
    # Typed keys are redacted wherever they would show up.
    from llm_notebook.redact import redact
    assert "cohere-typed-key" not in redact("echo: cohere-typed-key-0123456789")


def test_set_key_into_the_os_keyring(nb_session, monkeypatch):
    import keyring
    from keyring.backend import KeyringBackend

    class MemoryKeyring(KeyringBackend):
        priority = 1

        def __init__(self):
            self.store = {}

        def get_password(self, service, username):
            return self.store.get((service, username))

        def set_password(self, service, username, password):
            self.store[(service, username)] = password

        def delete_password(self, service, username):
            self.store.pop((service, username), None)

    backend = MemoryKeyring()
    previous = keyring.get_keyring()
    keyring.set_keyring(backend)
    try:
        monkeypatch.setattr("getpass.getpass", lambda prompt="": "xai-typed-into-keyring-0123456789")
        nb_session.set_key("xai", keyring=True)
        assert backend.store == {("llm-notebook", "xai"): "xai-typed-into-keyring-0123456789"}
        # A new kernel has nothing in memory: the key comes back from the keyring.
        monkeypatch.setattr(keys, "_memory", {})
        assert keys.get_key("xai") == "xai-typed-into-keyring-0123456789"
        assert nb_session.keys()["xai"] is True
    finally:
        keyring.set_keyring(previous)


def test_set_key_refuses_an_empty_key(nb_session, monkeypatch):
    monkeypatch.setattr("getpass.getpass", lambda prompt="": "   ")
    with pytest.raises(ValueError, match="no key entered"):
        nb_session.set_key("openai")
    assert nb_session.keys()["openai"] is False


# ---------------------------------------------------------------- the one session

def test_session_is_one_per_kernel(nb_session, log_path):
    assert llm_notebook.session() is nb_session
    assert nb_session.log.path == log_path


def test_errors_are_llmerrors_with_kinds(loop_session, loopback):
    loopback.script([{"kind": "400", "message": "bad thing"}])
    with pytest.raises(LLMError) as err:
        loop_session.ask("hi", model="loop/m")
    assert err.value.kind == "bad_request" and err.value.status == 400
    assert "bad thing" in str(err.value)
    row = loop_session.log.call(err.value.call_id)
    assert row["status"] == "error" and row["error_kind"] == "bad_request"
    assert "bad thing" in row["error"]
    assert llm_notebook.session() is loop_session
