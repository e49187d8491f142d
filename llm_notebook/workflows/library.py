"""Saved workflows: `session.workflows`, versioned in the log like templates.

    session.workflows.save(wf, message="first")       # a new immutable version
    session.workflows.get("tickets")                  # the latest; get("tickets@1") an older one
    session.workflows.history("tickets"); session.workflows.diff("tickets", 1, 2)
    session.workflows.export("tickets.yaml"); session.workflows.import_file("tickets.yaml")
"""

from __future__ import annotations

import builtins
import difflib
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from . import files, functions
from . import store
from .errors import WorkflowError, WorkflowNotFound
from .steps import check_name
from .workflow import Workflow

_LIST_COLUMNS = ["name", "version", "versions", "steps", "tags", "description", "updated"]
_HISTORY_COLUMNS = ["version", "created", "message", "steps", "tags"]


class WorkflowLibrary:
    """Save, version, list, diff, export and import workflows; every kernel using the same log
    sees the same library. `register` makes a Python function available to Python steps."""

    register = staticmethod(functions.register)

    def __init__(self, log: Any | Callable[[], Any]):
        self._log_source = log

    @property
    def log(self):
        return self._log_source() if callable(self._log_source) else self._log_source

    # -- writing ----------------------------------------------------------------------------

    def save(self, workflow: Workflow, *, message: str | None = None,
             tags: Iterable[str] | str | None = None) -> Workflow:
        """Save `workflow` as a new version of its name; returns the saved version. When `tags`
        is not given the new version keeps the latest one's."""
        if not isinstance(workflow, Workflow):
            raise WorkflowError(f"save() takes a Workflow, not {type(workflow).__name__}")
        if workflow.name is None:
            raise WorkflowError("give the workflow a name before saving it: Workflow('tickets', "
                                "...) or wf.name = 'tickets'")
        if not workflow.steps:
            raise WorkflowError(f"workflow '{workflow.name}' has no steps to save")
        check_name(workflow.name, "workflow")
        if tags is None:
            latest = store.get_version(self.log, workflow.name)
            tags = latest["tags"] if latest else workflow.tags
        row = dict(workflow.content(), tags=_tags(tags),
                   message=_text(message, "message") if message is not None else None)
        return Workflow.from_row(store.insert_versions(self.log, [row])[0])

    def delete(self, name: str) -> int:
        """Delete a workflow, all its versions and its steps' kept results."""
        return store.delete(self.log, self._known(name))

    def import_file(self, path: str | os.PathLike) -> builtins.list[Workflow]:
        """Import the workflows of a file; all or nothing, and a workflow equal to its latest
        saved version is not saved again. Python steps come in as names: they run only with a
        function of that name registered in this process."""
        workflows = files.read(Path(path))
        rows = store.insert_versions(self.log, [wf.content() for wf in workflows],
                                     skip_unchanged=True)
        return [Workflow.from_row(r) for r in rows]

    # -- reading ----------------------------------------------------------------------------

    def get(self, name: str, version: int | None = None) -> Workflow:
        """A saved workflow: the latest version, or `version` (also written "name@version")."""
        name, version = _split_ref(name, version)
        row = store.get_version(self.log, name, version)
        if row is not None:
            return Workflow.from_row(row)
        numbers = store.version_numbers(self.log, name)
        if not numbers:
            raise WorkflowNotFound(self._not_found(name))
        raise WorkflowNotFound(f"workflow '{name}' has no version {version}; its versions are "
                               f"{', '.join(map(str, numbers))}")

    def versions(self, name: str) -> builtins.list[Workflow]:
        """Every version, newest first."""
        return [Workflow.from_row(r) for r in store.versions(self.log, self._known(name))]

    def names(self) -> builtins.list[str]:
        return store.names(self.log)

    def list(self, tag: str | None = None):
        """A DataFrame of the saved workflows (latest versions), optionally with `tag`."""
        import pandas as pd

        rows = [{"name": r["name"], "version": r["version"], "versions": r["versions"],
                 "steps": len(r["steps"]), "tags": r["tags"], "description": r["description"],
                 "updated": pd.to_datetime(r["created"], unit="s", utc=True)}
                for r in store.latest_all(self.log, tag)]
        return pd.DataFrame(rows, columns=_LIST_COLUMNS)

    def history(self, name: str):
        """A DataFrame of a workflow's versions, newest first."""
        import pandas as pd

        rows = [{"version": wf.version, "created": wf.created, "message": wf.message,
                 "steps": ", ".join(wf.names()), "tags": builtins.list(wf.tags)}
                for wf in self.versions(name)]
        return pd.DataFrame(rows, columns=_HISTORY_COLUMNS)

    def diff(self, name: str, v1: int | None = None, v2: int | None = None) -> str:
        """A unified diff of two versions (default: the latest and the one before); "" when they
        are the same."""
        name = self._known(name)
        if v2 is None:
            v2 = self.get(name).version
        if v1 is None:
            earlier = [n for n in store.version_numbers(self.log, name) if n < v2]
            if not earlier:
                raise WorkflowError(f"workflow '{name}' has no version before {v2} to compare "
                                    "with; pass v1= and v2=")
            v1 = earlier[-1]
        a, b = self.get(name, v1), self.get(name, v2)
        return "\n".join(difflib.unified_diff(_diff_lines(a), _diff_lines(b),
                                              fromfile=f"{name} v{a.version}",
                                              tofile=f"{name} v{b.version}", lineterm=""))

    def export(self, path: str | os.PathLike, *, names: Iterable[str] | str | None = None,
               all_versions: bool = False) -> str:
        """Write workflows (all, or `names`; their latest versions unless `all_versions`) to one
        .yaml, .yml or .json file; returns its path."""
        path = Path(path)
        if path.suffix.lower() not in files.SUFFIXES:
            raise WorkflowError(f"{path.name}: export writes a .yaml, .yml or .json file")
        chosen = self.names() if names is None else [
            self._known(n) for n in dict.fromkeys([names] if isinstance(names, str) else names)]
        workflows = [wf for n in chosen
                     for wf in (self.versions(n)[::-1] if all_versions else [self.get(n)])]
        files.write(path, workflows)
        return str(path)

    # -- helpers ----------------------------------------------------------------------------

    def _known(self, name: str) -> str:
        check_name(name, "workflow")
        if not store.version_numbers(self.log, name):
            raise WorkflowNotFound(self._not_found(name))
        return name

    def _not_found(self, name: str) -> str:
        saved = self.names()
        if not saved:
            return (f"no workflow named '{name}': none is saved yet; save one with "
                    "wf.save() or session.workflows.save(wf)")
        close = difflib.get_close_matches(name, saved, n=3, cutoff=0.6)
        hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
        shown = ", ".join(saved[:20]) + (f", … ({len(saved) - 20} more)" if len(saved) > 20 else "")
        return f"no workflow named '{name}'{hint}; saved workflows: {shown}"

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(store.version_numbers(self.log, name))

    def __len__(self) -> int:
        return len(self.names())

    def __repr__(self) -> str:
        return f"<WorkflowLibrary: {len(self)} workflows in {self.log.path}>"

    def _repr_html_(self) -> str:
        return self.list().to_html(index=False)


