"""ddf.llm.map on a real distributed.LocalCluster (two worker processes, nannies that restart
a killed worker) against the loopback server over real HTTP. The kernel (this process) keeps
the log; the workers only call."""

from __future__ import annotations

import collections
import os
import pickle
import signal
import threading
import time
import urllib.request

import dask.dataframe as dd
import pandas as pd
import pytest
from distributed import Client, LocalCluster
from distributed.diagnostics.plugin import SchedulerPlugin

MODEL = "loop/loopback-model"
# Not key-shaped: only its registration with each worker's redaction can mask it there.
SENTINEL = "plain words 7c0ffee5 as a key"


@pytest.fixture(scope="module")
def client():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address="127.0.0.1:0", host="127.0.0.1") as cluster, \
            Client(cluster, set_as_default=False) as c:
        yield c


def frame(n: int, *, parts: int = 3) -> "dd.DataFrame":
    pdf = pd.DataFrame({"x": [f"row {i}" for i in range(n)]}, index=range(100, 100 + n))
    return dd.from_pandas(pdf, npartitions=parts)


def sent(loopback) -> collections.Counter:
    counts = collections.Counter()
    for r in loopback.requests():
        counts[r["body"]["messages"][-1]["content"]] += 1
    return counts


def job_calls(session, job_id: str) -> list[dict]:
    return list(session.log.rows_where("calls", "job_id = ?", [job_id]))


def test_map_aligns_to_the_index_and_partitions_and_logs_in_the_kernel(loop_session, loopback,
                                                                      client):
    ddf = frame(24)
    out = ddf.llm.map("Say {x}", model=MODEL, progress=False, client=client)
    assert isinstance(out, dd.Series) and out.divisions == ddf.divisions
    got = out.compute()
    assert list(got.index) == list(range(100, 124))
    assert list(got) == [f"Echo: Say row {i}" for i in range(24)]
    info = out.llm_info
    assert info["ok"] == 24 and info["error"] == 0
    assert len(info["workers"]) == 2 and sum(info["workers"].values()) == 24  # both workers
    # The kernel logged every row once; ddf.assign lines the answers up with their rows.
    calls = job_calls(loop_session, info["job_id"])
    assert sorted(int(c["row_key"]) for c in calls) == list(range(24))
    joined = ddf.assign(answer=out).compute()
    assert (joined["answer"] == "Echo: Say " + joined["x"]).all()
    # Answered rows are cached in the kernel's log: a second run sends nothing.
    before = loopback.stats()["requests"]
    again = ddf.llm.map("Say {x}", model=MODEL, progress=False, client=client)
    assert again.llm_info["cached"] == 24 and loopback.stats()["requests"] == before
    assert again.llm_info["tasks"] == 0


def test_series_map_schema_and_estimate_sends_nothing(loop_session, loopback, client):
    dds = dd.from_pandas(pd.Series(["a", "b", "c", "d"], name="letter", index=[9, 7, 5, 3]),
                         npartitions=2)
    est = dds.llm.estimate("Letter {letter}", model=MODEL, client=client)
    assert est.rows == 4 and est.to_send == 4 and loopback.stats()["requests"] == 0
    out = dds.llm.map("Letter {value}", model=MODEL, progress=False, client=client)
    assert out.compute().to_dict() == {9: "Echo: Letter a", 7: "Echo: Letter b",
                                       5: "Echo: Letter c", 3: "Echo: Letter d"}
    loopback.configure(replies=['{"n": 3}'])
    fields = dds.llm.map("Count {value}", model=MODEL, progress=False, client=client,
                         schema={"type": "object", "properties": {"n": {"type": "integer"}},
                                 "required": ["n"]})
    assert isinstance(fields, dd.DataFrame)
    assert fields.compute()["n"].tolist() == [3, 3, 3, 3]


def test_rpm_and_concurrency_hold_for_the_whole_cluster(loop_session, loopback, client):
    # Four tasks of two rows over two workers, each task able to send both its rows at once:
    # only the scheduler's gate keeps the cluster to the limits, measured at the server.
    out = frame(8).llm.map("Say {x}", model=MODEL, progress=False, client=client, rpm=300,
                           rows_per_task=2)
    assert out.llm_info["ok"] == 8 and len(out.llm_info["workers"]) == 2
    times = sorted(loopback.stats()["request_times"])
    # 300 rpm: the gate grants a turn every 0.2 s (unpaced, the 8 requests land within a few
    # ms). A busy 2-core machine delays some sends after their turn, which can bring two
    # close together at the server, but never ahead of the schedule as a whole.
    assert len(times) == 8 and times[-1] - times[0] >= 7 * 0.2 * 0.75, times
    assert max(sum(1 for t in times if start <= t < start + 1.0) for start in times) <= 6, times

    loopback.reset()
    loopback.configure(latency=0.3)
    out = frame(12).llm.map("Go {x}", model=MODEL, progress=False, client=client,
                            concurrency=2, rows_per_task=3)
    assert out.llm_info["ok"] == 12 and len(out.llm_info["workers"]) == 2
    assert loopback.stats()["max_in_flight"] == 2


