"""Template export/import: our YAML and JSON, folders, simonw/llm templates, malformed files."""

from __future__ import annotations

import json
import string
import warnings

import pytest
import yaml

from llm_notebook.log import Log
from llm_notebook.templates import (
    TemplateError,
    TemplateFileError,
    TemplateImportWarning,
    TemplateLibrary,
    TemplateNotFound,
)

TRICKY = [
    "Plain {x}",
    "Two lines {x}\nsecond line\n",
    "  leading spaces {x}\n\n\ntrailing blank lines\n\n",
    "trailing spaces {x}   \nnext",
    "--- looks like a document start {x}\n# and a comment: yes",
    "Literal braces {{\"json\": {x}}} and $dollars and 'quotes' \"double\"",
    "Unicode ✓ — naïve café 日本語 {x}",
    "key: value {x}",
    "no final newline {x}",
    "tab\tseparated {x}\r\nwindows line",
]


@pytest.fixture
def lib(nb_session):
    return nb_session.templates


@pytest.fixture
def fresh(tmp_path):
    """A second, empty library (another log file): where exports get imported."""
    return TemplateLibrary(Log(str(tmp_path / "other.db")))


def _fill(lib):
    lib.save("summarize", "Summarize {text}\nin {n} words.", system="You are {persona}.",
             model="openai/gpt-4o-mini", options={"temperature": 0.2, "stop": ["\n\n"]},
             defaults={"n": 30, "persona": "terse"}, tags=["demo"], message="v1")
    lib.save("summarize", "Summarize {text} in {n} words.", defaults={"n": 10}, message="v2")
    for i, text in enumerate(TRICKY):
        lib.save(f"tricky-{i}", text)


def _same(a, b):
    return (a.name, a.prompt, a.system, a.model, a.options, a.defaults, a.tags) == \
           (b.name, b.prompt, b.system, b.model, b.options, b.defaults, b.tags)


@pytest.mark.parametrize("filename", ["all.yaml", "all.yml", "all.json"])
def test_export_to_one_file_and_import_back(lib, fresh, tmp_path, filename):
    _fill(lib)
    path = tmp_path / filename
    assert lib.export(path) == [str(path)]
    imported = fresh.import_file(path)
    assert [t.name for t in imported] == lib.names()
    for t in imported:
        assert _same(t, lib.get(t.name)), t.name
        assert t.version == 1
    assert fresh.get("summarize").render(text="x") == "Summarize x in 10 words."
    text = path.read_text(encoding="utf-8")
    if filename.endswith(".json"):
        assert json.loads(text)["llm_notebook_templates"] == 1
    else:
        assert yaml.safe_load(text)["llm_notebook_templates"] == 1
        assert "prompt: |" in text  # multi-line prompts are readable blocks


def test_yaml_export_is_readable(lib, tmp_path):
    lib.save("poem", "Write a poem about {topic}.\nMake it rhyme.", defaults={"topic": "tea"})
    lib.export(tmp_path / "poem.yaml")
    text = (tmp_path / "poem.yaml").read_text()
    assert "  prompt: |-\n    Write a poem about {topic}.\n    Make it rhyme.\n" in text
    assert "    topic: tea\n" in text


def test_export_to_a_folder_writes_one_file_per_template(lib, fresh, tmp_path):
    _fill(lib)
    folder = tmp_path / "exported"
    written = lib.export(folder)
    assert sorted(written) == sorted(str(folder / f"{n}.yaml") for n in lib.names())
    assert len(yaml.safe_load((folder / "summarize.yaml").read_text())["templates"]) == 1
    as_json = lib.export(tmp_path / "as-json", format="json", names=["summarize"])
    assert as_json == [str(tmp_path / "as-json" / "summarize.json")]
    imported = fresh.import_file(folder)
    assert sorted(t.name for t in imported) == lib.names()
    assert all(_same(t, lib.get(t.name)) for t in imported)


def test_export_names_and_all_versions(lib, fresh, tmp_path):
    _fill(lib)
    path = tmp_path / "history.yaml"
    lib.export(path, names=["summarize"], all_versions=True)
    entries = yaml.safe_load(path.read_text())["templates"]
    assert [(e["name"], e["version"], e["message"]) for e in entries] == \
           [("summarize", 1, "v1"), ("summarize", 2, "v2")]
    fresh.import_file(path)
    history = fresh.history("summarize")
    assert list(history["version"]) == [2, 1]
    assert list(history["message"]) == ["v2", "v1"]
    assert fresh.diff("summarize") == lib.diff("summarize")


def test_export_of_an_unknown_name_writes_nothing(lib, tmp_path):
    _fill(lib)
    with pytest.raises(TemplateNotFound, match="no template named 'sumarize'"):
        lib.export(tmp_path / "x.yaml", names=["summarize", "sumarize"])
    assert not (tmp_path / "x.yaml").exists()


