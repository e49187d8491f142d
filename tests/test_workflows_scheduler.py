"""jupyter-scheduler runs a workflow notebook on a schedule with parameters: a real jupyter server
with the scheduler's server extension, a job definition with a cron schedule created through its
REST API and a run of it executed by its own executor, against the loopback server. jupyter-scheduler is in the test extra; for users it is
optional (README "Workflows": where it is not installed, cron runs the command line)."""

from __future__ import annotations

import json
import time

import pandas as pd
import pytest
from browser.helpers import LabServer
from test_workflows_papermill import notebook

from llm_notebook.workflows import Workflow

MODEL = "loop/loopback-model"
JOB_TIMEOUT_S = 180


@pytest.fixture
def server(tmp_path):
    lab = LabServer(tmp_path / "lab").start()
    yield lab
    lab.stop()


def test_a_scheduled_job_runs_the_workflow_notebook_with_parameters(server, loopback):
    from llm_notebook.log import Log
    from llm_notebook.workflows.library import WorkflowLibrary

    server.log_path.parent.mkdir(parents=True, exist_ok=True)
    wf = Workflow("triage").llm("Summarize: {ticket}", output="summary", model=MODEL)
    WorkflowLibrary(Log(str(server.log_path))).save(wf, message="scheduled")
    pd.DataFrame({"ticket": ["charged twice", "app crash", "late parcel"]}).to_csv(
        server.root_dir / "tickets.csv", index=False)
    notebook(server.root_dir / "triage.ipynb")
    result = server.base_dir / "triaged.csv"

    # A job definition on a schedule, as JupyterLab's "Create Notebook Job" makes one; parameter
    # values are Python source (jupyter-scheduler writes `name = value` lines).
    parameters = {"endpoint": json.dumps(loopback.url), "limit": "2",
                  "input_path": json.dumps(str(server.root_dir / "tickets.csv")),
                  "output_path": json.dumps(str(result))}
    definition = server.api("POST", "/scheduler/job_definitions", {
        "name": "triage every morning", "input_uri": "triage.ipynb",
        "runtime_environment_name": "python3", "output_formats": ["ipynb"],
        "schedule": "0 7 * * *", "timezone": "UTC", "parameters": parameters})
    defined = server.api("GET", f"/scheduler/job_definitions/{definition['job_definition_id']}")
    assert (defined["schedule"], defined["active"]) == ("0 7 * * *", True)
    # Its next run, started now (what the schedule does at 7:00, and "Run job" does at once).
    job = server.api("POST", f"/scheduler/job_definitions/{definition['job_definition_id']}/jobs",
                     {"parameters": parameters})
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while True:
        described = server.api("GET", f"/scheduler/jobs/{job['job_id']}")
        # (A new job reads STOPPED until its spawned process marks it IN_PROGRESS.)
        if described["status"] in ("COMPLETED", "FAILED"):
            break
        assert time.monotonic() < deadline, f"the job still ran after {JOB_TIMEOUT_S} s"
        time.sleep(0.5)     # polling a job's status, as the scheduler's own UI does
    assert described["status"] == "COMPLETED", described.get("status_message")
    out = pd.read_csv(result)
    assert out["summary"].tolist() == ["Echo: Summarize: charged twice",
                                       "Echo: Summarize: app crash"]
    assert loopback.stats()["requests"] == 2
    # The job's calls are in the user's log, so the same run in a kernel sends nothing.
    logged = Log(str(server.log_path)).read("SELECT count(*) FROM calls WHERE status = 'ok'")
    assert logged[0][0] == 2
