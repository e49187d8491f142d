"""Workflow files: YAML or JSON (chosen by the extension), written by `session.workflows.export`
and read by `import_file` and the command line.

    llm_notebook_workflows: 1          # format version
    workflows:
      - name: tickets
        description: Triage support tickets
        steps:
          - {name: extract, kind: llm, prompt: "Extract ... {ticket}", schema: {...}}
          - {name: category, kind: llm, prompt: "Classify ... {issue}", model: local/smollm2}
          - {name: urgent, kind: filter, prompt: "Is this urgent? {issue}"}
          - {name: due, kind: python, function: add_due_date}
        tags: [support]
        message: first version
        version: 1                     # informational: importing numbers versions anew
        created: '2025-01-01T12:00:00+00:00'

A file may come from someone else, so it is read as templates are (templates/files.py: at most
5 MB, YAML aliases bounded, no Python tags), and every workflow in it is checked as a saved one
is (workflows/steps.py): generation options only, no code. A Python step names a function
(`function: add_due_date`) that runs only if the user registered one of that name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..templates import files as template_files
from .errors import WorkflowError, WorkflowFileError
from .workflow import Workflow

FORMAT_KEY = "llm_notebook_workflows"
FORMAT_VERSION = 1
SUFFIXES = (".yaml", ".yml", ".json")
_ENTRY_KEYS = {"name", "description", "steps", "tags", "message", "version", "created"}


def dumps(workflows: list[Workflow], suffix: str) -> str:
    import json

    doc = {FORMAT_KEY: FORMAT_VERSION, "workflows": [wf.to_dict() for wf in workflows]}
    if suffix == ".json":
        return json.dumps(doc, ensure_ascii=False, indent=2) + "\n"
    import yaml

    return yaml.dump(doc, Dumper=template_files._yaml_dumper(), sort_keys=False,
                     allow_unicode=True, width=100)


def write(path: Path, workflows: list[Workflow]) -> None:
    """Write workflows to one file, atomically."""
    template_files.write_text(path, dumps(workflows, path.suffix.lower()))


def read(path: Path) -> list[Workflow]:
    """Every workflow in a file, checked; a bad file raises WorkflowFileError naming it."""
    if path.suffix.lower() not in SUFFIXES:
        raise WorkflowFileError(path, "workflow files end in .yaml, .yml or .json")
    if not path.is_file():
        raise WorkflowFileError(path, "no such file")
    data = template_files.load_bounded(path, WorkflowFileError, "workflow")
    try:
        return _workflows(path, data)
    except WorkflowFileError:
        raise
    except WorkflowError as exc:
        raise WorkflowFileError(path, str(exc)) from None


def _workflows(path: Path, data: Any) -> list[Workflow]:
    if not isinstance(data, dict) or FORMAT_KEY not in data:
        raise WorkflowError(f"not a workflow file: expected a mapping with '{FORMAT_KEY}: "
                            f"{FORMAT_VERSION}' and 'workflows' (what session.workflows.export "
                            "writes)")
    version = data.get(FORMAT_KEY)
    if version != FORMAT_VERSION:
        if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
            raise WorkflowError(f"format version {version} was written by a newer llm-notebook; "
                                "upgrade llm-notebook to import it")
        raise WorkflowError(f"'{FORMAT_KEY}' must be {FORMAT_VERSION}, found {version!r}")
    extra = set(data) - {FORMAT_KEY, "workflows"}
    if extra:
        raise WorkflowError(f"unknown top-level key(s) {', '.join(map(repr, sorted(extra, key=str)))}")
    entries = data.get("workflows")
    if not isinstance(entries, list):
        raise WorkflowError("'workflows' must be a list of workflows")
    out = []
    for number, entry in enumerate(entries, 1):
        where = f"workflow {number}"
        if not isinstance(entry, dict):
            raise WorkflowError(f"{where} must be a mapping with 'name' and 'steps'")
        unknown = set(entry) - _ENTRY_KEYS
        if unknown:
            raise WorkflowError(f"{where}: unknown key(s) "
                                f"{', '.join(map(repr, sorted(unknown, key=str)))}; a workflow "
                                f"has {', '.join(sorted(_ENTRY_KEYS))}")
        if "name" not in entry or not isinstance(entry.get("steps"), list):
            raise WorkflowError(f"{where}: needs 'name' and a list of 'steps'")
        tags = entry.get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) and t.strip() for t in tags):
            raise WorkflowError(f"{where}: tags are a list of non-empty texts")
        message = entry.get("message")
        if message is not None and not isinstance(message, str):
            raise WorkflowError(f"{where}: message is text")
        wf = Workflow.from_row({"name": entry["name"], "steps": entry["steps"],
                                "description": entry.get("description")})
        wf.tags = tuple(dict.fromkeys(t.strip() for t in tags))
        wf.message = message or f"imported from {path.name}"
        out.append(wf)
    return out
