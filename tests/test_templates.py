"""The template library: versions, lookups, lists, diffs, rendering, and the rendering sandbox."""

from __future__ import annotations

import dataclasses
import pickle
import sqlite3
import threading

import pandas as pd
import pytest

from llm_notebook.log import Log
from llm_notebook.placeholders import MissingVariableError, PlaceholderSyntaxError
from llm_notebook.templates import (
    Template,
    TemplateError,
    TemplateLibrary,
    TemplateNotFound,
    TemplateSyntaxError,
    TemplateVariableError,
)


@pytest.fixture
def lib(nb_session):
    return nb_session.templates


# --- saving and versions ------------------------------------------------------------------------


def test_save_then_get_round_trips_every_field(lib):
    saved = lib.save("summarize", "Summarize {text}\nin {n} words.", system="You are {persona}.",
                     model="openai/gpt-4o-mini", options={"temperature": 0.2, "max_tokens": 50},
                     defaults={"n": 30, "persona": "terse"}, tags=["demo", "prod"],
                     message="first try")
    got = lib.get("summarize")
    assert got == saved
    assert got.version == 1
    assert got.prompt == "Summarize {text}\nin {n} words."
    assert got.system == "You are {persona}."
    assert got.model == "openai/gpt-4o-mini"
    assert got.options == {"temperature": 0.2, "max_tokens": 50}
    assert got.defaults == {"n": 30, "persona": "terse"}
    assert got.tags == ("demo", "prod")
    assert got.message == "first try"
    assert got.created is not None and got.created.tzinfo is not None
    assert got.variables == ["text", "n", "persona"]


def test_every_save_is_a_new_immutable_version(lib):
    v1 = lib.save("t", "one {x}")
    v2 = lib.save("t", "two {x}", message="second")
    v3 = lib.save("t", "two {x}")  # same content still makes a version: save means save
    assert [v1.version, v2.version, v3.version] == [1, 2, 3]
    assert lib.get("t").prompt == "two {x}" and lib.get("t").version == 3
    assert lib.get("t", 1).prompt == "one {x}"
    assert lib.get("t@2").message == "second"
    with pytest.raises(dataclasses.FrozenInstanceError):
        v1.prompt = "changed"  # type: ignore[misc]
    assert lib.get("t", 1).prompt == "one {x}"


def test_tags_carry_over_unless_given(lib):
    lib.save("t", "a {x}", tags=["prod"])
    assert lib.save("t", "b {x}").tags == ("prod",)
    assert lib.save("t", "c {x}", tags="beta").tags == ("beta",)  # a str is one tag
    assert lib.save("t", "d {x}", tags=()).tags == ()


def test_templates_persist_in_the_log_file_for_other_kernels(lib, log_path):
    lib.save("shared", "Hi {name}", defaults={"name": "you"})
    other = TemplateLibrary(Log(log_path))  # another kernel opening the same log
    assert other.get("shared").render() == "Hi you"


