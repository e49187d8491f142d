"""Workflows: multi-step LLM pipelines over DataFrames (`llm_notebook.Workflow`).

    wf = llm_notebook.Workflow("tickets").llm(...).filter(...).python(...)
    wf.run(df); wf.preview(df, n=3); wf.save(message="...")
    session.workflows.get("tickets"); session.workflows.export("tickets.yaml")
    python -m llm_notebook run tickets --input tickets.csv --output triaged.parquet

Modules: steps.py (a step as data, checked), workflow.py (Workflow), engine.py (running it),
keys.py (a step's key), results.py (kept results), batching.py and judge.py (the batch engine
and the yes/no judgement of filters), functions.py (the user's registered Python functions),
preview.py, progress.py, store.py (SQL), library.py (session.workflows), files.py (YAML/JSON),
cli.py (`python -m llm_notebook run`).
"""

from .errors import WorkflowError, WorkflowFileError, WorkflowNotFound, WorkflowStopped
from .functions import register, registered
from .steps import Step
from .workflow import Workflow

__all__ = ["Step", "Workflow", "WorkflowError", "WorkflowFileError", "WorkflowNotFound",
           "WorkflowStopped", "register", "registered"]
