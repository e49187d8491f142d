"""Keys never reach the log or error text, even when a provider's error body echoes them.

The end-to-end tests send a sentinel key to the loopback server, which answers 401 with the key
in its body (as some providers do); then every byte of the log (.db, -wal, -shm) and the raised
error (message, repr, formatted traceback) are searched for it, on the lean HTTP path and on the
litellm path.
"""

from __future__ import annotations

import glob
import os
import secrets
import traceback

import pytest

from llm_notebook import keys, redact
from llm_notebook.errors import LLMError



@pytest.fixture
def SENTINEL():
    """A fresh key per test (redaction remembers keys for the process, so reusing one would let
    a test pass on an earlier test's registration). Deliberately not key-shaped (no sk-/gsk_
    prefix, only hex): only the exact-key net can catch it."""
    return "zq" + secrets.token_hex(10)


@pytest.fixture(autouse=True)
def _isolated_keys(monkeypatch):
    monkeypatch.setattr(keys, "_memory", {})
    monkeypatch.setattr(keys, "_dotenv_loaded", True)


def log_bytes(log_path: str) -> bytes:
    files = [p for p in glob.glob(log_path + "*") if os.path.isfile(p)]
    assert os.path.basename(log_path) in {os.path.basename(p) for p in files}
    return b"".join(open(p, "rb").read() for p in files)


def assert_nowhere(secret: str, exc: BaseException, log_path: str) -> None:
    shown = "".join(traceback.format_exception(exc))
    assert secret not in str(exc) and secret not in repr(exc) and secret not in shown
    data = log_bytes(log_path)
    assert secret.encode() not in data
    assert secret.encode("utf-16-le") not in data


# ---------------------------------------------------------------- the redact() function

@pytest.mark.parametrize("text, leaked", [
    ("Incorrect API key provided: sk-proj-abcdefghijklmnop1234", "sk-proj-abcdefghijklmnop1234"),
    ("key sk-ant-api03-AAAAAAAAAAAAAAAAAAAA was rejected", "sk-ant-api03-AAAAAAAAAAAAAAAAAAAA"),
    ("groq says gsk_ABCDEFGHIJKLMNOPQRSTUV is bad", "gsk_ABCDEFGHIJKLMNOPQRSTUV"),
    ("google AIzaSyA-1234567890abcdefghijklmnopqrstu", "AIzaSyA-1234567890abcdefghijklmnopqrstu"),
    ("aws AKIAABCDEFGHIJKLMNOP here", "AKIAABCDEFGHIJKLMNOP"),
    ("Authorization: Bearer abc.def-ghi_jkl", "abc.def-ghi_jkl"),
    ('{"api_key": "whatever-secret-1"}', "whatever-secret-1"),
    ("x-api-key=hunter2hunter2", "hunter2hunter2"),
])
def test_key_shapes_are_masked(text, leaked):
    out = redact.redact(text)
    assert leaked not in out and redact.MASK in out


def test_registered_and_environment_keys_are_masked(monkeypatch):
    redact.register("plainsecretvalue42")
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tokenvalue-from-env-77")
    out = redact.redact("a plainsecretvalue42 b tokenvalue-from-env-77 c")
    assert out == f"a {redact.MASK} b {redact.MASK} c"


def test_longest_key_is_masked_whole():
    redact.register("abcdef")
    redact.register("abcdef-and-more-123")
    assert redact.redact("k=abcdef-and-more-123!") == f"k={redact.MASK}!"


def test_ordinary_text_is_left_alone():
    text = "The sky is blue; tokens: 12; skip this. Risk-free task-based ask-me."
    assert redact.redact(text) == text
    assert redact.redact("") == ""


def test_llmerror_text_is_redacted():
    redact.register("my-registered-secret-99")
    err = LLMError("provider said: my-registered-secret-99 is wrong")
    assert "my-registered-secret-99" not in str(err) and redact.MASK in str(err)


# ---------------------------------------------------------------- end to end: lean HTTP path

@pytest.mark.parametrize("how", ["require_key", "fault_401"])
def test_echoed_key_lean_path_is_nowhere(nb_session, loopback, log_path, how, SENTINEL):
    if how == "require_key":
        loopback.configure(require_key="the-right-key-000000")
    else:
        loopback.script([{"kind": "401"}])
    nb_session.add_endpoint("loop", loopback.url, api_key=SENTINEL)

    with pytest.raises(LLMError) as err:
        nb_session.ask("hello", model="loop/m")
    # The server really did echo it: the redaction is what keeps it out.
    assert loopback.requests()[-1]["authorization"] == f"Bearer {SENTINEL}"
    assert err.value.kind == "auth" and err.value.status == 401
    assert "Incorrect API key provided" in str(err.value) and redact.MASK in str(err.value)
    assert loopback.stats()["requests"] == 1     # a 401 is never retried

    row = nb_session.log.call(err.value.call_id)
    assert row["status"] == "error" and redact.MASK in row["error"]
    nb_session.log.close()
    assert_nowhere(SENTINEL, err.value, log_path)


def test_echoed_key_from_env_var_streamed(nb_session, loopback, log_path, monkeypatch, SENTINEL):
    # A key under an env var name that is not key-like: the endpoint registers it when read.
    monkeypatch.setenv("LOOPCREDENTIAL", SENTINEL)
    loopback.script([{"kind": "401"}])
    nb_session.add_endpoint("loop", loopback.url, api_key_env="LOOPCREDENTIAL")
    with pytest.raises(LLMError) as err:
        list(nb_session.stream("hello", model="loop/m"))
    assert loopback.requests()[-1]["authorization"] == f"Bearer {SENTINEL}"
    nb_session.log.close()
    assert_nowhere(SENTINEL, err.value, log_path)


# ---------------------------------------------------------------- end to end: litellm path

@pytest.mark.parametrize("how", ["require_key", "fault_401"])
def test_echoed_key_litellm_path_is_nowhere(nb_session, loopback, log_path, SENTINEL, how):
    if how == "require_key":
        loopback.configure(require_key="the-right-key-000000")
    else:
        loopback.script([{"kind": "401"}])
    with pytest.raises(LLMError) as err:
        nb_session.ask("hello", model="openai/gpt-4o-mini", api_base=loopback.url,
                       api_key=SENTINEL)
    assert loopback.requests()[-1]["authorization"] == f"Bearer {SENTINEL}"
    assert err.value.kind == "auth"
    assert loopback.stats()["requests"] == 1     # neither we nor litellm retried
    row = nb_session.log.call(err.value.call_id)
    assert row["status"] == "error" and "api_key" not in (row["options"] or "")
    nb_session.log.close()
    assert_nowhere(SENTINEL, err.value, log_path)


def test_key_passed_per_call_is_not_logged_on_success(nb_session, loopback, log_path, SENTINEL):
    r = nb_session.ask("hello", model="openai/gpt-4o-mini", api_base=loopback.url,
                       api_key=SENTINEL)
    assert r.status == "ok" and loopback.requests()[-1]["authorization"] == f"Bearer {SENTINEL}"
    nb_session.log.close()
    assert SENTINEL.encode() not in log_bytes(log_path)
