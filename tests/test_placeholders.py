"""The one placeholder syntax: {name}, {In[3]}, {d['k']}, {{ and }}; everything else is an error."""

from __future__ import annotations

import pickle
import string
import time
from collections import UserDict
from typing import ClassVar

import pytest

from llm_notebook import placeholders as ph
from llm_notebook.placeholders import (
    MissingVariableError,
    PlaceholderError,
    PlaceholderLookupError,
    PlaceholderSyntaxError,
    from_llm_style,
    parse,
    render,
    variables,
)

# --- parsing and rendering ----------------------------------------------------------------------


def test_render_fills_names_and_keeps_text_between():
    assert render("Hello {name}, meet {other}.", {"name": "Ada", "other": "Bob"}) == (
        "Hello Ada, meet Bob."
    )


def test_text_without_placeholders_is_returned_unchanged():
    assert render("plain text", {}) == "plain text"
    assert render("", {}) == ""
    assert variables("plain text") == []


def test_double_braces_are_literal_braces():
    assert render('Return JSON like {{"label": "{label}"}}', {"label": "spam"}) == (
        'Return JSON like {"label": "spam"}'
    )
    assert render("{{x}}", {}) == "{x}"
    assert render("{{{x}}}", {"x": 1}) == "{1}"
    assert render("}}{{", {}) == "}{"
    assert variables("{{not_a_var}}") == []


def test_variables_are_ordered_unique_base_names():
    template = "{b} {a} {b} {In[3]} {Out[2]} {In[-1]} {d['k']}"
    assert variables(template) == ["b", "a", "In", "Out", "d"]


def test_values_are_converted_with_str_by_default():
    assert render("{n} {f} {none} {items}", {"n": 3, "f": 0.5, "none": None, "items": [1, 2]}) == (
        "3 0.5 None [1, 2]"
    )


def test_unicode_names_are_python_identifiers():
    assert render("{café}", {"café": "au lait"}) == "au lait"


def test_multiline_template_keeps_layout():
    template = "line one {a}\n\n  indented {b}\n"
    assert render(template, {"a": 1, "b": 2}) == "line one 1\n\n  indented 2\n"


def test_placeholder_metadata_for_editors():
    template = parse("ab\n  {x} {In[3]}")
    first, second = template.placeholders
    assert (first.name, first.key, first.source, first.line, first.column) == ("x", None, "x", 2, 3)
    assert template.source[first.start : first.end] == "{x}"
    assert (second.name, second.key, second.source) == ("In", 3, "In[3]")


# --- In / Out and other subscripts --------------------------------------------------------------


def test_in_out_subscripts():
    namespace = {"In": ["", "x = 1", "df.head()"], "Out": {2: "<DataFrame>"}}
    assert render("code: {In[1]} / last: {In[-1]} / out: {Out[2]}", namespace) == (
        "code: x = 1 / last: df.head() / out: <DataFrame>"
    )


def test_string_key_subscripts_with_either_quote():
    values = {"d": {"k": "v", "x y": "spaced"}}
    assert render("{d['k']} {d[\"k\"]} {d['x y']}", values) == "v v spaced"


def test_subscript_on_tuple_str_and_mapping_subclass():
    assert render("{t[1]} {s[0]} {u['a']}", {"t": (1, 2), "s": "xyz", "u": UserDict(a=5)}) == (
        "2 x 5"
    )


def test_missing_index_names_the_placeholder_and_size():
    with pytest.raises(PlaceholderLookupError) as info:
        render("{In[9]}", {"In": ["", "a"]})
    assert "{In[9]}" in str(info.value) and "2 items" in str(info.value)
    assert isinstance(info.value, ValueError) and not isinstance(info.value, KeyError)


def test_missing_key_lists_the_keys():
    with pytest.raises(PlaceholderLookupError) as info:
        render("{Out[7]}", {"Out": {1: "a", 3: "b"}})
    assert "no key 7" in str(info.value) and "1, 3" in str(info.value)


def test_wrong_key_type_says_how_to_index():
    with pytest.raises(PlaceholderLookupError, match="integer index"):
        render("{In['a']}", {"In": ["x"]})


def test_subscript_is_never_applied_to_arbitrary_objects():
    calls = []

    class Sneaky:
        def __getitem__(self, key):
            calls.append(key)
            return "leaked"

    with pytest.raises(PlaceholderLookupError, match="cannot be indexed"):
        render("{obj[0]}", {"obj": Sneaky()})
    assert calls == []


# --- syntax errors: every kind, with line and column --------------------------------------------


