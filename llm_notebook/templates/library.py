"""The template library: versioned prompt templates stored in the log (``session.templates``)."""

from __future__ import annotations

import builtins
import difflib
import json
import numbers
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .. import template_store as store
from ..log import Log
from . import files
from .template import Template, TemplateError, TemplateNotFound, check_name

_LIST_COLUMNS = ["name", "version", "versions", "model", "tags", "variables", "updated"]
_HISTORY_COLUMNS = ["version", "created", "message", "model", "tags", "variables", "prompt",
                    "system"]


class TemplateLibrary:
    """Save, version, list, diff, export and import prompt templates.

    Every ``save`` adds a new immutable version; ``get(name)`` returns the latest and
    ``get(name, 2)`` (or ``get("name@2")``) an older one. Templates live in the session's log
    database, so every kernel using that log sees the same library.
    """

    def __init__(self, log: Log | Callable[[], Log]):
        # A callable follows the session when its log_path setting changes.
        self._log_source = log

    @property
    def log(self) -> Log:
        return self._log_source() if callable(self._log_source) else self._log_source

    # -- writing ----------------------------------------------------------------------------

    def save(self, name: str, prompt: str, *, system: str | None = None, model: str | None = None,
             options: dict | None = None, defaults: dict | None = None,
             tags: Iterable[str] | str | None = None, message: str | None = None) -> Template:
        """Save a new version of template ``name`` and return it.

        The prompt (and system text) use ``{variable}`` placeholders, ``{{``/``}}`` for literal
        braces; a syntax error raises TemplateSyntaxError with its line and column and saves
        nothing. ``defaults`` gives values for variables that a render does not pass;
        ``options`` are call options such as ``{"temperature": 0.2, "max_tokens": 200}``.
        ``tags`` label the template for ``list(tag=...)``; when not given, the new version keeps
        the tags of the latest one (pass ``tags=()`` to clear them).
        """
        if tags is None:
            latest = store.get_version(self.log, name) if isinstance(name, str) else None
            tags = latest["tags"] if latest else ()
        template = Template(name=name, prompt=prompt, system=system, model=model, options=options,
                            defaults=defaults, tags=tags, message=message)
        self._check_case(template.name)
        row = store.insert_versions(self.log, [template.content()])[0]
        return Template.from_row(row)

    def delete(self, name: str) -> int:
        """Delete a template and all its versions; returns how many versions were deleted."""
        name = self._known(name)
        return store.delete(self.log, name)

    def import_file(self, path: str | os.PathLike, *, name: str | None = None) -> list[Template]:
        """Import templates from a file or a folder of files; returns the templates stored.

        Reads our own YAML/JSON export and simonw/llm template YAML (``$var`` placeholders become
        ``{var}``; the template is named after the file, or ``name``). Every file is validated
        before anything is written, and all templates are written in one transaction: a bad file
        raises TemplateFileError naming it, and nothing is imported. A template whose content
        equals its latest saved version is not saved again, so importing twice adds nothing.
        """
        templates = files.read(Path(path), name=name)
        for t in templates:
            self._check_case(t.name)
        rows = store.insert_versions(self.log, [t.content() for t in templates],
                                     skip_unchanged=True)
        return [Template.from_row(r) for r in rows]

    # -- reading ----------------------------------------------------------------------------

    def get(self, name: str, version: int | None = None) -> Template:
        """A template: the latest version, or ``version`` (also written ``"name@version"``)."""
        name, version = _split_ref(name, version)
        row = store.get_version(self.log, name, version)
        if row is not None:
            return Template.from_row(row)
        numbers = store.version_numbers(self.log, name)
        if not numbers:
            raise TemplateNotFound(self._not_found_message(name))
        raise TemplateNotFound(f"template '{name}' has no version {version}; "
                               f"its versions are {_spans(numbers)}")

    def versions(self, name: str) -> builtins.list[Template]:
        """Every version of a template as Template objects, newest first."""
        name = self._known(name)
        return [Template.from_row(r) for r in store.versions(self.log, name)]

    def names(self) -> builtins.list[str]:
        return store.names(self.log)

    def list(self, tag: str | None = None):
        """A DataFrame of templates (latest versions): name, version, versions, model, tags,
        variables, updated. ``tag`` keeps those whose latest version has that tag."""
        import pandas as pd

        rows = []
        for row in store.latest_all(self.log, tag):
            try:
                t = Template.from_row(row)
            except TemplateError:
                # A stored version that may not be used (another tool wrote it, or it carries an
                # option templates may not): listed, so it can be found and deleted, never run.
                rows.append({"name": row["name"], "version": row["version"],
                             "versions": row["versions"], "model": row.get("model"),
                             "tags": row.get("tags") or [], "variables": None,
                             "updated": pd.to_datetime(row.get("created"), unit="s", utc=True)})
                continue
            rows.append({"name": t.name, "version": t.version, "versions": row["versions"],
                         "model": t.model, "tags": builtins.list(t.tags),
                         "variables": t.variables, "updated": t.created})
        return pd.DataFrame(rows, columns=_LIST_COLUMNS)

    def history(self, name: str):
        """A DataFrame of a template's versions, newest first, with their messages."""
        import pandas as pd

        rows = [{"version": t.version, "created": t.created, "message": t.message,
                 "model": t.model, "tags": builtins.list(t.tags), "variables": t.variables,
                 "prompt": t.prompt, "system": t.system}
                for t in self.versions(name)]
        return pd.DataFrame(rows, columns=_HISTORY_COLUMNS)

    def diff(self, name: str, v1: int | None = None, v2: int | None = None) -> str:
        """A unified diff between two versions (prompt, system, model, options, defaults, tags).

        By default ``v2`` is the latest version and ``v1`` the one before it. Returns "" when
        the two versions have the same content.
        """
        name = self._known(name)
        if v2 is None:
            v2 = self.get(name).version
        if v1 is None:
            earlier = [n for n in store.version_numbers(self.log, name) if n < v2]
            if not earlier:
                raise TemplateError(f"template '{name}' has no version before {v2} to compare "
                                    f"with; pass v1= and v2=")
            v1 = earlier[-1]
        a, b = self.get(name, v1), self.get(name, v2)
        return "\n".join(difflib.unified_diff(
            _diff_text(a), _diff_text(b), fromfile=f"{name} v{a.version}",
            tofile=f"{name} v{b.version}", lineterm=""))

    def export(self, path: str | os.PathLike, *, names: Iterable[str] | None = None,
               all_versions: bool = False, format: str | None = None) -> builtins.list[str]:
        """Write templates to ``path``; returns the files written.

        A path ending in .yaml, .yml or .json gets all the templates (or ``names``) in that one
        file, in that format; any other path is a folder that gets one file per template
        (``<name>.yaml``, or .json with ``format="json"``). Only the latest version is written
        unless ``all_versions=True``.
        """
        path = Path(path)
        suffix = path.suffix.lower()
        if format is not None and format not in ("yaml", "json"):
            raise TemplateError(f"format must be 'yaml' or 'json', not {format!r}")
        if suffix in files.SUFFIXES:
            if format is not None and suffix.lstrip(".").replace("yml", "yaml") != format:
                raise TemplateError(f"{path.name} ends in {suffix} but format={format!r}; "
                                    "the extension chooses the format of a single file")
        elif path.exists() and not path.is_dir():
            raise TemplateError(f"{path} is a file that is not .yaml, .yml or .json: export "
                                "writes such a file, or a folder of them")
        chosen = self._select(names)
        groups = {n: (self.versions(n)[::-1] if all_versions else [self.get(n)]) for n in chosen}
        if suffix in files.SUFFIXES:
            files.write(path, [t for group in groups.values() for t in group])
            return [str(path)]
        written = []
        for n, group in groups.items():
            target = path / f"{n}.{format or 'yaml'}"
            files.write(target, group)
            written.append(str(target))
        if not written:
            path.mkdir(parents=True, exist_ok=True)
        return written

    # -- helpers ----------------------------------------------------------------------------

    def _select(self, names: Iterable[str] | None) -> builtins.list[str]:
        if names is None:
            return self.names()
        if isinstance(names, str):
            names = [names]
        return [self._known(n) for n in dict.fromkeys(names)]

    def _known(self, name: str) -> str:
        check_name(name)
        if not store.version_numbers(self.log, name):
            raise TemplateNotFound(self._not_found_message(name))
        return name

    def _not_found_message(self, name: str) -> str:
        saved = self.names()
        if not saved:
            return (f"no template named '{name}': no templates are saved yet; save one with "
                    f"session.templates.save('{name}', 'Summarize {{text}}')")
        message = f"no template named '{name}'"
        close = difflib.get_close_matches(name, saved, n=3, cutoff=0.6)
        close += [s for s in saved if s.lower() == name.lower() and s not in close]
        if close:
            message += f" (did you mean {', '.join(repr(c) for c in close)}?)"
        shown = ", ".join(saved[:20]) + (f", … ({len(saved) - 20} more)" if len(saved) > 20 else "")
        return f"{message}; saved templates: {shown}"

    def _check_case(self, name: str) -> None:
        # Names that differ only by case would overwrite each other in a folder export on
        # case-insensitive file systems (macOS, Windows), so they are refused.
        for existing in self.names():
            if existing != name and existing.lower() == name.lower():
                raise TemplateError(f"a template named '{existing}' exists; names may not differ "
                                    f"only by case — save as '{existing}' or choose another name")

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(store.version_numbers(self.log, name))

    def __len__(self) -> int:
        return len(self.names())

    def __repr__(self) -> str:
        return f"<TemplateLibrary: {len(self)} templates in {self.log.path}>"

    def _repr_html_(self) -> str:
        return self.list().to_html(index=False)  # to_html escapes the text


