"""The REST API under /llm-notebook/api/ against a real jupyter_server and a real log."""

from __future__ import annotations

import os
import time

import pytest

from .conftest import call_row


@pytest.fixture
def seeded(log, root_dir):
    """Calls from two notebooks, two models and one two-turn conversation."""
    nb_a = os.path.join(root_dir, "work", "a.ipynb")
    nb_b = os.path.join(root_dir, "b.ipynb")
    log.create_conversation("conv1", name="planning")
    ids = log.insert_calls([
        call_row(prompt="summarize the quarterly report", response="The report says growth.",
                 notebook=nb_a, model="loop/alpha"),
        call_row(prompt="translate bonjour", response="hello", notebook=nb_b, model="loop/beta",
                 cost=None, unpriced=True),
        call_row(prompt="plan a trip to Lisbon", response="Day 1: Alfama", notebook=nb_a,
                 conversation_id="conv1"),
    ])
    follow_up = log.insert_calls([
        call_row(prompt="and day 2?", response="Day 2: Belém", notebook=nb_a,
                 conversation_id="conv1", parent_id=ids[2], status="error",
                 error_kind="rate_limit", error="429 from provider"),
    ])[0]
    log.set_head("conv1", follow_up)
    return {"ids": ids + [follow_up], "nb_a": nb_a, "nb_b": nb_b}


def test_status_names_the_log_file_and_changes_when_a_call_lands(api, log, log_path):
    first = api("status")
    assert first.code == 200
    assert first.json["log_name"] == "log.db"       # the file's name, never where it is
    assert os.path.dirname(log_path) not in first.text
    assert first.json["calls"] == 0

    new_id = log.insert_call(call_row())

    second = api("status")
    assert second.json["latest_call_id"] == new_id
    assert second.json["calls"] == 1


def test_history_newest_first_with_relative_notebooks(api, seeded):
    r = api("history")
    assert r.code == 200
    assert [row["id"] for row in r.json["rows"]] == seeded["ids"][::-1]
    assert r.json["rows"][0]["notebook"] == "work/a.ipynb"
    assert r.json["rows"][2]["notebook"] == "b.ipynb"
    assert r.json["has_more"] is False
    assert "cache_key" not in r.json["rows"][0] and "kernel_session" not in r.json["rows"][0]


def test_history_search_filters_and_paging(api, seeded):
    ids = seeded["ids"]
    assert [row["id"] for row in api("history", search="quarterly").json["rows"]] == [ids[0]]
    # prefix matching, on responses too
    assert [row["id"] for row in api("history", search="Alfa").json["rows"]] == [ids[2]]
    assert [row["id"] for row in api("history", model="loop/beta").json["rows"]] == [ids[1]]
    by_notebook = api("history", notebook="work/a.ipynb").json["rows"]
    assert [row["id"] for row in by_notebook] == [ids[3], ids[2], ids[0]]
    assert api("history", notebook=seeded["nb_a"]).json["rows"] == by_notebook
    assert [row["id"] for row in api("history", conversation="conv1").json["rows"]] == [ids[3], ids[2]]

    page = api("history", limit=2)
    assert [row["id"] for row in page.json["rows"]] == [ids[3], ids[2]] and page.json["has_more"]
    rest = api("history", limit=2, offset=2)
    assert [row["id"] for row in rest.json["rows"]] == [ids[1], ids[0]]
    assert rest.json["has_more"] is False


def test_history_previews_are_cut_to_the_asked_length_and_bounded(api, log):
    log.insert_call(call_row(prompt="p" * 1000, response="r" * 50_000, error="e" * 3000))
    row = api("history").json["rows"][0]
    assert row["prompt"] == "p" * 400 + "…"
    assert row["response"] == "r" * 400 + "…" and row["error"] == "e" * 400 + "…"
    longer = api("history", preview=5000).json["rows"][0]
    assert longer["prompt"] == "p" * 1000 and longer["response"] == "r" * 5000 + "…"
    assert api("history", preview=0).code == 400          # "everything" is not an option


def test_facets_list_models_and_notebooks(api, seeded):
    r = api("facets")
    assert r.json == {"models": ["loop/alpha", "loop/beta"], "notebooks": ["b.ipynb", "work/a.ipynb"]}


def test_call_detail_and_its_thread(api, seeded):
    ids = seeded["ids"]
    r = api(f"calls/{ids[3]}")
    assert r.code == 200
    assert r.json["call"]["prompt"] == "and day 2?"
    assert r.json["call"]["error_kind"] == "rate_limit"
    assert [c["id"] for c in r.json["thread"]] == [ids[2], ids[3]]
    assert r.json["thread"][0]["response"] == "Day 1: Alfama"

    missing = api("calls/999999")
    assert missing.code == 404
    assert "no call 999999" in missing.json["message"]


def test_conversations_list_and_thread(api, seeded, log):
    ids = seeded["ids"]
    r = api("conversations")
    assert r.code == 200
    (conv,) = r.json["conversations"]
    assert conv["id"] == "conv1" and conv["name"] == "planning"
    assert conv["title"] == "plan a trip to Lisbon" and conv["calls"] == 2

    thread = api("conversations/conv1")
    assert [c["id"] for c in thread.json["thread"]] == [ids[2], ids[3]]

    # calls can name a conversation that has no row of its own: its latest call is the head
    log.insert_calls([call_row(conversation_id="loose", prompt="orphan")])
    assert [c["prompt"] for c in api("conversations/loose").json["thread"]] == ["orphan"]
    assert api("conversations/nope").code == 404