def test_export_path_checks(lib, tmp_path):
    _fill(lib)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(TemplateError, match="is a file that is not .yaml"):
        lib.export(tmp_path / "notes.txt")
    assert (tmp_path / "notes.txt").read_text() == "mine"
    with pytest.raises(TemplateError, match="the extension chooses the format"):
        lib.export(tmp_path / "a.yaml", format="json")
    with pytest.raises(TemplateError, match="format must be 'yaml' or 'json'"):
        lib.export(tmp_path / "dir", format="toml")


def test_importing_twice_adds_no_versions(lib, fresh, tmp_path):
    _fill(lib)
    lib.export(tmp_path / "all.yaml")
    fresh.import_file(tmp_path / "all.yaml")
    again = fresh.import_file(tmp_path / "all.yaml")
    assert all(t.version == 1 for t in again)
    fresh.save("summarize", "changed {text}")
    third = fresh.import_file(tmp_path / "all.yaml")
    assert {t.name: t.version for t in third}["summarize"] == 3


def test_import_renames_a_single_template(lib, fresh, tmp_path):
    lib.save("one", "Only {x}")
    lib.export(tmp_path / "one.json")
    [t] = fresh.import_file(tmp_path / "one.json", name="renamed")
    assert t.name == "renamed" and fresh.names() == ["renamed"]


# --- simonw/llm templates -----------------------------------------------------------------------


def _llm_render(text, **params):
    """What llm itself does with a template text: string.Template substitution."""
    return string.Template(text).substitute(**params)


def test_llm_style_yaml_is_converted(lib, tmp_path):
    path = tmp_path / "summarize-llm.yaml"
    path.write_text(
        "prompt: |\n"
        "  Summarize this: $input\n"
        "  Use at most ${limit} words, in $language. Costs $$5 {not a placeholder}.\n"
        "system: You write for ${audience}.\n"
        "model: gpt-4o-mini\n"
        "defaults:\n"
        "  language: English\n"
        "  audience: children\n"
        "options:\n"
        "  temperature: 0.3\n"
    )
    [t] = lib.import_file(path)
    assert t.name == "summarize-llm" and t.version == 1
    assert t.variables == ["input", "limit", "language", "audience"]
    assert t.model == "gpt-4o-mini" and t.options == {"temperature": 0.3}
    assert t.defaults == {"language": "English", "audience": "children"}
    assert "llm template" in t.message
    source = yaml.safe_load(path.read_text())
    params = {"input": "THE TEXT", "limit": 12, "language": "English", "audience": "children"}
    assert t.render(input="THE TEXT", limit=12) == _llm_render(source["prompt"], **params)
    assert t.render_system() == _llm_render(source["system"], **params)
    assert t.render(input="x", limit=1).endswith("Costs $5 {not a placeholder}.\n")


def test_llm_system_only_template_uses_the_input_as_prompt(lib, tmp_path):
    (tmp_path / "pirate.yaml").write_text("system: Talk like a pirate about $topic.\n")
    [t] = lib.import_file(tmp_path / "pirate.yaml")
    assert t.prompt == "{input}"
    assert t.render(input="Hello") == "Hello"
    assert t.render_system(topic="ships") == "Talk like a pirate about ships."


def test_llm_plain_string_template(lib, tmp_path):
    (tmp_path / "haiku.yaml").write_text("'Write a haiku about $input'\n")
    [t] = lib.import_file(tmp_path / "haiku.yaml")
    assert t.name == "haiku" and t.render(input="tea") == "Write a haiku about tea"


