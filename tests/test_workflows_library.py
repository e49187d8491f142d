"""Saved workflows: immutable versions, tags, diff, export/import round-trips, and the trust rules
of a workflow file from someone else (bounded, generation options only, no code)."""

from __future__ import annotations

import json
import time

import pandas as pd
import pytest
import yaml

from llm_notebook.log import Log
from llm_notebook.workflows import Workflow, WorkflowError, WorkflowFileError, WorkflowNotFound
from llm_notebook.workflows.library import WorkflowLibrary

MODEL = "loop/loopback-model"
SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}


def lower(df):
    return df.assign(text=df["text"].str.lower())


def sample() -> Workflow:
    return (Workflow("pipeline", description="Names, then kinds")
            .llm("Name in: {text}", name="names", schema=SCHEMA, output={"name": "who"},
                 model=MODEL, max_tokens=20)
            .llm("Kind of {who}", output="kind", system="Be brief.", temperature=0.2)
            .filter("Is {kind} a person?", name="people")
            .python(lower))


def test_versions_are_immutable_and_numbered(nb_session):
    library = nb_session.workflows
    wf = sample()
    assert wf.save(message="first", tags=["demo"]) is wf and wf.version == 1
    wf.edit("kind", prompt="What kind of thing is {who}?")
    assert wf.version is None                       # edited: not that saved version any more
    second = library.save(wf, message="ask what kind")
    assert second.version == 2 and second.tags == ("demo",)     # tags carry over
    assert library.get("pipeline@1").step("kind").prompt == "Kind of {who}"
    assert library.get("pipeline").step("kind").prompt == "What kind of thing is {who}?"
    assert library.get("pipeline", 1).message == "first"
    history = library.history("pipeline")
    assert list(history["version"]) == [2, 1] and list(history["message"]) == ["ask what kind", "first"]
    listed = library.list()
    assert listed.loc[0, ["name", "version", "versions", "steps"]].tolist() == ["pipeline", 2, 2, 4]
    assert library.list(tag="demo")["name"].tolist() == ["pipeline"]
    assert library.list(tag="other").empty
    assert "pipeline" in library and len(library) == 1
    assert library.get("pipeline@1").step("names").to_dict() == {
        "name": "names", "kind": "llm", "prompt": "Name in: {text}", "model": MODEL,
        "options": {"max_tokens": 20}, "schema": SCHEMA, "output": {"name": "who"}}


def test_diff_names_what_changed(nb_session):
    library = nb_session.workflows
    sample().save(message="one")
    library.save(sample().edit("people", prompt="Is {kind} someone?").remove("lower"))
    diff = library.diff("pipeline")
    assert "--- pipeline v1" in diff and "+++ pipeline v2" in diff
    assert "-  prompt: Is {kind} a person?" in diff and "+  prompt: Is {kind} someone?" in diff
    assert "-  function: lower" in diff
    assert library.diff("pipeline", 2, 2) == ""
    with pytest.raises(WorkflowError, match="no version before 1"):
        library.diff("pipeline", v2=1)


def test_lookup_errors_say_what_exists(nb_session):
    library = nb_session.workflows
    with pytest.raises(WorkflowNotFound, match="none is saved yet"):
        library.get("pipeline")
    sample().save()
    with pytest.raises(WorkflowNotFound, match=r"did you mean 'pipeline'"):
        library.get("pipelin")
    with pytest.raises(WorkflowNotFound, match="has no version 7; its versions are 1"):
        library.get("pipeline@7")
    with pytest.raises(WorkflowError, match="whole number"):
        library.get("pipeline", 0)
    with pytest.raises(WorkflowError, match="a name before saving"):
        Workflow(steps=sample().steps).save()
    assert library.delete("pipeline") == 1 and library.names() == []


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_export_import_round_trip_into_another_log(nb_session, tmp_path, suffix):
    library = nb_session.workflows
    sample().save(message="one", tags=["demo"])
    library.save(sample().edit("kind", model="local/smollm2"), message="two")
    path = tmp_path / f"flows{suffix}"
    assert library.export(path, all_versions=True) == str(path)
    other = WorkflowLibrary(Log(str(tmp_path / "other.db")))
    imported = other.import_file(path)
    assert [wf.version for wf in imported] == [1, 2]
    assert [wf.content()["steps"] for wf in imported] == \
        [wf.content()["steps"] for wf in library.versions("pipeline")[::-1]]
    assert imported[0].tags == ("demo",) and imported[0].message == "one"
    assert other.import_file(path)[-1].version == 2          # importing again adds nothing
    assert len(other.versions("pipeline")) == 2
    if suffix == ".yaml":
        doc = yaml.safe_load(path.read_text())
        assert doc["llm_notebook_workflows"] == 1
        assert doc["workflows"][0]["steps"][3] == {"name": "lower", "kind": "python", "function": "lower"}