def test_a_429_pauses_every_worker(loop_session, loopback, client):
    loopback.configure(latency=0.05)
    loopback.script([{"kind": "429", "retry_after": 1, "match": "row 1", "times": 1}])
    out = frame(16).llm.map("Say {x}", model=MODEL, progress=False, client=client,
                            concurrency=4, rows_per_task=2)
    assert out.llm_info["ok"] == 16
    records = loopback.requests()
    limited = [r["time"] for r in records if r.get("status") == 429]
    assert len(limited) == 1
    t = limited[0]
    # Requests already past the gate may land just after the 429; then nobody sends until
    # the Retry-After has passed.
    paused = [r["time"] - t for r in records if 0.2 < r["time"] - t < 0.9]
    assert paused == [] and max(r["time"] for r in records) - t >= 0.9


def test_a_worker_killed_mid_run_loses_no_row_and_logs_none_twice(loop_session, loopback,
                                                                   client):
    loopback.configure(latency=0.4)
    pids = client.run(os.getpid)
    victim = sorted(pids.values())[0]

    def kill_when_busy():
        deadline = time.monotonic() + 30
        while loopback.stats()["requests"] < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(victim, signal.SIGKILL)

    killer = threading.Thread(target=kill_when_busy)
    killer.start()
    out = frame(16).llm.map("Say {x}", model=MODEL, progress=False, client=client,
                            concurrency=4, rows_per_task=2)
    killer.join()
    client.wait_for_workers(2, timeout=60)
    assert victim not in client.run(os.getpid).values()          # it was killed and replaced
    got = out.compute()
    assert list(got) == [f"Echo: Say row {i}" for i in range(16)]
    info = out.llm_info
    assert info["ok"] == 16 and info["error"] == 0
    calls = job_calls(loop_session, info["job_id"])
    assert sorted(int(c["row_key"]) for c in calls) == list(range(16))   # each row once
    assert loopback.stats()["requests"] >= 16


def test_a_rerun_sends_only_the_rows_without_an_answer(loop_session, loopback, client):
    loopback.script([{"kind": "400", "match": "row 3"}, {"kind": "400", "match": "row 6"}])
    ddf = frame(10)
    first = ddf.llm.map("Say {x}", model=MODEL, progress=False, client=client)
    assert first.llm_info["ok"] == 8 and first.llm_info["error"] == 2
    assert first.compute().isna().sum() == 2
    loopback.reset()
    second = ddf.llm.map("Say {x}", model=MODEL, progress=False, client=client)
    assert dict(sent(loopback)) == {"Say row 3": 1, "Say row 6": 1}
    assert second.llm_info["ok"] == 10
    assert list(second.compute()) == [f"Echo: Say row {i}" for i in range(10)]


class GraphRecorder(SchedulerPlugin):
    """Keeps every task's pickled spec as the scheduler received it."""

    name = "test-graph-recorder"

    def __init__(self):
        self.blobs = []

    def update_graph(self, scheduler, *, keys, **kwargs):
        from distributed.protocol.pickle import dumps

        for key in keys:
            ts = scheduler.tasks.get(key)
            if ts is not None:
                self.blobs.append(dumps(ts.run_spec))


def _recorded(dask_scheduler=None) -> bytes:
    return b"".join(dask_scheduler.plugins["test-graph-recorder"].blobs)


