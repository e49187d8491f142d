"""Background batch jobs through the loopback server (real HTTP): a job runs while other cells
do, two jobs on one model stay under its rpm limit together (by the server's own clock), jobs
queue and cancel, and a kernel restart leaves a job that the same call resumes."""

from __future__ import annotations

import collections
import sqlite3
import time

import pandas as pd
import pytest

import cells
from reliability.helpers import Kernel, last_user, wait_until

MODEL = "loop/loopback-model"


def sent(loopback) -> collections.Counter:
    return collections.Counter(last_user(r["body"]) for r in loopback.requests())


def test_background_map_returns_at_once_while_other_cells_run(ipshell, loop_session, loopback):
    loopback.configure(latency=0.3)  # 24 rows at concurrency 4: ~1.8 s
    ipshell.user_ns["df"] = pd.DataFrame({"t": [f"row {i}" for i in range(24)]},
                                         index=[f"r{i}" for i in range(24)])
    started = time.monotonic()
    cells.ok(ipshell, f"job = df.llm.map('Say {{t}}', model={MODEL!r}, concurrency=4, "
                      "background=True)")
    assert time.monotonic() - started < 1.0
    job = ipshell.user_ns["job"]
    assert job.status in ("queued", "running")
    # Another cell runs (and makes its own call) while the job goes on.
    cells.ok(ipshell, "import time, llm_notebook\ntime.sleep(0.6)\n"
                      f"r = llm_notebook.session().ask('[[reply:beside]] hi', model={MODEL!r})")
    assert ipshell.user_ns["r"].text == "beside"
    assert job.status == "running" and 0 < job.progress["done"] < 24
    out = job.result(timeout=60)
    # What the foreground call returns: the same Series, on the frame's index, with its books.
    assert list(out.index) == [f"r{i}" for i in range(24)]
    assert out["r5"] == "Echo: Say row 5" and out.attrs["llm"]["ok"] == 24
    assert job.status == "done" and job.progress["done"] == 24
    times = {last_user(r["body"]): r["time"] for r in loopback.requests()}
    job_times = [t for p, t in times.items() if p.startswith("Say")]
    assert times["[[reply:beside]] hi"] < max(job_times)   # the job sent on after the cell
    record = loop_session.job(job.id).info
    assert record["background"] == 1 and record["status"] == "done"
    assert set(sent(loopback).values()) == {1}


def test_two_background_jobs_on_one_model_share_its_rpm_limit(loop_session, loopback):
    # The server admits 11 requests a second; each job asks for 10/s. Paced per job they would
    # send 20/s together and meet 429s; paced per model they send 10/s.
    loopback.configure(rpm=660, rate_window=1.0)
    a = pd.DataFrame({"t": [f"a{i}" for i in range(15)]})
    b = pd.DataFrame({"t": [f"b{i}" for i in range(15)]})
    job_a = a.llm.map("{t}", model=MODEL, rpm=600, concurrency=8, background=True)
    job_b = b.llm.map("{t}", model=MODEL, rpm=600, concurrency=8, background=True)
    assert job_a.result(timeout=60).attrs["llm"]["ok"] == 15
    assert job_b.result(timeout=60).attrs["llm"]["ok"] == 15
    records = loopback.requests()
    assert len(records) == 30 and loopback.stats()["rate_limited"] == []
    times = sorted(r["time"] for r in records)
    # By the server's clock: never more than 10 requests in a second (a little arrival jitter).
    assert all(later - first >= 0.95 for first, later in zip(times, times[10:])), times
    by_job = {j: [r["time"] for r in records if last_user(r["body"])[0] == j] for j in "ab"}
    assert min(by_job["b"]) < max(by_job["a"])   # both jobs ran at once