@pytest.mark.parametrize(
    "template, kind, line, column, fragment",
    [
        ("abc {", "unmatched_open", 1, 5, "unmatched '{'"),
        ("ok\nthen { and more", "unmatched_open", 2, 6, "write '{{'"),
        ('JSON:\n{\n  "a": 1\n}', "unmatched_open", 2, 1, "unmatched '{'"),
        ("a } b", "unmatched_close", 1, 3, "unmatched '}'"),
        ("x\ny}", "unmatched_close", 2, 2, "write '}}'"),
        ("{x}}", "unmatched_close", 1, 4, "unmatched '}'"),
        ("empty {} here", "empty", 1, 7, "empty placeholder"),
        ("{0}", "positional", 1, 2, "positional"),
        ("{1abc}", "positional", 1, 2, "positional"),
        ('{"a": 1}', "invalid_name", 1, 2, "is not a placeholder"),
        ("{ x }", "invalid_name", 1, 2, "is not a placeholder"),
        ("{-x}", "invalid_name", 1, 2, "is not a placeholder"),
        ("{x y}", "unexpected", 1, 3, "a space"),
        ("{x-1}", "unexpected", 1, 3, "unexpected '-'"),
        ("{x.__class__}", "attribute", 1, 3, "attribute access"),
        ("{In[0].__class__}", "attribute", 1, 7, "attribute access"),
        ("{x!r}", "conversion", 1, 3, "conversions"),
        ("{x:>10}", "format_spec", 1, 3, "format specs"),
        ("{x:{y}}", "format_spec", 1, 3, "format specs"),
        ("{__import__('os')}", "call", 1, 12, "calls are not allowed"),
        ("{x[__import__]}", "subscript", 1, 4, "subscript must be"),
        ("{x[1][2]}", "subscript", 1, 6, "only one subscript"),
        ("{x[1}", "subscript", 1, 5, "missing ']'"),
        ("{x['k}", "subscript", 1, 4, "unterminated"),
        ("{x[]}", "subscript", 1, 4, "subscript must be"),
        ("{x[1.5]}", "subscript", 1, 5, "missing ']'"),
        ("{a{b}", "unexpected", 1, 3, "'{' inside a placeholder"),
        ("é\nàé{", "unmatched_open", 2, 3, "unmatched"),
    ],
)
def test_syntax_errors_report_kind_line_and_column(template, kind, line, column, fragment):
    with pytest.raises(PlaceholderSyntaxError) as info:
        parse(template)
    err = info.value
    assert (err.kind, err.line, err.column) == (kind, line, column), str(err)
    assert fragment in str(err)
    assert str(err).startswith(f"line {line}, column {column}: ")
    assert isinstance(err, ValueError) and isinstance(err, PlaceholderError)


def test_unmatched_open_message_matches_the_documented_form():
    with pytest.raises(PlaceholderSyntaxError) as info:
        parse("first\nsixth {")
    assert str(info.value) == "line 2, column 7: unmatched '{' — write '{{' for a literal brace"
    assert info.value.message == "unmatched '{' — write '{{' for a literal brace"


def test_placeholder_may_not_span_lines():
    with pytest.raises(PlaceholderSyntaxError) as info:
        parse("{name\n}")
    assert info.value.kind == "unmatched_open"


def test_syntax_error_pickles():
    with pytest.raises(PlaceholderSyntaxError) as info:
        parse("{x!r}")
    copy = pickle.loads(pickle.dumps(info.value))
    assert str(copy) == str(info.value) and copy.kind == "conversion"


def test_non_str_template_is_a_type_error():
    with pytest.raises(TypeError):
        parse(b"{x}")  # type: ignore[arg-type]


# --- sandbox: nothing but item lookup and str() ------------------------------------------------


class Booby:
    """Every hook except __str__ records that it ran."""

    touched: ClassVar[list] = []

    def __getattr__(self, name):
        Booby.touched.append(("getattr", name))
        raise AttributeError(name)

    def __format__(self, spec):
        Booby.touched.append(("format", spec))
        return "formatted"

    def __repr__(self):
        Booby.touched.append(("repr",))
        return "repr"

    def __str__(self):
        return "plain"


def test_rendering_only_calls_str():
    Booby.touched = []
    assert render("{x}", {"x": Booby()}) == "plain"
    assert Booby.touched == []


@pytest.mark.parametrize(
    "template",
    [
        "{x.__class__}",
        "{x.__class__.__init__.__globals__}",
        "{x!r}",
        "{x!s}",
        "{x:{y}}",
        "{x:>10}",
        "{__import__('os')}",
        "{x[0].__class__}",
        "{x['a'].b}",
        "{x[0]:>{width}}",
        "{x[x]}",
        "{0.__class__}",
        "{x()}",
    ],
)
def test_sandbox_escapes_are_syntax_errors_not_evaluated(template):
    Booby.touched = []
    with pytest.raises(PlaceholderSyntaxError):
        render(template, {"x": Booby(), "y": "5", "width": 3})
    assert Booby.touched == []


def test_dunder_names_are_plain_lookups_in_the_values():
    # {__name__} is just a key: the values decide what it means, nothing is evaluated.
    assert render("{__name__}", {"__name__": "cell"}) == "cell"
    with pytest.raises(MissingVariableError):
        render("{__builtins__}", {})


# --- missing variables ------------------------------------------------------------------------


def test_missing_variable_message_names_it_lists_available_and_how_to_escape():
    with pytest.raises(MissingVariableError) as info:
        render("Hi {foo}", {"a": 1, "b": 2})
    assert str(info.value) == (
        "unknown variable 'foo' in prompt; available: a, b. "
        "To write a literal brace use '{{' and '}}'"
    )
    err = info.value
    assert err.name == "foo" and err.available == ["a", "b"]
    assert (err.line, err.column) == (1, 4)
    assert isinstance(err, ValueError) and not isinstance(err, KeyError)