def test_keys_reach_workers_outside_the_graph_dashboard_and_logs(nb_session, loopback, client):
    nb_session.add_endpoint("loop", loopback.url, api_key=SENTINEL)
    client.register_plugin(GraphRecorder())
    loopback.script([{"kind": "401", "match": "row 2"}])     # echoes the key in its body
    out = frame(6).llm.map("Say {x}", model=MODEL, progress=False, client=client,
                           max_retries=0)
    assert out.llm_info["ok"] == 5
    # The key reached the provider from the workers...
    assert {r["authorization"] for r in loopback.requests()} == {f"Bearer {SENTINEL}"}
    # ...but not through the graph (which does hold the rows' requests),
    graph = client.run_on_scheduler(_recorded)
    assert b"Say row 4" in graph and SENTINEL.encode() not in graph
    # nor the dashboard's pages about the cluster,
    base = client.dashboard_link.rsplit("/", 1)[0]
    workers = list(client.scheduler_info()["workers"])
    pages = ["/status", "/info/main/workers.html", "/info/main/logs.html",
             *(f"/info/worker/{urllib.request.quote(w, safe='')}.html" for w in workers),
             *(f"/info/logs/{urllib.request.quote(w, safe='')}.html" for w in workers)]
    for page in pages:
        with urllib.request.urlopen(base + page, timeout=10) as resp:
            assert SENTINEL not in resp.read().decode("utf-8", "replace"), page
    # nor any log of the cluster, nor the echoed error (redacted on the worker) in our log.
    logs = repr(client.get_worker_logs()) + repr(client.get_scheduler_logs()) + \
        repr(client.get_worker_logs(nanny=True))
    assert SENTINEL not in logs
    calls = job_calls(nb_session, out.llm_info["job_id"])
    failed = [c for c in calls if c["status"] == "error"]
    assert len(failed) == 1 and failed[0]["error_kind"] == "auth"
    assert SENTINEL not in repr(calls)
    # The keys left the workers with the run.
    assert client.run(lambda dask_worker: "llm-notebook-keys" in dask_worker.plugins) == \
        {w: False for w in workers}


def test_without_a_client_the_error_says_how_to_start_one(loop_session, loopback, client):
    from llm_notebook.errors import UserError

    # The module's client is not the default one (set_as_default=False), so none is current.
    with pytest.raises(UserError, match="start a client first"):
        frame(3).llm.map("Say {x}", model=MODEL, progress=False)
    assert loopback.stats()["requests"] == 0


def test_the_budget_holds_for_the_whole_cluster(loop_session, loopback, client):
    # $0.1 per output token: a row holds ~$1 (max_tokens=10) and spends ~$0.5 (its 5 tokens).
    loop_session.config.prices = {MODEL: {"input": 0.0, "output": 100_000.0}}
    loopback.configure(latency=0.1)
    with pytest.warns(UserWarning, match="stopped before crossing its budget"):
        out = frame(16).llm.map("Say {x}", model=MODEL, progress=False, client=client,
                                max_tokens=10, budget=3.5, concurrency=4, rows_per_task=2)
    info = out.llm_info
    assert len(info["workers"]) == 2 and 0 < info["ok"] < 16
    assert info["cost"] <= 3.5 and loopback.stats()["requests"] == info["ok"]
    assert info["status"] == "budget"
    unsent = [c for c in job_calls(loop_session, info["job_id"]) if c["status"] != "ok"]
    assert unsent == []       # rows refused before sending are not calls: nothing was sent


def test_progress_follows_the_cluster_run(loop_session, loopback, client, capsys):
    loopback.configure(latency=0.2)
    loopback.script([{"kind": "400", "match": "row 5"}])
    frame(12).llm.map("Say {x}", model=MODEL, progress="text", client=client, concurrency=2,
                      rows_per_task=2)
    lines = capsys.readouterr().err.replace("\r", "\n").splitlines()
    done = [line for line in lines if "rows" in line]
    assert "12/12 rows · 1 errors" in done[-1] and "done" in done[-1]
    assert all("Dask: 2 workers" in line for line in done[1:]), done
    assert any("/12 rows" in line and not line.split("] ")[1].startswith(("0/", "12/"))
               for line in done), done          # it moved while the rows ran
    assert any("rows/s" in line for line in done)


def test_on_error_raise_stops_the_cluster_and_a_rerun_sends_the_rest(loop_session, loopback,
                                                                     client):
    from llm_notebook.batch.engine import BatchStopped

    loopback.configure(latency=0.2)
    loopback.script([{"kind": "400", "match": "row 1"}])
    ddf = frame(16)
    with pytest.raises(BatchStopped, match="row 1 failed"):
        ddf.llm.map("Say {x}", model=MODEL, progress=False, client=client, concurrency=2,
                    rows_per_task=2, on_error="raise")
    first = sum(sent(loopback).values())
    assert first < 16                                   # the cluster stopped sending
    time.sleep(0.5)                                     # nothing goes on behind our back
    assert sum(sent(loopback).values()) == first
    loopback.reset()
    out = ddf.llm.map("Say {x}", model=MODEL, progress=False, client=client)
    assert out.llm_info["ok"] == 16
    assert sum(sent(loopback).values()) == 16 - (first - 1)   # the answered rows are not sent