def _split_ref(name: Any, version: Any) -> tuple[str, int | None]:
    """Accept "name", "name@3" or ("name", 3); check both parts."""
    if isinstance(name, Template):
        name, version = name.name, name.version if version is None else version
    if not isinstance(name, str):
        raise TemplateError(f"a template name is text, like 'summarize'; got {type(name).__name__}")
    if "@" in name:
        name, _, ref = name.partition("@")
        if version is not None:
            raise TemplateError("give the version either as 'name@N' or as version=N, not both")
        version = ref
    check_name(name)
    if version is not None:
        if isinstance(version, str) and version.isdigit():
            version = int(version)
        if not isinstance(version, numbers.Integral) or isinstance(version, bool) or version < 1:
            raise TemplateError(f"a template version is a whole number ≥ 1 (as in "
                                f"'{name}@2'); got {version!r}")
        version = int(version)
    return name, version


def _spans(numbers: builtins.list[int]) -> str:
    """[1, 2, 3, 5] -> "1–3, 5"."""
    spans, start, prev = [], numbers[0], numbers[0]
    for n in numbers[1:] + [None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        spans.append(str(start) if start == prev else f"{start}–{prev}")
        if n is not None:
            start = prev = n
    return ", ".join(spans)


def _diff_text(t: Template) -> builtins.list[str]:
    """A canonical text of a version's content, one section per field, for line diffs."""
    def block(value: Any) -> builtins.list[str]:
        if value is None:
            return ["  (none)"]
        if isinstance(value, str):
            return ["  " + line for line in value.split("\n")]
        return ["  " + line for line in json.dumps(value, indent=2, sort_keys=True,
                                                    ensure_ascii=False).split("\n")]

    lines = ["prompt:", *block(t.prompt), "system:", *block(t.system),
             f"model: {t.model or '(none)'}", "options:", *block(t.options or None),
             "defaults:", *block(t.defaults or None),
             f"tags: {', '.join(t.tags) if t.tags else '(none)'}"]
    return lines
