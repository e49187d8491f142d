"""Saved templates used from `%%llm -t NAME` and `%llm templates`, through the loopback server."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell


@pytest.fixture
def shell(loop_session):
    """An in-process IPython shell with the extension loaded, on a fresh Session and log."""
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "llm_notebook")
    saved = dict(shell.user_ns)
    yield shell
    shell.user_ns.clear()
    shell.user_ns.update(saved)


@pytest.fixture
def greet(loop_session):
    return loop_session.templates.save(
        "greet", "Greet {who} in {lang}.{input}", model="loop/loopback-model",
        options={"max_tokens": 40, "temperature": 0}, defaults={"lang": "French", "input": ""})


def _run(shell, line, body="\n"):
    result = shell.run_cell(f"%%llm {line}\n{body}")
    return result


def _sent(loopback):
    return loopback.requests()[-1]["body"]


def test_template_fills_from_var_and_defaults(shell, greet, loopback):
    result = _run(shell, "-t greet --var who=Ada --no-stream -f text -o r", " Be brief.")
    assert result.success, result.error_in_exec
    body = _sent(loopback)
    assert body["model"] == "loopback-model"  # the template's model, through endpoint "loop"
    assert body["max_tokens"] == 40 and body["temperature"] == 0  # the template's options
    # The cell's text is {input} (whether its final newline is kept is the magic's business).
    assert body["messages"][-1]["role"] == "user"
    assert body["messages"][-1]["content"].rstrip("\n") == "Greet Ada in French. Be brief."
    assert shell.user_ns["r"].text == "Echo: Greet Ada in French. Be brief."


def test_template_fills_from_the_namespace_and_var_wins(shell, greet, loopback):
    shell.user_ns["who"] = "Grace"
    shell.user_ns["lang"] = "German"
    assert _run(shell, "-t greet --no-stream -f text").success
    assert _sent(loopback)["messages"][-1]["content"] == "Greet Grace in German."
    assert _run(shell, "-t greet --var lang=Dutch --no-stream -f text").success
    assert _sent(loopback)["messages"][-1]["content"] == "Greet Grace in Dutch."


def test_an_older_version_by_name_at_version(shell, greet, loop_session, loopback):
    loop_session.templates.save("greet", "Hello {who}!", model="loop/loopback-model")
    assert _run(shell, "-t greet@1 --var who=Ada --no-stream -f text").success
    assert _sent(loopback)["messages"][-1]["content"] == "Greet Ada in French."
    assert _run(shell, "-t greet --var who=Ada --no-stream -f text").success
    assert _sent(loopback)["messages"][-1]["content"] == "Hello Ada!"


def test_template_system_text_is_rendered(shell, loop_session, loopback):
    loop_session.templates.save("sys", "Say hi to {who}.", system="You speak {lang}.",
                                model="loop/loopback-model", defaults={"lang": "Italian"})
    result = _run(shell, "-t sys --var who=Ada --no-stream -f text")
    assert result.success, result.error_in_exec
    messages = _sent(loopback)["messages"]
    assert messages[0] == {"role": "system", "content": "You speak Italian."}
    assert messages[-1]["content"] == "Say hi to Ada."


def test_command_line_model_overrides_the_template(shell, greet, loopback):
    assert _run(shell, "loop/loopback-small -t greet --var who=Ada --no-stream -f text").success
    assert _sent(loopback)["model"] == "loopback-small"


def test_unknown_template_is_a_one_line_usage_error(shell, greet):
    result = _run(shell, "-t gret --no-stream")
    error = result.error_in_exec
    assert isinstance(error, UsageError)
    assert "no template named 'gret'" in str(error) and "did you mean 'greet'" in str(error)
    assert "\n" not in str(error)


def test_missing_variable_is_a_usage_error_naming_it(shell, greet, loopback):
    result = _run(shell, "-t greet --no-stream")
    error = result.error_in_exec
    assert isinstance(error, UsageError)
    assert "'who'" in str(error)
    assert loopback.requests() == []


def test_llm_templates_lists_them(shell, greet, loop_session):
    loop_session.templates.save("other", "x {y}", tags=["t"])
    frame = shell.run_line_magic("llm", "templates")
    assert list(frame["name"]) == ["greet", "other"]
    assert list(frame["version"]) == [1, 1]


@pytest.mark.slow
def test_template_through_litellm_over_real_http(shell, loop_session, loopback):
    """The template names an endpoint this kernel routes through litellm to the loopback server
    (a template cannot carry the server's address itself)."""
    loop_session.add_endpoint("viallm", loopback.url, api_key="sk-loopback-test", via="litellm")
    loop_session.templates.save("via-litellm", "Translate {text} to {lang}.",
                                model="viallm/gpt-4o-mini", options={"max_tokens": 30},
                                defaults={"lang": "Spanish"})
    result = _run(shell, "-t via-litellm --var text=cheese --no-stream -f text -o r")
    assert result.success, result.error_in_exec
    body = _sent(loopback)
    assert body["model"] == "gpt-4o-mini"
    assert body["messages"][-1]["content"] == "Translate cheese to Spanish."
    assert shell.user_ns["r"].text == "Echo: Translate cheese to Spanish."


# --- df.llm.map with a saved template -----------------------------------------------------------


@pytest.fixture
def frame():
    import pandas as pd

    import llm_notebook  # noqa: F401  (registers df.llm)

    return pd.DataFrame({"who": ["Ada", "Alan", "Grace"], "lang": ["German", "Dutch", "Welsh"]},
                        index=["a", "b", "c"])


def _user_messages(loopback):
    return sorted(r["body"]["messages"][-1]["content"] for r in loopback.requests())


def test_map_by_template_name_fills_from_columns(loop_session, greet, frame, loopback):
    out = frame.llm.map("greet", cache=False, progress=False, session=loop_session)
    assert list(out.index) == ["a", "b", "c"]
    assert list(out) == ["Echo: Greet Ada in German.", "Echo: Greet Alan in Dutch.",
                         "Echo: Greet Grace in Welsh."]
    bodies = [r["body"] for r in loopback.requests()]
    assert {b["model"] for b in bodies} == {"loopback-model"}  # the template's model
    assert {(b["max_tokens"], b["temperature"]) for b in bodies} == {(40, 0)}  # its options


def test_map_uses_defaults_for_missing_columns(loop_session, greet, frame, loopback):
    out = frame[["who"]].llm.map("greet", cache=False, progress=False, session=loop_session)
    assert list(out) == ["Echo: Greet Ada in French.", "Echo: Greet Alan in French.",
                         "Echo: Greet Grace in French."]


def test_map_with_a_template_object_and_an_old_version(loop_session, greet, frame, loopback):
    loop_session.templates.save("greet", "Hello {who}!", model="loop/loopback-model")
    old = loop_session.templates.get("greet", 1)
    frame.llm.map(old, cache=False, progress=False, session=loop_session)
    assert _user_messages(loopback) == ["Greet Ada in German.", "Greet Alan in Dutch.",
                                        "Greet Grace in Welsh."]
    loopback.reset()
    frame.llm.map("greet@2", cache=False, progress=False, session=loop_session)
    assert _user_messages(loopback) == ["Hello Ada!", "Hello Alan!", "Hello Grace!"]
    loopback.reset()
    frame.llm.map("greet", cache=False, progress=False, session=loop_session)
    assert _user_messages(loopback) == ["Hello Ada!", "Hello Alan!", "Hello Grace!"]


def test_map_renders_the_template_system_per_row(loop_session, frame, loopback):
    loop_session.templates.save("sys-map", "Say hi to {who}.", system="You speak {lang}.",
                                model="loop/loopback-model")
    frame.llm.map("sys-map", cache=False, progress=False, session=loop_session)
    systems = sorted(r["body"]["messages"][0]["content"] for r in loopback.requests())
    assert systems == ["You speak Dutch.", "You speak German.", "You speak Welsh."]
