"""`%llm <command>` through IPython's InteractiveShell, against the loopback server."""

from __future__ import annotations

import importlib.util

import pytest
from cells import ok, run
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from llm_notebook.magics import line_magic

SECRET = "sk-linetest-0123456789abcdef"




def value(shell, line: str):
    """What `%llm ...` returns (the table shown as the cell's result)."""
    with capture_output() as cap:
        out = shell.run_line_magic("llm", line)
    return out, cap


def usage_error(shell, cell: str) -> str:
    result, cap = run(shell, cell)
    assert isinstance(result.error_in_exec, UsageError), (result.error_in_exec, cap.stdout, cap.stderr)
    assert "Traceback" not in cap.stdout + cap.stderr
    message = str(result.error_in_exec)
    assert "\n" not in message
    return message


@pytest.fixture
def ip(ipshell, loop_session, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    return ipshell


def test_models_lists_usable_models_with_key_presence(ip):
    import llm_notebook

    llm_notebook.session().alias("fast", "loop/m")
    frame, cap = value(ip, "models")
    groups = set(frame["group"])
    assert {"embedded", "endpoint", "alias", "provider (key present)"} == groups
    assert {"local/smollm2", "loop/loopback-model", "fast", "openai/gpt-4o-mini"} <= set(frame["model"])
    assert set(frame["key"]) <= {"yes", "no", ""}
    assert (frame.loc[frame["model"] == "openai/gpt-4o-mini", "key"] == "yes").all()
    assert SECRET not in frame.to_string() + frame._repr_html_() + cap.stdout

    everything, _ = value(ip, "models --all")
    assert len(everything) > len(frame)
    assert (everything["key"] == "no").any()
    only, _ = value(ip, "models --all -q CLAUDE")
    assert len(only) and only["model"].str.contains("claude", case=False).all()


def test_use_sets_the_default_model(ip, loopback):
    import llm_notebook

    cap = ok(ip, "%llm use loop/chosen")
    assert "loop/chosen" in cap.stdout
    assert llm_notebook.session().config.default_model == "loop/chosen"
    ok(ip, "%%llm\n[[reply:from default]]")
    assert loopback.requests()[-1]["body"]["model"] == "chosen"
    message = usage_error(ip, "%llm use gpt-4o-mni")
    assert "unknown model" in message and "gpt-4o-mini" in message
    assert llm_notebook.session().config.default_model == "loop/chosen"


def test_alias(ip, loopback):
    cap = ok(ip, "%llm alias quick loop/aliased")
    assert "quick → loop/aliased" in cap.stdout
    ok(ip, "%%llm quick\n[[reply:via alias]]")
    assert loopback.requests()[-1]["body"]["model"] == "aliased"
    assert "unknown model" in usage_error(ip, "%llm alias bad nosuchprovider/x")
    assert "alias is a plain name" in usage_error(ip, "%llm alias a/b loop/m")
    # An alias to a provider whose key is missing is fine: the key can come later.
    ok(ip, "%llm alias later anthropic/claude-3-5-haiku-latest")


def test_new_starts_a_new_conversation(ip, loopback):
    ok(ip, "%%llm loop/m\none [[reply:1]]")
    cap = ok(ip, "%llm new -s 'Answer in French.'")
    assert "New conversation" in cap.stdout
    ok(ip, "%%llm loop/m\ntwo [[reply:2]]")
    messages = loopback.requests()[-1]["body"]["messages"]
    assert messages == [{"role": "system", "content": "Answer in French."},
                        {"role": "user", "content": "two [[reply:2]]"}]
    assert "unknown model" in usage_error(ip, "%llm new -m nosuchprovider/x")


def test_history_search_and_limit(ip):
    out, cap = value(ip, "history")
    assert out is None and "No calls" in cap.stdout
    for word in ("apple", "banana", "cherry"):
        ok(ip, f"%%llm loop/m --new\n{word} [[reply:<b>{word}</b> pie]]")
    frame, _ = value(ip, "history -n 2")
    assert len(frame) == 2 and frame["prompt"].iloc[0].startswith("cherry")
    frame, _ = value(ip, "history -q banana")
    assert list(frame["response"]) == ["<b>banana</b> pie"]
    assert "&lt;b&gt;banana" in frame._repr_html_()  # pandas escapes model text in tables
    out, cap = value(ip, "history -q durian")
    assert out is None and "No matching" in cap.stdout
    assert "-n must be 1" in usage_error(ip, "%llm history -n 0")


@pytest.mark.parametrize("by", ["model", "day", "hour", "notebook"])
def test_usage_groupings(ip, by):
    ok(ip, "%%llm loop/m\n[[reply:a b c]]")
    frame, _ = value(ip, f"usage --by {by}")
    assert by in frame.columns
    assert frame["calls"].sum() == 1 and frame["output_tokens"].sum() == 3


def test_usage_errors_and_panel(ip):
    assert "invalid choice: 'week'" in usage_error(ip, "%llm usage --by week")
    out, cap = value(ip, "usage")
    assert out is None and "No calls" in cap.stdout
    if importlib.util.find_spec("llm_notebook.widgets.usage_panel") is None:
        assert "usage panel is not available" in usage_error(ip, "%llm usage --panel")
    else:
        panel, _ = value(ip, "usage --panel")
        assert type(panel).__name__ == "UsagePanel"


def test_keys_never_shows_a_key(ip):
    cap = ok(ip, "%llm keys")
    lines = cap.stdout.splitlines()
    assert any(line.split()[:2] == ["openai", "yes"] for line in lines)
    assert any(line.split()[:2] == ["anthropic", "no"] for line in lines)
    assert "ANTHROPIC_API_KEY" in cap.stdout and "set_key" in cap.stdout
    assert SECRET not in cap.stdout


def test_check(ip, loopback):
    cap = ok(ip, "%llm check loop/m")
    assert "loop/m answered in" in cap.stdout and "Echo: Reply with the word" in cap.stdout
    import llm_notebook

    llm_notebook.session().config.max_retries = 0
    loopback.script([{"kind": "401", "times": 1}])
    message = usage_error(ip, "%llm check loop/m")
    assert message.startswith("loop/m failed:")
    assert "unknown model" in usage_error(ip, "%llm check nosuchprovider/x")


def test_chat_and_templates(ip):
    if importlib.util.find_spec("llm_notebook.widgets.chat") is None:
        assert "chat widget is not available" in usage_error(ip, "%llm chat")
    else:
        widget, _ = value(ip, "chat")
        assert type(widget).__name__ == "Chat"
    out, cap = value(ip, "templates")
    assert out is None and "No templates saved yet" in cap.stdout
    import llm_notebook

    llm_notebook.session().templates.save("greet", "Hello {name}")
    frame, _ = value(ip, "templates")
    assert list(frame["name"]) == ["greet"]


def test_help_and_unknown_commands(ip):
    cap = ok(ip, "%llm")
    for name in line_magic.COMMANDS:
        assert f"%llm {name}" in cap.stdout
    cap = ok(ip, "%llm help")
    assert "--no-stream" in cap.stdout  # includes the options of %%llm
    message = usage_error(ip, "%llm modles")
    assert "unknown command 'modles'" in message and "%llm models" in message
    assert "%%llm" in usage_error(ip, "%llm tell me a joke")


@pytest.mark.parametrize("name", sorted(line_magic.COMMANDS))
def test_every_command_has_help(ip, name):
    cap = ok(ip, f"%llm {name} --help")
    assert cap.stdout.startswith(f"Usage: %llm {name}")
    assert line_magic.COMMANDS[name].summary


def test_bad_arguments_show_the_usage_line(ip):
    message = usage_error(ip, "%llm history --bogus")
    assert "unrecognized arguments: --bogus" in message and "Usage: %llm history" in message
    message = usage_error(ip, "%llm use")
    assert "required: MODEL" in message and "Usage: %llm use MODEL" in message
    message = usage_error(ip, "%llm history -n many")
    assert "invalid int value: 'many'" in message