def test_queued_and_running_jobs_listed_and_cancelled(loop_session, loopback):
    loop_session.config.background_jobs = 1
    loopback.configure(latency=0.3)
    first = pd.DataFrame({"t": [f"first {i}" for i in range(40)]})
    second = pd.DataFrame({"t": [f"second {i}" for i in range(5)]})
    running = first.llm.map("{t}", model=MODEL, concurrency=2, background=True)
    queued = second.llm.map("{t}", model=MODEL, background=True)
    wait_until(lambda: running.progress["done"] >= 2, 30, what="the first job to answer rows")
    active = loop_session.jobs(active=True)
    assert dict(zip(active["id"], active["status"])) == {running.id: "running", queued.id: "queued"}
    assert loop_session.jobs()["background"].all()

    queued.cancel().wait(timeout=10)
    assert queued.status == "cancelled" and loop_session.job(queued.id).info["status"] == "cancelled"
    running.cancel().wait(timeout=30)
    assert running.status == "cancelled"
    info = running.result().attrs["llm"]
    assert info["status"] == "cancelled" and 0 < info["ok"] < 40 and info["not_run"] > 0
    assert not any(p.startswith("second") for p in sent(loopback))   # never started
    assert loop_session.jobs(active=True).empty

    # The same call again resumes the job: only the rows without an answer are sent.
    answered = {r["prompt"] for r in loop_session.log.read(
        "SELECT prompt FROM calls WHERE job_id = ? AND status = 'ok'", (running.id,))}
    assert len(answered) == info["ok"]
    before = sent(loopback)
    loopback.configure(latency=0.0)
    again = first.llm.map("{t}", model=MODEL, concurrency=8, progress=False)
    assert again.attrs["llm"]["job_id"] == running.id and again.attrs["llm"]["ok"] == 40
    assert again.attrs["llm"]["resumed"] == info["ok"]
    resent = sent(loopback) - before
    assert sum(resent.values()) == 40 - info["ok"] and not set(resent) & answered


def test_job_waits_time_out_and_exports(loop_session, loopback, tmp_path):
    loopback.configure(latency=0.5)
    df = pd.DataFrame({"t": ["=1+1", "b", "c"], "n": [1, 2, 3]})
    job = df.llm.map("{t}", model=MODEL, concurrency=1, background=True)
    with pytest.raises(TimeoutError, match="still running"):
        job.wait(timeout=0.2)
    job.wait(timeout=30)
    path = job.export(str(tmp_path / "out.csv"))
    text = open(path, encoding="utf-8").read().splitlines()
    assert text[0] == "t,n,answer,status,error"
    assert text[1] == "'=1+1,1,Echo: =1+1,ok,"      # no cell runs as a spreadsheet formula
    parquet = pd.read_parquet(job.export(str(tmp_path / "out.parquet")))
    assert list(parquet["answer"]) == ["Echo: =1+1", "Echo: b", "Echo: c"]
    lines = pd.read_json(job.export(str(tmp_path / "out.jsonl")), lines=True)
    assert list(lines["status"]) == ["ok", "ok", "ok"] and list(lines["n"]) == [1, 2, 3]
    with pytest.raises(Exception, match="name it .csv, .parquet or .jsonl"):
        job.export(str(tmp_path / "out.txt"))


def test_batch_in_the_background_gives_its_batch_result(loop_session, loopback):
    job = loop_session.batch(["one", "two"], model=MODEL, background=True)
    result = job.result(timeout=30)
    assert list(result) == ["Echo: one", "Echo: two"] and result.job_id == job.id
    with pytest.raises(ValueError, match="batch\\(\\.\\.\\., background=True\\)"):
        import asyncio

        asyncio.run(loop_session.abatch(["x"], model=MODEL, background=True))