def test_ddf_llm_registers_when_dask_loads_after_llm_notebook():
    import subprocess
    import sys

    code = ("import sys, llm_notebook; assert 'dask' not in sys.modules; "
            "import pandas as pd, dask.dataframe as dd; "
            "d = dd.from_pandas(pd.DataFrame({'x': ['a']}), npartitions=1); "
            "print(type(d.llm).__name__, type(d.x.llm).__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["DaskLLMAccessor", "DaskLLMSeriesAccessor"]


@pytest.mark.local_model
def test_the_embedded_model_answers_on_every_worker(nb_session, client):
    ddf = frame(4, parts=2)
    out = ddf.llm.map("Name a colour like {x}", model="local/smollm2", progress=False,
                      client=client, max_tokens=4, temperature=0, rows_per_task=1)
    info = out.llm_info
    assert info["ok"] == 4 and len(info["workers"]) == 2, info
    got = out.compute()
    assert list(got.index) == list(range(100, 104)) and all(len(t) > 0 for t in got)
    calls = job_calls(nb_session, info["job_id"])
    assert len(calls) == 4 and all(c["output_tokens"] for c in calls)


def test_background_and_batch_api_are_refused_in_one_line(loop_session, loopback, client):
    from llm_notebook.errors import UserError

    for setting in ({"background": True}, {"via": "batch_api"}):
        with pytest.raises(UserError, match="ddf.llm.map does not take"):
            frame(3).llm.map("Say {x}", model=MODEL, client=client, **setting)
    assert loopback.stats()["requests"] == 0


def test_ctrl_c_stops_the_cluster_run_and_the_rerun_sends_the_rest(loop_session, loopback,
                                                                   client):
    loopback.configure(latency=0.3)
    ddf = frame(40)
    interrupted_at = []

    def ctrl_c_when_rows_run():
        deadline = time.monotonic() + 30
        while loopback.stats()["requests"] < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        interrupted_at.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=ctrl_c_when_rows_run).start()
    with pytest.raises(KeyboardInterrupt) as raised:
        ddf.llm.map("Say {x}", model=MODEL, client=client, concurrency=2, rows_per_task=2)
    assert time.monotonic() - interrupted_at[0] < 2.5      # the kernel is back within ~2 s
    assert "run the same call again" in str(raised.value)
    time.sleep(0.8)                                      # the closed gate lets nothing more out
    first = sum(sent(loopback).values())
    time.sleep(0.6)
    assert sum(sent(loopback).values()) == first < 40
    jobs = loop_session.jobs()
    assert len(jobs) == 1 and jobs.loc[0, "status"] == "interrupted"
    logged = int(jobs.loc[0, "done"])
    # Rows answered in time are logged; the rows then on the cluster are sent again.
    loopback.reset()
    loopback.configure(latency=0.0)
    out = ddf.llm.map("Say {x}", model=MODEL, progress=False, client=client)
    assert out.llm_info["ok"] == 40 and out.llm_info["job_id"] == jobs.loc[0, "id"]
    assert sum(sent(loopback).values()) == 40 - logged


def test_a_cluster_of_threads_in_this_process_runs_the_same_way(nb_session, loopback):
    # Client(processes=False) is a common way to start: workers on threads of the kernel.
    nb_session.add_endpoint("loop", loopback.url, api_key=SENTINEL)
    loopback.configure(latency=0.05)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, \
            Client(cluster, set_as_default=False) as threads:
        out = frame(12).llm.map("Say {x}", model=MODEL, progress=False, client=threads,
                                rpm=600, rows_per_task=3)
        assert list(out.compute()) == [f"Echo: Say row {i}" for i in range(12)]
        assert out.llm_info["ok"] == 12 and len(out.llm_info["workers"]) == 2
        times = sorted(loopback.stats()["request_times"])
        assert times[-1] - times[0] >= 11 * 0.1 * 0.75          # 600 rpm for both workers
        assert {r["authorization"] for r in loopback.requests()} == {f"Bearer {SENTINEL}"}
        assert threads.run(lambda dask_worker: "llm-notebook-keys" in dask_worker.plugins) == \
            {w: False for w in threads.scheduler_info()["workers"]}