def write(tmp_path, doc, name="w.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc) if isinstance(doc, dict) else doc)
    return str(path)


def one(steps, **extra) -> dict:
    return {"llm_notebook_workflows": 1, "workflows": [{"name": "w", "steps": steps, **extra}]}


@pytest.mark.parametrize("doc, problem", [
    (one([{"name": "a", "kind": "llm", "prompt": "Hi {x}", "options": {"api_base": "http://evil.test"}}]),
     "option 'api_base' sets where the request goes"),
    (one([{"name": "a", "kind": "llm", "prompt": "Hi {x}", "options": {"api_key": "sk-x"}}]),
     "a credential"),
    (one([{"name": "a", "kind": "llm", "prompt": "Hi {x}", "options": {"callbacks": ["x"]}}]),
     "what the request carries"),
    (one([{"name": "a", "kind": "python", "function": "f", "code": "import os"}]), "unknown key"),
    (one([{"name": "a", "kind": "python", "function": "__import__('os').system"}]), "registered Python function"),
    (one([{"name": "a", "kind": "llm", "prompt": "Hi {x}"}], script="x"), "unknown key"),
    ({"llm_notebook_workflows": 2, "workflows": []}, "newer llm-notebook"),
    ({"workflows": []}, "not a workflow file"),
    ("a: [b\n", "invalid YAML"),
    ("a: &a [1,1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
     "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
     "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\n", "alias bomb"),
    ("!!python/object/apply:os.system ['echo pwned']\n", "invalid YAML"),
])
def test_a_file_from_someone_else_is_refused_whole_with_one_line(nb_session, tmp_path, doc, problem):
    path = write(tmp_path, doc)
    started = time.perf_counter()
    with pytest.raises(WorkflowFileError, match=problem) as err:
        nb_session.workflows.import_file(path)
    assert time.perf_counter() - started < 1.0
    assert "nothing was imported" in str(err.value) and "\n" not in str(err.value)
    assert nb_session.workflows.names() == []


def test_a_large_file_is_refused_before_it_is_parsed(nb_session, tmp_path):
    path = tmp_path / "big.json"
    path.write_text(json.dumps(one([{"name": "a", "kind": "llm", "prompt": "x {y} " * 1_000_000}])))
    with pytest.raises(WorkflowFileError, match="larger than 5 MB"):
        nb_session.workflows.import_file(path)


def test_an_imported_python_step_runs_only_a_function_registered_here(loop_session, loopback, tmp_path):
    path = write(tmp_path, one([{"name": "shout", "kind": "python", "function": "shout_it_out"}]))
    wf = loop_session.workflows.import_file(path)[0]
    frame = pd.DataFrame({"text": ["hi"]})
    with pytest.raises(WorkflowError, match="'shout_it_out', which is not registered.*never their code"):
        wf.run(frame, progress=False)
    import llm_notebook

    @llm_notebook.workflows.register
    def shout_it_out(df):
        return df.assign(text=df["text"].str.upper())

    try:
        assert wf.run(frame, progress=False)["text"].tolist() == ["HI"]
    finally:
        llm_notebook.workflows.functions.unregister("shout_it_out")


def test_a_saved_workflow_runs_like_the_one_it_was_saved_from(loop_session, loopback):
    frame = pd.DataFrame({"text": ["Ann", "Bob"]})
    wf = Workflow("small").llm("Greet {text}", output="greeting", model=MODEL)
    out = wf.run(frame, progress=False)
    wf.save()
    again = loop_session.workflows.get("small").run(frame, progress=False)
    assert loopback.stats()["requests"] == 2
    assert again.attrs["workflow"]["version"] == 1
    assert [s["status"] for s in again.attrs["workflow"]["steps"]] == ["skipped"]
    pd.testing.assert_frame_equal(again, out)