def test_llm_unsupported_keys_are_dropped_with_a_warning(lib, tmp_path):
    (tmp_path / "ex.yaml").write_text("prompt: Code for $input\nextract: true\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        [t] = lib.import_file(tmp_path / "ex.yaml")
    assert t.prompt == "Code for {input}"
    assert any(issubclass(w.category, TemplateImportWarning) and "extract" in str(w.message)
               and "ex.yaml" in str(w.message) for w in caught)


def test_llm_file_with_an_invalid_name_says_how_to_fix(lib, tmp_path):
    (tmp_path / "my template.yaml").write_text("prompt: Hi $x\n")
    with pytest.raises(TemplateFileError, match="rename the file or pass name="):
        lib.import_file(tmp_path / "my template.yaml")
    [t] = lib.import_file(tmp_path / "my template.yaml", name="my-template")
    assert t.name == "my-template"


# --- malformed files ----------------------------------------------------------------------------

MALFORMED = {
    "bad-yaml.yaml": ("prompt: [unclosed\nsystem: x\n", "invalid YAML at line 2, column 7: expected ',' or ']'"),
    "bad-json.json": ('{"llm_notebook_templates": 1, "templates": [}', "invalid JSON at line 1, column 45: Expecting value"),
    "empty.yaml": ("", "not a template file"),
    "list.yaml": ("- a\n- b\n", "found a list"),
    "other.yaml": ("title: hello\n", "found a mapping with keys 'title'"),
    "syntax.yaml": (("llm_notebook_templates: 1\ntemplates:\n  - name: ok\n    prompt: fine {x}\n"
                     "  - name: broken\n    prompt: \"line one\\nbad {x.y}\"\n"),
                    ("entry 2 of 'templates': template 'broken': prompt line 2, column 7: "
                     "attribute access")),
    "unknown-key.yaml": (("llm_notebook_templates: 1\ntemplates:\n  - name: a\n    prompt: p\n"
                          "    temprature: 1\n"), "unknown key(s) 'temprature'"),
    "no-prompt.json": ('{"llm_notebook_templates": 1, "templates": [{"name": "a"}]}',
                       "needs both 'name' and 'prompt'"),
    "newer.yaml": ("llm_notebook_templates: 7\ntemplates: []\n", "upgrade llm-notebook"),
    "not-list.yaml": ("llm_notebook_templates: 1\ntemplates: {a: 1}\n", "'templates' must be a list"),
    "llm-bad-key.yaml": ("prompt: Hi $x\nmodle: gpt-4\n", "unknown key(s) 'modle'"),
    "llm-bad-default.yaml": ("prompt: Hi $x\ndefaults:\n  y: 1\n",
                             "a default for 'y', which the template does not use"),
    "llm-prompt-list.yaml": ("prompt: [a, b]\n", "'prompt' must be text"),
    "bad-name.json": ('{"llm_notebook_templates": 1, "templates": [{"name": "a b", "prompt": "p"}]}',
                      "template names are"),
    "key.yaml": (("llm_notebook_templates: 1\ntemplates:\n  - name: a\n    prompt: p\n"
                  "    options: {api_key: sk-x}\n"), "option 'api_key' sets a credential"),
}


@pytest.mark.parametrize("filename", sorted(MALFORMED))
def test_a_malformed_file_names_the_file_and_the_problem_and_imports_nothing(lib, tmp_path, filename):
    content, problem = MALFORMED[filename]
    path = tmp_path / filename
    path.write_text(content)
    with pytest.raises(TemplateFileError) as err:
        lib.import_file(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ")
    assert problem in message
    assert message.endswith("nothing was imported")
    assert "\n" not in message
    assert lib.names() == []


def test_one_bad_file_in_a_folder_imports_nothing(lib, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "a-good.yaml").write_text("prompt: Good $x\n")
    (folder / "b-good.json").write_text(json.dumps(
        {"llm_notebook_templates": 1, "templates": [{"name": "c", "prompt": "ok {x}"}]}))
    (folder / "z-bad.yaml").write_text("llm_notebook_templates: 1\ntemplates:\n"
                                       "  - {name: z, prompt: 'Bad {x.__class__}'}\n")
    (folder / "notes.txt").write_text("ignored")
    with pytest.raises(TemplateFileError, match="z-bad.yaml"):
        lib.import_file(folder)
    assert lib.names() == []
    (folder / "z-bad.yaml").unlink()
    assert sorted(t.name for t in lib.import_file(folder)) == ["a-good", "c"]


def test_yaml_python_tags_are_refused_and_never_run(lib, tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.yaml"
    path.write_text(f"prompt: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(TemplateFileError, match="evil.yaml: invalid YAML at line 1"):
        lib.import_file(path)
    assert not marker.exists()
    assert lib.names() == []


def test_missing_paths_and_wrong_extensions(lib, tmp_path):
    with pytest.raises(TemplateFileError, match="no such file or folder"):
        lib.import_file(tmp_path / "nope.yaml")
    (tmp_path / "t.txt").write_text("prompt: hi\n")
    with pytest.raises(TemplateFileError, match="end in .yaml, .yml or .json"):
        lib.import_file(tmp_path / "t.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TemplateFileError, match="holds no .yaml"):
        lib.import_file(tmp_path / "empty")
    (tmp_path / "latin.yaml").write_bytes("prompt: caf\xe9\n".encode("latin-1"))
    with pytest.raises(TemplateFileError, match="not UTF-8"):
        lib.import_file(tmp_path / "latin.yaml")


def test_braces_in_an_llm_template_stay_literal(lib, tmp_path):
    (tmp_path / "braces.yaml").write_text("prompt: 'Reply as JSON {\"a\": $input} {x.__class__}'\n")
    [t] = lib.import_file(tmp_path / "braces.yaml")
    assert t.variables == ["input"]
    assert t.render(input="1") == 'Reply as JSON {"a": 1} {x.__class__}'