def _split_ref(name: Any, version: Any) -> tuple[str, int | None]:
    if not isinstance(name, str):
        raise WorkflowError(f"a workflow name is text, like 'tickets'; got {type(name).__name__}")
    if "@" in name:
        if version is not None:
            raise WorkflowError("give the version either as 'name@N' or as version=N, not both")
        name, _, version = name.partition("@")
    check_name(name, "workflow")
    if version is None:
        return name, None
    if isinstance(version, str) and version.isdigit():
        version = int(version)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise WorkflowError(f"a workflow version is a whole number >= 1 (as in '{name}@2'); "
                            f"got {version!r}")
    return name, version


def _tags(tags) -> builtins.list[str]:
    if isinstance(tags, str):
        tags = [tags]
    out: builtins.list[str] = []
    for tag in tags or ():
        if not isinstance(tag, str) or not tag.strip():
            raise WorkflowError(f"tags are non-empty text; got {tag!r}")
        if tag.strip() not in out:
            out.append(tag.strip())
    return out


def _text(value: Any, what: str) -> str | None:
    if not isinstance(value, str):
        raise WorkflowError(f"{what} must be text, not {type(value).__name__}")
    return value.strip() or None


def _diff_lines(wf: Workflow) -> builtins.list[str]:
    """A canonical YAML text of a version's content (description, steps, tags), for diffs."""
    import yaml

    content = {"description": wf.description, "steps": [s.to_dict() for s in wf.steps],
               "tags": builtins.list(wf.tags)}
    return yaml.safe_dump(content, sort_keys=False, allow_unicode=True, width=100).splitlines()
