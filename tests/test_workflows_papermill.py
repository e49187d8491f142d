"""A notebook that runs a saved workflow, executed by papermill with parameters (what a
scheduler such as jupyter-scheduler or cron does with it), against the loopback server."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pandas as pd
import papermill

from llm_notebook.workflows import Workflow


MODEL = "loop/loopback-model"
REPO_ROOT = str(Path(__file__).resolve().parent.parent)

PARAMETERS = '''\
workflow = "triage"
input_path = "tickets.csv"
output_path = "triaged.csv"
endpoint = ""
limit = None
'''
RUN = '''\
import pandas as pd
import llm_notebook

s = llm_notebook.session()
s.add_endpoint("loop", endpoint)
data = pd.read_csv(input_path)
if limit is not None:
    data = data.head(limit)
out = s.workflows.get(workflow).run(data)
out.to_csv(output_path, index=False)
print(f"{len(out)} rows written")
'''


def notebook(path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(PARAMETERS, metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(RUN)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)
    return path


def test_a_workflow_notebook_runs_under_papermill_with_a_parameter(loop_session, loopback,
                                                                   tmp_path, monkeypatch):
    (Workflow("triage")
     .llm("Summarize: {ticket}", output="summary", model=MODEL)
     .save(message="for the scheduler"))
    pd.DataFrame({"ticket": ["charged twice", "app crash", "late parcel"]}).to_csv(
        tmp_path / "tickets.csv", index=False)
    # The kernel papermill starts imports this checkout and writes to this test's log
    # (LLM_NOTEBOOK_LOG, set by the log_path fixture, is inherited).
    monkeypatch.setenv("PYTHONPATH", REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    source = notebook(tmp_path / "triage.ipynb")

    executed = papermill.execute_notebook(
        str(source), str(tmp_path / "triage-out.ipynb"), cwd=str(tmp_path),
        parameters={"endpoint": loopback.url, "limit": 2}, kernel_name="python3",
        progress_bar=False)

    out = pd.read_csv(tmp_path / "triaged.csv")
    assert out["summary"].tolist() == ["Echo: Summarize: charged twice",
                                       "Echo: Summarize: app crash"]      # limit=2 applied
    assert loopback.stats()["requests"] == 2
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "limit = 2" in injected[0].source
    printed = "".join(o.get("text", "") for o in executed.cells[-1].outputs)
    assert "2 rows written" in printed
    # The run is in the user's log like any other: the same workflow in this kernel sends nothing.
    again = loop_session.workflows.get("triage").run(
        pd.read_csv(tmp_path / "tickets.csv").head(2), progress=False)
    assert [s["status"] for s in again.attrs["workflow"]["steps"]] == ["skipped"]
    assert loopback.stats()["requests"] == 2
