"""`python -m llm_notebook run`: a saved workflow over a CSV in a real subprocess, against the
loopback server: the output file, progress on stderr, exit statuses, one-line errors, re-runs
that send nothing, and Ctrl-C within 2 s keeping the finished rows."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from llm_notebook.workflows import Workflow

MODEL = "loop/loopback-model"
REPO_ROOT = str(Path(__file__).resolve().parent.parent)
LIMIT = 2.0          # seconds from SIGINT to exit (the brief's promise)


def env_for(tmp_path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update(LLM_NOTEBOOK_LOG=str(tmp_path / "log.db"),
               PYTHONPATH=REPO_ROOT + os.pathsep + env.get("PYTHONPATH", ""))
    return env


def cli(tmp_path, *args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llm_notebook", *args], cwd=tmp_path,
                          env=env_for(tmp_path), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


@pytest.fixture
def saved(loop_session, tmp_path):
    """A two-step workflow saved in the test's log, and a CSV of three tickets."""
    (Workflow("triage", description="tickets")
     .llm("Summarize: {ticket}", output="summary", model=MODEL)
     .filter("Urgent? {ticket} {verdict}", name="urgent", model=MODEL)
     .save(message="first"))
    pd.DataFrame({"ticket": ["charged twice", "app crash", "late parcel"],
                  "verdict": ['[[reply:{"answer": "yes"}]]', '[[reply:{"answer": "no"}]]',
                              '[[reply:{"answer": "yes"}]]']}).to_csv(tmp_path / "in.csv",
                                                                      index=False)
    return tmp_path


def test_runs_a_saved_workflow_on_a_csv_then_sends_nothing_the_second_time(saved, loopback):
    args = ("run", "triage", "--input", "in.csv", "--output", "out.parquet",
            "--endpoint", f"loop={loopback.url}")
    done = cli(saved, *args)
    assert done.returncode == 0, done.stderr
    out = pd.read_parquet(saved / "out.parquet")
    assert out["ticket"].tolist() == ["charged twice", "late parcel"]
    assert out["summary"].tolist() == ["Echo: Summarize: charged twice",
                                       "Echo: Summarize: late parcel"]
    assert loopback.stats()["requests"] == 6
    lines = done.stderr.splitlines()
    assert any(line.startswith("[1/2] summary (llm): 3 rows") for line in lines), done.stderr
    assert any(line.startswith("[2/2] urgent (filter): 3 rows → 2 kept") for line in lines)
    assert "wrote 2 of 3 rows to out.parquet" in lines[-1]

    again = cli(saved, *args[:-4], "--output", "again.csv", "--endpoint", f"loop={loopback.url}")
    assert again.returncode == 0, again.stderr
    assert loopback.stats()["requests"] == 6                       # nothing sent
    assert "0 requests sent" in again.stderr and "2 of 2 steps unchanged" in again.stderr
    assert pd.read_csv(saved / "again.csv")["summary"].tolist() == out["summary"].tolist()


def test_a_workflow_file_with_a_python_step_from_the_users_functions_file(saved, loopback):
    (saved / "wf.yaml").write_text(
        "llm_notebook_workflows: 1\nworkflows:\n- name: shout\n  steps:\n"
        "  - {name: upper, kind: python, function: upper_tickets}\n"
        f"  - {{name: reply, kind: llm, prompt: 'Reply to {{ticket}}', model: {MODEL}}}\n")
    (saved / "my_steps.py").write_text(
        "import llm_notebook\n\n@llm_notebook.workflows.register\n"
        "def upper_tickets(df):\n    return df.assign(ticket=df['ticket'].str.upper())\n")
    args = ("run", "wf.yaml", "--input", "in.csv", "--output", "out.jsonl",
            "--endpoint", f"loop={loopback.url}", "--quiet")
    refused = cli(saved, *args)
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1 and "'upper_tickets', which is not registered" in refused.stderr
    done = cli(saved, *args, "--functions", "my_steps.py")
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert pd.read_json(saved / "out.jsonl", lines=True)["reply"].tolist() == [
        "Echo: Reply to CHARGED TWICE", "Echo: Reply to APP CRASH", "Echo: Reply to LATE PARCEL"]