def test_concurrent_saves_from_two_logs_get_distinct_versions(lib, log_path):
    lib.save("race", "v {x}")
    libraries = [TemplateLibrary(Log(log_path)) for _ in range(2)]
    errors = []

    def save_many(library, who):
        try:
            for i in range(15):
                library.save("race", f"{who} {i} {{x}}")
        except Exception as exc:  # noqa: BLE001 (surfaced below: a thread's exception is otherwise lost)
            errors.append(exc)

    threads = [threading.Thread(target=save_many, args=(lb, n)) for n, lb in enumerate(libraries)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(lib.history("race")["version"]) == list(range(1, 32))


def test_migration_creates_the_table_on_a_blank_database(tmp_path):
    log = Log(str(tmp_path / "blank.db"))
    applied = [r[0] for r in log.read("SELECT name FROM _migrations")]
    assert "m020_templates" in applied
    cols = {r[1] for r in log.read("PRAGMA table_info(templates)")}
    assert {"name", "version", "prompt", "system", "model", "options", "defaults", "tags",
            "message", "created"} <= cols
    with pytest.raises(sqlite3.IntegrityError), log.write() as db:  # (name, version) is unique
        for _ in range(2):
            db.execute("INSERT INTO templates (name, version, prompt, created) "
                       "VALUES ('a', 1, 'p', 0)")


# --- lookups and errors -------------------------------------------------------------------------


def test_get_unknown_name_suggests_close_names(lib):
    lib.save("summarize", "S {text}")
    lib.save("translate", "T {text}")
    with pytest.raises(TemplateNotFound) as err:
        lib.get("sumarize")
    message = str(err.value)
    assert "no template named 'sumarize'" in message
    assert "did you mean 'summarize'" in message
    assert "saved templates: summarize, translate" in message
    assert isinstance(err.value, LookupError) and isinstance(err.value, ValueError)


def test_get_on_an_empty_library_says_how_to_save(lib):
    with pytest.raises(TemplateNotFound, match=r"no templates are saved yet; save one with"):
        lib.get("anything")


def test_get_unknown_version_lists_the_versions(lib):
    for i in range(3):
        lib.save("t", f"{i} {{x}}")
    with pytest.raises(TemplateNotFound, match=r"template 't' has no version 7; its versions are 1–3"):
        lib.get("t", 7)
    with pytest.raises(TemplateError, match="whole number"):
        lib.get("t@two")
    with pytest.raises(TemplateError, match="either as 'name@N' or as version=N"):
        lib.get("t@1", 2)


@pytest.mark.parametrize("name", ["", "my template", "../etc/passwd", "a/b", ".hidden", "x" * 101,
                                  "na@me", None, 3])
def test_bad_names_are_refused_with_the_rule(lib, name):
    with pytest.raises(TemplateError, match="template names are"):
        lib.save(name, "hi {x}")
    assert lib.names() == []


def test_names_differing_only_by_case_are_refused(lib):
    lib.save("Summary", "S {x}")
    with pytest.raises(TemplateError, match="a template named 'Summary' exists"):
        lib.save("summary", "s {x}")
    with pytest.raises(TemplateNotFound, match="did you mean 'Summary'"):
        lib.get("summary")


def test_syntax_errors_report_line_and_column_and_save_nothing(lib):
    with pytest.raises(TemplateSyntaxError) as err:
        lib.save("broken", "Line one\nthen {text!r} here")
    e = err.value
    assert (e.field, e.line, e.column, e.kind) == ("prompt", 2, 11, "conversion")
    assert "template 'broken': prompt line 2, column 11:" in str(e)
    assert isinstance(e, PlaceholderSyntaxError)
    with pytest.raises(TemplateSyntaxError) as err:
        lib.save("broken", "fine {x}", system='JSON like {"a": 1}')
    assert (err.value.field, err.value.line, err.value.column) == ("system", 1, 12)
    assert "write '{{'" in str(err.value) or "literal brace" in str(err.value)
    assert "broken" not in lib
    # The error survives pickling (batch workers, logging) with its position.
    again = pickle.loads(pickle.dumps(err.value))
    assert str(again) == str(err.value)


@pytest.mark.parametrize("kwargs, match", [
    ({"prompt": "  "}, "needs a prompt"),
    ({"prompt": 42}, "the prompt must be text, not int"),
    ({"defaults": {"nope": 1}}, "a default for 'nope', which the template does not use"),
    ({"defaults": ["x"]}, "defaults must be a mapping"),
    ({"options": {"model": "gpt"}}, "option 'model' is not allowed: set it with model="),
    ({"options": {"api_key": "sk-secret"}}, "option 'api_key' sets a credential"),
    ({"options": {"api_base": "http://x"}}, "option 'api_base' sets where the request goes"),
    ({"options": {"extra_headers": {"A": "b"}}}, "option 'extra_headers' sets what the request"),
    ({"options": {"nonsense": 1}}, "option 'nonsense' is not a generation option"),
    ({"options": {"temperature": "hot"}}, "option 'temperature' takes a number"),
    ({"options": {"logit_bias": {"1": object()}}}, "options must be JSON values"),
    ({"options": {"temperature": float("nan")}}, "options must be JSON values"),
    ({"tags": ["ok", ""]}, "tags are non-empty text"),
    ({"model": 3}, "model must be text"),
])
def test_bad_content_is_refused_with_a_clear_message(lib, kwargs, match):
    args = {"prompt": "Hello {x}", **kwargs}
    with pytest.raises(TemplateError, match=match):
        lib.save("t", args.pop("prompt"), **args)
    assert lib.names() == []


def test_the_refused_key_never_reaches_the_log(lib, log_path):
    with pytest.raises(TemplateError):
        lib.save("t", "Hi {x}", options={"api_key": "sk-secret-123"})
    with open(log_path, "rb") as f:
        assert b"sk-secret-123" not in f.read()


def test_delete_removes_every_version(lib):
    lib.save("gone", "a {x}")
    lib.save("gone", "b {x}")
    lib.save("kept", "c {x}")
    assert lib.delete("gone") == 2
    assert "gone" not in lib and lib.names() == ["kept"]
    with pytest.raises(TemplateNotFound):
        lib.get("gone")
    with pytest.raises(TemplateNotFound):
        lib.delete("gone")
    assert lib.save("gone", "new {x}").version == 1  # a deleted name starts afresh


# --- list, history, diff ------------------------------------------------------------------------


def test_list_shows_latest_versions_and_filters_by_tag(lib):
    empty = lib.list()
    assert list(empty.columns) == ["name", "version", "versions", "model", "tags", "variables",
                                   "updated"]
    assert empty.empty
    lib.save("b", "B {x}", tags=["prod"], model="loop/m")
    lib.save("a", "A {y}", tags=["dev"])
    lib.save("a", "A {y} {z}", tags=["prod", "dev"])
    frame = lib.list()
    assert list(frame["name"]) == ["a", "b"]
    a = frame.iloc[0]
    assert (a["version"], a["versions"], a["tags"], a["variables"]) == (2, 2, ["prod", "dev"], ["y", "z"])
    assert frame.iloc[1]["model"] == "loop/m"
    assert isinstance(frame["updated"].iloc[0], pd.Timestamp)
    assert list(lib.list(tag="prod")["name"]) == ["a", "b"]
    assert list(lib.list(tag="dev")["name"]) == ["a"]
    assert lib.list(tag="missing").empty
    assert len(lib) == 2


def test_history_lists_versions_newest_first_with_messages(lib):
    lib.save("t", "one {x}", message="start")
    lib.save("t", "two {x}", message="shorter")
    history = lib.history("t")
    assert list(history["version"]) == [2, 1]
    assert list(history["message"]) == ["shorter", "start"]
    assert list(history["prompt"]) == ["two {x}", "one {x}"]
    with pytest.raises(TemplateNotFound):
        lib.history("nope")


def test_diff_shows_changed_fields_as_a_unified_diff(lib):
    lib.save("t", "Summarize {text}.\nBe brief.", defaults={"text": "x"})
    lib.save("t", "Summarize {text}.\nBe very brief.", model="loop/m",
             options={"temperature": 0.5}, defaults={"text": "y"}, tags=["new"])
    text = lib.diff("t", 1, 2)
    lines = text.splitlines()
    assert lines[0] == "--- t v1" and lines[1] == "+++ t v2"
    assert "-  Be brief." in lines and "+  Be very brief." in lines
    assert "   Summarize {text}." in lines  # unchanged context
    assert "-model: (none)" in lines and "+model: loop/m" in lines
    assert '+    "temperature": 0.5' in lines
    assert '-    "text": "x"' in lines and '+    "text": "y"' in lines
    assert "+tags: new" in lines
    assert lib.diff("t") == text  # default: latest against the one before
    reverse = lib.diff("t", 2, 1)
    assert "+  Be brief." in reverse.splitlines()
    lib.save("t", "Summarize {text}.\nBe very brief.", model="loop/m",
             options={"temperature": 0.5}, defaults={"text": "y"}, tags=["new"], message="same")
    assert lib.diff("t") == ""  # identical content: empty diff
    with pytest.raises(TemplateNotFound, match="no version 9"):
        lib.diff("t", 1, 9)


def test_diff_of_a_first_version_explains(lib):
    lib.save("solo", "only {x}")
    with pytest.raises(TemplateError, match="no version before 1"):
        lib.diff("solo")


def test_library_html_escapes_template_text(lib):
    lib.save("xss", "<script>alert(1)</script> {x}", tags=["<b>t</b>"])
    html = lib._repr_html_()
    assert "<script>" not in html and "&lt;b&gt;t&lt;/b&gt;" in html


# --- rendering ----------------------------------------------------------------------------------


def test_render_applies_defaults_and_overrides(lib):
    t = lib.save("t", "Summarize {text} in {n} words.", system="Tone: {tone}.",
                 defaults={"n": 30, "tone": "dry"})
    assert t.render(text="this") == "Summarize this in 30 words."
    assert t.render(text="this", n=5) == "Summarize this in 5 words."
    assert t.render({"text": "row", "n": 7, "other": "ignored"}) == "Summarize row in 7 words."
    assert t.render({"text": "row"}, text="kw wins") == "Summarize kw wins in 30 words."
    assert t.render_system() == "Tone: dry."
    assert t.render_system(tone="warm") == "Tone: warm."
    assert lib.save("nosys", "hi {x}").render_system(x=1) is None


def test_render_takes_a_dataframe_row(lib):
    t = lib.save("row", "{name} is {age}")
    frame = pd.DataFrame({"name": ["Ada", "Alan"], "age": [36, 41], "extra": [1, 2]})
    assert [t.render(row) for _, row in frame.iterrows()] == ["Ada is 36", "Alan is 41"]


def test_render_variables_named_like_parameters(lib):
    t = lib.save("odd", "{self} {values} {variables}")
    assert t.render(self="a", values="b", variables="c") == "a b c"


def test_missing_variable_names_it(lib):
    t = lib.save("t", "Summarize {text} for {audience}", defaults={"audience": "kids"})
    with pytest.raises(TemplateVariableError) as err:
        t.render(txt="oops")
    e = err.value
    assert e.name == "text" and e.missing == ["text"]
    assert str(e) == ("template 't' needs a value for variable 'text' (did you mean 'txt'?): "
                      "pass text=..., or save the template with defaults={...}")
    assert isinstance(e, MissingVariableError)
    both = lib.save("two", "{a} {b}")
    with pytest.raises(TemplateVariableError, match="variables 'a', 'b'"):
        both.render()
    assert str(pickle.loads(pickle.dumps(e))) == str(e)


def test_unsaved_template_renders_and_validates():
    t = Template(name="draft", prompt="Hi {who}", defaults={"who": "there"})
    assert t.version is None and t.ref == "draft"
    assert t.render() == "Hi there"
    with pytest.raises(TemplateSyntaxError):
        Template(name="draft", prompt="Hi {who")


def test_templates_are_hashable_and_comparable(lib):
    t = lib.save("h", "x {y}", options={"seed": 1})
    assert {t, lib.get("h")} == {t}
    assert t != lib.save("h", "x {y}", options={"seed": 1})  # another version


# --- the sandbox --------------------------------------------------------------------------------


class Secretive:
    """A value whose internals a template must never reach."""

    secret = "TOP-SECRET"

    def __str__(self):
        return "visible"

    def __getitem__(self, key):
        return self.secret

    def __format__(self, spec):
        return self.secret


@pytest.mark.parametrize("text, kind", [
    ("{x.__class__}", "attribute"),
    ("{x.__class__.__init__.__globals__}", "attribute"),
    ("{x.secret}", "attribute"),
    ("{x!r}", "conversion"),
    ("{x!s}", "conversion"),
    ("{x:>10}", "format_spec"),
    ("{x:{y}}", "format_spec"),
    ("{open('/etc/passwd')}", "call"),
    ("{__import__('os').system('id')}", "call"),
    ("{/etc/passwd}", "invalid_name"),
    ("{x[0][0]}", "subscript"),
    ("{0}", "positional"),
    ("{}", "empty"),
    ("{x[__class__]}", "subscript"),
])
def test_escape_attempts_are_syntax_errors_and_are_not_saved(lib, text, kind):
    with pytest.raises(TemplateSyntaxError) as err:
        lib.save("evil", f"Tell me {text}")
    assert err.value.kind == kind
    assert err.value.line == 1 and err.value.column >= 9
    assert "evil" not in lib


def test_names_of_builtins_and_globals_are_not_looked_up(lib):
    t = lib.save("names", "{__import__} {open} {__builtins__} {globals} {lib}")
    with pytest.raises(TemplateVariableError) as err:
        t.render()
    assert err.value.missing == ["__import__", "open", "__builtins__", "globals", "lib"]
    # Given as plain values they are just text: nothing is called.
    assert t.render(__import__="a", open="b", __builtins__="c", globals="d", lib="e") == "a b c d e"


def test_values_are_inserted_with_str_only(lib):
    t = lib.save("obj", "[{x}]")
    assert t.render(x=Secretive()) == "[visible]"


def test_subscripts_only_index_plain_containers(lib):
    t = lib.save("sub", "{x[0]} {d['k']}")
    assert t.render(x=["first"], d={"k": "v"}) == "first v"
    with pytest.raises(ValueError) as err:
        t.render(x=Secretive(), d={"k": "v"})  # has __getitem__ but is no Sequence/Mapping
    assert "TOP-SECRET" not in str(err.value)
    with pytest.raises(ValueError) as err:
        t.render(x=["a"], d={"other": "hidden"})
    assert "'d' has no key 'k'" in str(err.value)


def test_values_are_never_rendered_again(lib):
    t = lib.save("once", "{a}|{b}", defaults={"b": "{a}"})
    assert t.render(a="{b} {x.__class__} {{") == "{b} {x.__class__} {{|{a}"


def test_file_paths_are_just_text(lib, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("FILE-CONTENT")
    t = lib.save("path", "Read {path}")
    rendered = t.render(path=str(secret))
    assert rendered == f"Read {secret}" and "FILE-CONTENT" not in rendered


# --- sending a rendered template over real HTTP -------------------------------------------------


def test_a_rendered_template_goes_to_the_provider(loop_session, loopback):
    lib = loop_session.templates
    t = lib.save("greet", "Greet {who} in {lang}.", system="You speak {lang}.",
                 model="loop/loopback-model", options={"max_tokens": 20, "temperature": 0},
                 defaults={"lang": "French"})
    reply = loop_session.ask(t.render(who="Ada"), system=t.render_system(who="Ada"),
                             model=t.model, cache=False, **t.options)
    assert reply.text == "Echo: Greet Ada in French."
    sent = loopback.requests()[-1]["body"]
    assert sent["messages"] == [{"role": "system", "content": "You speak French."},
                                {"role": "user", "content": "Greet Ada in French."}]
    assert sent["max_tokens"] == 20 and sent["temperature"] == 0