def test_missing_variable_suggests_a_close_name():
    with pytest.raises(MissingVariableError, match="did you mean 'question'"):
        render("{questoin}", {"question": "?", "answer": "!"})


def test_missing_variable_uses_explicit_available_list():
    with pytest.raises(MissingVariableError) as info:
        render("{zz}", {"a": 1, "_hidden": 2, "In": []}, available=["df", "text"])
    assert "available: df, text." in str(info.value)


def test_missing_variable_default_list_hides_private_names_and_is_capped():
    values = {f"v{i}": i for i in range(30)} | {"_private": 0}
    with pytest.raises(MissingVariableError) as info:
        render("{nope}", values)
    message = str(info.value)
    assert "_private" not in message and "v0, v1" in message and "(10 more)" in message


def test_missing_variable_with_no_values():
    with pytest.raises(MissingVariableError, match="no variables are available"):
        render("{x}", {})


def test_missing_keep_and_empty_modes():
    assert render("a {x} b {In[5]}", {"In": []}, missing="keep") == "a {x} b {In[5]}"
    assert render("a {x} b {In[5]}", {"In": []}, missing="empty") == "a  b "
    with pytest.raises(ValueError, match="missing must be one of"):
        render("{x}", {}, missing="ignore")


def test_missing_variable_error_pickles():
    err = MissingVariableError("x", ["a"])
    copy = pickle.loads(pickle.dumps(err))
    assert str(copy) == str(err) and copy.name == "x"


# --- convert hook ------------------------------------------------------------------------------


def test_convert_hook_receives_source_and_value():
    seen = []

    def convert(source, value):
        seen.append((source, value))
        return f"<{source}={value}>"

    out = render("{a} {Out[1]}", {"a": 1, "Out": {1: "x"}}, convert=convert)
    assert out == "<a=1> <Out[1]=x>"
    assert seen == [("a", 1), ("Out[1]", "x")]


def test_convert_hook_can_summarize_a_dataframe_like_value():
    class FakeFrame:
        columns = ("a", "b")

        def __str__(self):
            return "huge table " * 1000

    def convert(source, value):
        if isinstance(value, FakeFrame):
            return f"DataFrame {source} with columns {', '.join(value.columns)}"
        return str(value)

    assert render("Look at {df}", {"df": FakeFrame()}, convert=convert) == (
        "Look at DataFrame df with columns a, b"
    )


def test_convert_hook_result_is_made_a_str():
    assert render("{a}", {"a": 1}, convert=lambda source, value: value + 1) == "2"


# --- caching and speed -------------------------------------------------------------------------


def test_parse_is_cached_and_variables_are_a_fresh_list():
    text = "{a} cached {b}"
    assert parse(text) is parse(text)
    names = parse(text).variables
    names.append("mutated")
    assert parse(text).variables == ["a", "b"]


def test_rendering_100k_rows_is_fast():
    template = 'Classify "{text}" from {source}; answer as {{"label": "{label}"}}'
    rows = [{"text": f"row {i}", "source": "web", "label": i % 3} for i in range(100_000)]
    started = time.perf_counter()
    out = [render(template, row) for row in rows]
    elapsed = time.perf_counter() - started
    assert out[7] == 'Classify "row 7" from web; answer as {"label": "1"}'
    assert elapsed < 5, f"100k renders took {elapsed:.2f} s"


# --- simonw/llm style templates -----------------------------------------------------------------


@pytest.mark.parametrize(
    "source, expected",
    [
        ("Summarize: $input", "Summarize: {input}"),
        ("${lang}-speaking ${input}", "{lang}-speaking {input}"),
        ("costs $$5", "costs $5"),
        ("$$$name", "${name}"),
        ('Return {"a": $x}', 'Return {{"a": {x}}}'),
        ("${x}y $x_y", "{x}y {x_y}"),
        ("$5 and $ alone and ${ x } stay", "$5 and $ alone and ${{ x }} stay"),
        ("no vars", "no vars"),
        ("trailing $", "trailing $"),
    ],
)
def test_from_llm_style(source, expected):
    assert from_llm_style(source) == expected


@pytest.mark.parametrize(
    "source",
    [
        "Summarize $input in ${lang}.",
        'JSON {"k": "$v"} and $$ and $$x',
        "}{ $a${b} $ab $_c {{}}",
        "price: $$10 for $item",
    ],
)
def test_from_llm_style_renders_like_string_template(source):
    values = {"input": "TEXT", "lang": "fr", "v": "V", "x": "X", "a": "A", "b": "B", "ab": "AB",
              "_c": "C", "item": "pen"}  # fmt: skip
    expected = string.Template(source).safe_substitute(values)
    assert render(from_llm_style(source), values) == expected


def test_escape_makes_literal_text_safe_to_embed():
    text = 'literal {x} and {{y}} and {"a": 1}'
    assert render(ph.escape(text) + " {v}", {"v": 1}) == text + " 1"