@pytest.mark.parametrize("args, message", [
    (("run", "nope", "--input", "in.csv", "--output", "o.csv"), "no workflow named 'nope'"),
    (("run", "triage", "--input", "missing.csv", "--output", "o.csv"), "missing.csv: no such file"),
    (("run", "triage", "--input", "in.csv", "--output", "o.xlsx"), "output files are"),
    (("run", "triage", "--input", "in.csv", "--output", "nowhere/o.csv"), "does not exist"),
    (("run", "triage@7", "--input", "in.csv", "--output", "o.csv"), "has no version 7"),
    (("run", "wf.yaml", "--input", "in.csv", "--output", "o.csv"), "wf.yaml: no such file"),
    (("run", "triage", "--input", "in.csv", "--output", "o.csv", "--endpoint", "nourl"),
     "--endpoint takes NAME=URL"),
    (("run", "triage", "--input", "in.csv", "--output", "o.csv", "--functions", "nope.py"),
     "--functions nope.py: no such Python file"),
])
def test_problems_are_one_line_with_exit_status_1_and_write_nothing(saved, args, message, capsys,
                                                                    monkeypatch):
    from llm_notebook.__main__ import main

    monkeypatch.chdir(saved)
    assert main(list(args)) == 1
    err = capsys.readouterr().err
    assert err.startswith("llm-notebook: error: ") and err.count("\n") == 1
    assert message in err, err
    assert not list(saved.glob("o.*"))


def test_in_process_run_of_a_file_with_several_workflows(saved, loopback, capsys, monkeypatch):
    from llm_notebook.__main__ import main

    monkeypatch.chdir(saved)
    (saved / "two.json").write_text(json.dumps({"llm_notebook_workflows": 1, "workflows": [
        {"name": "a", "steps": [{"name": "s", "kind": "llm", "prompt": "A {ticket}", "model": MODEL}]},
        {"name": "b", "steps": [{"name": "s", "kind": "llm", "prompt": "B {ticket}", "model": MODEL}]},
    ]}))
    base = ["run", "two.json", "--input", "in.csv", "--output", "out.json", "--limit", "1"]
    assert main(base) == 1
    assert "holds several workflows (a, b); choose one with --name" in capsys.readouterr().err
    assert main([*base, "--name", "c"]) == 1
    assert main([*base, "--name", "b", "--no-cache", "--concurrency", "2"]) == 0
    assert pd.read_json(saved / "out.json")["s"].tolist() == ["Echo: B charged twice"]
    assert "wrote 1 of 1 rows to out.json" in capsys.readouterr().err


def test_usage_errors_exit_2(tmp_path):
    assert cli(tmp_path).returncode == 2
    assert cli(tmp_path, "frobnicate").returncode == 2
    assert cli(tmp_path, "run", "triage").returncode == 2          # no --input/--output
    helped = cli(tmp_path, "run", "--help")
    assert helped.returncode == 0 and "--functions" in helped.stdout


def test_rows_without_answers_exit_3_and_the_next_run_retries_only_them(saved, loopback):
    loopback.script([{"kind": "400", "match": "app crash"}])        # not retried: the row fails
    args = ("run", "triage", "--input", "in.csv", "--output", "out.csv",
            "--endpoint", f"loop={loopback.url}", "--quiet")
    done = cli(saved, *args)
    assert done.returncode == 3, done.stderr
    assert "rows got no answer" in done.stderr
    before = loopback.stats()["requests"]
    again = cli(saved, *args)
    assert again.returncode == 0, again.stderr
    # Only the failed row's summary: the filter reads {ticket} and {verdict}, which did not
    # change, so its kept judgements stand.
    assert loopback.stats()["requests"] - before == 1


def test_ctrl_c_stops_within_2_s_and_keeps_the_finished_rows(saved, loopback):
    rows = 120
    pd.DataFrame({"ticket": [f"ticket {i:03d}" for i in range(rows)],
                  "verdict": ['[[reply:{"answer": "no"}]]'] * rows}).to_csv(saved / "many.csv", index=False)
    loopback.configure(latency=0.3)
    args = ["run", "triage", "--input", "many.csv", "--output", "out.csv",
            "--endpoint", f"loop={loopback.url}", "--concurrency", "8"]
    proc = subprocess.Popen([sys.executable, "-m", "llm_notebook", *args], cwd=saved,
                            env=env_for(saved), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while loopback.stats()["requests"] < 16 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert loopback.stats()["requests"] >= 16, "the run never got going"
        sigint_at = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
        seconds = time.monotonic() - sigint_at
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 130, stderr
    assert seconds <= LIMIT, f"exited {seconds:.2f} s after SIGINT"
    assert stderr.splitlines()[-1].startswith("llm-notebook: interrupted: batch interrupted: ")
    assert "Traceback" not in stderr
    assert not (saved / "out.csv").exists()
    import sqlite3

    with sqlite3.connect(saved / "log.db") as db:
        answered = db.execute("SELECT count(*) FROM calls WHERE status = 'ok'").fetchone()[0]
    assert answered >= 8
    # The same command again sends only the rows that had no answer.
    loopback.reset()
    again = cli(saved, *args[:-2], "--quiet")
    assert again.returncode == 0, again.stderr
    assert loopback.stats()["requests"] == 2 * rows - answered