def test_kernel_restart_leaves_a_resumable_background_job(loopback, tmp_path):
    log = str(tmp_path / "log.db")
    loopback.configure(latency=0.3)
    kernel = Kernel({"LLM_NOTEBOOK_LOG": log, "OPENAI_API_KEY": ""}, cwd=str(tmp_path))
    setup = f"""
import pandas as pd, llm_notebook
s = llm_notebook.session()
s.add_endpoint("loop", {loopback.url!r})
df = pd.DataFrame({{"t": [f"item {{i}}" for i in range(60)]}})
"""
    try:
        assert kernel.run(setup).status == "ok"
        started = kernel.run(f"job = df.llm.map('About {{t}}', model={MODEL!r}, concurrency=3, "
                             "background=True, progress=False)\nprint(job.id)")
        assert started.status == "ok", started
        job_id = started.text.strip()

        def logged() -> int:
            with sqlite3.connect(log) as db:
                return db.execute("SELECT count(*) FROM job_rows WHERE job_id = ? AND "
                                  "status = 'ok'", (job_id,)).fetchone()[0]

        # The kernel is free while the job runs: a cell answers at once.
        assert kernel.run("1 + 1").value() == "2"
        wait_until(lambda: logged() >= 6, 60, what="some rows of the job to be logged")
        kernel.manager.restart_kernel(now=True)
        kernel.client.wait_for_ready(timeout=90)
        done_before = logged()
        assert 0 < done_before < 60
        before = sent(loopback)

        assert kernel.run(setup).status == "ok"
        again = kernel.run(f"out = df.llm.map('About {{t}}', model={MODEL!r}, concurrency=8, "
                           "progress=False)\nprint(out.attrs['llm'])", timeout=120)
        assert again.status == "ok", again
        info = eval(again.text.strip())
        assert info["job_id"] == job_id and info["status"] == "done" and info["ok"] == 60
        assert info["resumed"] == done_before
        resent = sent(loopback) - before
        assert sum(resent.values()) == 60 - done_before
        # Rows answered before the restart are not sent again; only those in flight when the
        # kernel died (at most the concurrency) reach the server twice.
        twice = [p for p, n in sent(loopback).items() if n > 1]
        assert len(twice) <= 3
    finally:
        kernel.close()


def test_jobs_of_other_and_dead_kernels(loop_session, loopback):
    import subprocess
    import sys

    from llm_notebook.batch import store

    # A job owned by a live process of another kernel, and one whose process is gone.
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    try:
        for job_id, pid in (("otherkernel1", alive.pid), ("deadkernel01", gone.pid)):
            store.create_job(loop_session.log, {"id": job_id, "fingerprint": job_id,
                                                "model": MODEL, "rows": 2,
                                                "kernel_session": "elsewhere"}, status="running")
            with loop_session.log.write() as db:
                db.execute("UPDATE jobs SET owner_pid = ? WHERE id = ?", (pid, job_id))
        other, dead = loop_session.job("otherkernel1"), loop_session.job("deadkernel01")
        assert other.status == "running" and not other.done
        assert dead.status == "interrupted" and dead.done
        listed = dict(zip(*[loop_session.jobs()[c] for c in ("id", "status")]))
        assert listed == {"otherkernel1": "running", "deadkernel01": "interrupted"}
        assert list(loop_session.jobs(active=True)["id"]) == ["otherkernel1"]
        from llm_notebook.errors import UserError

        with pytest.raises(UserError, match="runs in another kernel: stop it there"):
            other.cancel()
        with pytest.raises(TimeoutError, match="still running after 0.3 s"):
            other.wait(timeout=0.3)
        assert dead.cancel() is dead and dead.wait() is dead
        assert dead.result().isna().all() and len(dead.result()) == 2
        assert "interrupted: 0/2 rows done" in repr(dead)
    finally:
        alive.kill()
        alive.wait()


def test_the_progress_widget_of_a_background_job_cancels_it(loop_session, loopback):
    loopback.configure(latency=0.3)
    df = pd.DataFrame({"t": [f"row {i}" for i in range(40)]})
    job = df.llm.map("{t}", model=MODEL, concurrency=2, background=True, progress="widget")
    from llm_notebook.batch.background import queue_of

    widget = queue_of(loop_session).get(job.id).display.display.widget
    assert widget.background and widget.job_id == job.id
    wait_until(lambda: job.progress["done"] >= 2, 30, what="some rows")
    widget._handle_custom_msg({"type": "cancel"}, [])      # the widget's Stop button
    job.wait(timeout=30)
    assert job.status == "cancelled" and widget.status == "cancelled"
    assert "cancelled" in widget.snapshot