def test_usage_grouped_and_summary(api, seeded, log):
    by_model = {r["grp"]: r for r in api("usage", by="model").json["rows"]}
    assert by_model["loop/alpha"]["calls"] == 3
    assert by_model["loop/alpha"]["errors"] == 1
    assert by_model["loop/beta"]["unpriced"] == 1

    by_notebook = {r["grp"]: r["calls"] for r in api("usage", by="notebook").json["rows"]}
    assert by_notebook == {"work/a.ipynb": 3, "b.ipynb": 1}

    # a call from two days ago counts for the notebook in all, not for today
    log.insert_calls([call_row(ts=time.time() - 2 * 86400, notebook=seeded["nb_a"])])
    summary = api("usage/summary", notebook="work/a.ipynb", day_start=time.time() - 3600).json
    assert summary["today"]["calls"] == 4
    assert summary["notebook"] == "work/a.ipynb"
    assert summary["notebook_today"]["calls"] == 3
    assert summary["notebook_total"]["calls"] == 4
    assert summary["today"]["cost"] == pytest.approx(0.003)
    assert api("usage/summary").json["notebook_today"] is None


def test_templates_listed_with_variables(api, log):
    from llm_notebook.templates import TemplateLibrary

    assert api("templates").json == {"templates": []}
    library = TemplateLibrary(log)
    library.save("summarize", "Summarize {text} in {n} words.", defaults={"n": 30}, tags=["docs"])
    library.save("summarize", "Summarize {text} in at most {n} words.", defaults={"n": 30})
    library.save("greet", "<img src=x onerror=alert(1)> hi {name}")

    r = api("templates")
    assert r.code == 200
    names = {t["name"]: t for t in r.json["templates"]}
    assert names["summarize"]["version"] == 2 and names["summarize"]["versions"] == 2
    assert names["summarize"]["variables"] == ["text", "n"]
    assert names["summarize"]["defaults"] == {"n": 30}
    # hostile text goes out as data; rendering it safely is the sidebar's job (it uses text)
    assert names["greet"]["prompt"] == "<img src=x onerror=alert(1)> hi {name}"
    assert [t["name"] for t in api("templates", tag="docs").json["templates"]] == ["summarize"]
    assert api("status").json["templates"] == "3:3"


def test_a_real_call_through_the_loopback_shows_up(api, loop_session):
    # The whole path: a Session call over real HTTP, logged, then read back by the server.
    response = loop_session.ask("what is a sidebar", model="loop/loopback-model")
    assert response.status == "ok"

    rows = api("history", search="sidebar").json["rows"]
    assert [r["id"] for r in rows] == [response.id]
    assert rows[0]["response"] == response.text
    assert rows[0]["model"] == "loop/loopback-model"


@pytest.fixture
def unreadable_log(tmp_path, log_path):
    # The configured log path is a directory: SQLite cannot open it.
    os.makedirs(log_path)
    return log_path


def test_an_unreadable_log_is_a_503_that_names_no_path(api, unreadable_log, caplog):
    r = api("history")
    assert r.code == 503
    assert "LLM_NOTEBOOK_LOG" in r.json["message"]
    assert os.path.dirname(unreadable_log) not in r.text and "Traceback" not in r.text
    assert unreadable_log in caplog.text            # the server's own log has the details


def test_ended_background_jobs_are_listed_for_the_lab_to_announce(api, log, root_dir):
    import os

    from llm_notebook.batch import store

    first = api("jobs/ended")
    assert first.code == 200 and first.json["jobs"] == [] and first.json["now"] > 0
    cursor = first.json["now"] - 1
    notebook = os.path.join(root_dir, "work", "runs.ipynb")
    for job_id, background, status in (("bg1", 1, "running"), ("bg2", 1, "running"),
                                       ("fg1", 0, "running")):
        store.create_job(log, {"id": job_id, "fingerprint": job_id, "model": "loop/alpha",
                               "prompt": "Say {t}" * 40, "rows": 3, "background": background,
                               "notebook": notebook}, status=status)
    store.write_progress(log, "bg1", [], [], [], {"done": 3, "ok": 2, "errors": 1, "cost": 0.25},
                         status="done")
    store.write_progress(log, "fg1", [], [], [], {"done": 3, "ok": 3}, status="done")
    reply = api("jobs/ended", after=cursor)
    assert reply.code == 200
    (job,) = reply.json["jobs"]       # only a background job that ended: not bg2, not fg1
    assert job["id"] == "bg1" and job["status"] == "done"
    assert (job["ok"], job["errors"], job["cost"]) == (2, 1, 0.25)
    assert job["notebook"] == "work/runs.ipynb" and len(job["prompt"]) <= 121
    assert api("jobs/ended", after=job["finished"]).json["jobs"] == []
    assert api("jobs/ended", after="yesterday").code == 400
