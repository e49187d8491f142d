"""`llm_notebook.TemplateEditor(name=None)`: write, try, version and diff a prompt template.

The front-end (js/src/widgets/template_editor.ts) edits the text in CodeMirror and parses it
live for highlighting and the variables form; everything that matters is decided here, by the
template library (`session.templates`) and `llm_notebook.placeholders`:

    load(name, version)        the template as saved in the log, its versions, model choices
    variables(prompt, system)  the variables, or the first syntax error with its line and column
    preview(prompt, ..., values, defaults)   the prompt as it would be sent (missing ones kept)
    run(prompt, ..., values, models, run_id) one streamed call per model, side by side
    save(name, prompt, ..., message, tags)   a new version; history(name); diff(name, v1, v2)

The draft lives in the browser; synced state is the template's name, version and the models to
run on, and the static snapshot (the saved version and the last run's answers, redacted), never
options or keys. Calls go through `Session.acall` (llm_notebook/call), so they are logged,
priced, budget-checked and cached like any other call.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
from collections.abc import Iterator, Mapping
from typing import Any

import traitlets

from ..errors import CONFIG, LLMError
from ._base import SETTLE_SECONDS, LLMWidget, rpc
from .snapshot import Snapshot, template_snapshot

__all__ = ["MAX_MODELS", "TemplateEditor", "TemplateEditorError"]

log = logging.getLogger(__name__)

MAX_MODELS = 6  # columns side by side; more would be unreadable and costly by accident
_LOCAL_MODEL = "local/smollm2"
_UNNAMED = "untitled"  # name used to validate a draft that has not been named yet


class TemplateEditorError(LLMError):
    """Something in the editor the user can fix: its one-line message says what and where."""

    def __init__(self, message: str):
        super().__init__(message, kind=CONFIG)


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    from ..placeholders import PlaceholderError
    from ..templates import TemplateError

    try:
        yield
    except (TemplateError, PlaceholderError, ValueError, TypeError) as exc:
        raise TemplateEditorError(str(exc)) from None


def _fixable(fn):
    """Template and input errors reach the widget as they are written: one line, no type name
    in front (the base class prefixes it to unexpected errors) and no warning in the log."""
    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def run_async(*args, **kwargs):
            with _translated():
                return await fn(*args, **kwargs)
        return run_async

    @functools.wraps(fn)
    def run(*args, **kwargs):
        with _translated():
            return fn(*args, **kwargs)
    return run


def _session():
    import llm_notebook

    return llm_notebook.session()


def _template_dict(t) -> dict:
    return {"name": t.name, "version": t.version, "prompt": t.prompt, "system": t.system,
            "model": t.model, "options": dict(t.options), "defaults": dict(t.defaults),
            "tags": list(t.tags), "message": t.message, "variables": t.variables,
            "created": t.created.isoformat() if t.created else None}


def _version_dict(t) -> dict:
    return {"version": t.version, "created": t.created.isoformat() if t.created else None,
            "message": t.message, "tags": list(t.tags), "model": t.model}


def _syntax_error(exc, field: str) -> dict:
    """A syntax error as the front-end marks it: where, and the one line to show."""
    return {"field": field, "line": exc.line, "column": exc.column, "kind": exc.kind,
            "message": exc.message,
            "text": f"{field} line {exc.line}, column {exc.column}: {exc.message}"}


def _text(value: Any, what: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{what} must be text, not {type(value).__name__}")
    return value


def _mapping(value: Any, what: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"{what} must be a mapping of name to value, not {type(value).__name__}")
    return {str(k): v for k, v in value.items()}


def _check_models(models: Any) -> list[str]:
    if isinstance(models, str):
        models = [models]
    if not isinstance(models, (list, tuple)) or not models:
        raise ValueError(f"choose at least one model to run on (for example {_LOCAL_MODEL})")
    chosen: list[str] = []
    for m in models:
        if not isinstance(m, str) or not m.strip():
            raise ValueError(f"model names are text like {_LOCAL_MODEL}; got {m!r}")
        if m.strip() not in chosen:
            chosen.append(m.strip())
    if len(chosen) > MAX_MODELS:
        raise ValueError(f"run on at most {MAX_MODELS} models at once; {len(chosen)} are selected")
    return chosen


def default_models(session, template=None) -> list[str]:
    """The template's model (or the session's default), then the embedded model."""
    first = (template.model if template is not None else None) or session.default_model()
    return list(dict.fromkeys([first, _LOCAL_MODEL]))


def model_suggestions(session, template=None) -> list[str]:
    """Models to offer in the picker: defaults, aliases, endpoints, then models used before."""
    names = default_models(session, template)
    names += sorted(session.aliases)
    names += [f"{name}/" for name in sorted(session.endpoints)]
    try:
        names += [str(r["grp"]) for r in session.log.usage_rows(by="model") if r.get("grp")]
    except Exception:  # an unreadable log must not stop the editor from opening
        log.debug("llm-notebook: no model suggestions from the log", exc_info=True)
    return list(dict.fromkeys(names))[:200]


class TemplateEditor(LLMWidget):
    """An editor for a prompt template: placeholders highlighted, variables as a form, a live
    preview, runs on several models side by side, and versions with diffs.

        editor = llm_notebook.TemplateEditor("summarize")    # or TemplateEditor() for a new one
        editor                                                # show it
        editor.template                                       # the version loaded or last saved

    Ctrl/Cmd+Enter runs, Ctrl/Cmd+S saves a new version (with the message typed beside Save).
    """

    _bundle = "template_editor"

    name = traitlets.Unicode(None, allow_none=True,
                             help="The template's name (None until a new one is saved).").tag(sync=True)
    version = traitlets.Int(None, allow_none=True,
                            help="The version loaded or last saved.").tag(sync=True)
    models = traitlets.List(traitlets.Unicode(),
                            help="The models 'run' calls, side by side.").tag(sync=True)

    def __init__(self, name: Any = None, *, version: int | None = None,
                 models: list[str] | None = None) -> None:
        from ..templates import Template

        session = _session()
        template = None
        if isinstance(name, Template):
            name, version = name.name, name.version if version is None else version
        if name is not None:
            template = session.templates.get(name, version)  # a typo fails here, clearly
        chosen = _check_models(models) if models is not None else default_models(session, template)
        super().__init__(name=template.name if template else None,
                         version=template.version if template else None, models=chosen)
        self._last_run: dict | None = None  # the answers of the last run, for the snapshot

    @traitlets.validate("models")
    def _valid_models(self, proposal) -> list[str]:
        # Empty is allowed here (the user removed every chip); run asks for one then.
        models = proposal["value"]
        return _check_models(models) if models else []

    def __repr__(self) -> str:
        label = f"{self.name}@{self.version}" if self.name else "new template"
        return f"<TemplateEditor {label} models={list(self.models)!r}>"

    @property
    def template(self):
        """The version this editor loaded or last saved (None for a template never saved)."""
        if not self.name:
            return None
        return _session().templates.get(self.name, self.version)

    # -- requests from the front-end -------------------------------------------------------------

    @rpc
    @_fixable
    def load(self, name: str | None = None, version: int | None = None) -> dict:
        session = _session()
        name = name or self.name
        template = session.templates.get(name, version) if name else None
        if template is not None:
            self.name, self.version = template.name, template.version
            self.refresh_snapshot(delay=SETTLE_SECONDS)
        return {"template": _template_dict(template) if template else None,
                "versions": self._versions(template.name) if template else [],
                "models": {"selected": list(self.models) or default_models(session, template),
                           "suggestions": model_suggestions(session, template),
                           "default": session.default_model(), "max": MAX_MODELS}}

    @rpc
    @_fixable
    def variables(self, prompt: str, system: str | None = None) -> dict:
        from ..placeholders import PlaceholderSyntaxError, parse

        names: list[str] = []
        found: list[dict] = []
        for field, text in (("prompt", _text(prompt, "prompt")),
                            ("system", _text(system, "system", optional=True))):
            if text is None:
                continue
            try:
                parsed = parse(text)
            except PlaceholderSyntaxError as exc:
                return {"variables": names, "placeholders": found, "error": _syntax_error(exc, field)}
            names += [v for v in parsed.variables if v not in names]
            found += [{"field": field, "name": p.name, "key": p.key, "source": p.source,
                       "line": p.line, "column": p.column} for p in parsed.placeholders]
        return {"variables": names, "placeholders": found, "error": None}

    @rpc
    @_fixable
    def preview(self, prompt: str, system: str | None = None, values: dict | None = None,
                defaults: dict | None = None) -> dict:
        """The prompt and system text as they would be sent; variables without a value stay as
        written and are listed in `missing`."""
        from ..placeholders import PlaceholderError, parse

        checked = self.variables(prompt, system)
        if checked["error"] is not None:
            return {**checked, "prompt": None, "system": None, "missing": []}
        given = {**_mapping(defaults, "defaults"), **_mapping(values, "values")}
        out: dict[str, Any] = {}
        for field, text in (("prompt", prompt), ("system", system)):
            try:
                out[field] = None if text is None else parse(text).render(given, missing="keep")
            except PlaceholderError as exc:  # e.g. {name['key']} on a text value
                return {**checked, "prompt": None, "system": None, "missing": [],
                        "error": {"field": field, "line": None, "column": None, "kind": "lookup",
                                  "message": str(exc), "text": f"{field}: {exc}"}}
        missing = [v for v in checked["variables"] if v not in given]
        return {**checked, **out, "missing": missing}

    @rpc("run")
    @_fixable
    async def _run(self, prompt: str, system: str | None = None, values: dict | None = None,
                   defaults: dict | None = None, models: list[str] | None = None,
                   options: dict | None = None, name: str | None = None,
                   run_id: str | None = None) -> dict:
        """Fills the template and calls every model at once, one stream per model."""
        chosen = _check_models(self.models if models is None else models)
        template = self._draft(name, prompt, system, None, options, defaults)
        filled = template.render(_mapping(values, "values"))
        filled_system = template.render_system(_mapping(values, "values"))
        from ..session import _check_prompt

        _check_prompt(filled)
        results = await asyncio.gather(*(
            self._call(template, filled, filled_system, model, index, run_id)
            for index, model in enumerate(chosen)))
        self._last_run = {"results": results}
        self.refresh_snapshot(delay=SETTLE_SECONDS)
        return {"run_id": run_id, "prompt": filled, "system": filled_system, "results": results}

    @rpc("save")
    @_fixable
    def _save(self, name: str, prompt: str, system: str | None = None, model: str | None = None,
              options: dict | None = None, defaults: dict | None = None,
              tags: list[str] | None = None, message: str | None = None) -> dict:
        draft = self._draft(name, prompt, system, model, options, defaults)
        saved = _session().templates.save(
            draft.name, draft.prompt, system=draft.system, model=draft.model,
            options=draft.options, defaults=draft.defaults,
            tags=tags, message=message)
        self.name, self.version = saved.name, saved.version
        self.refresh_snapshot(delay=SETTLE_SECONDS)
        return {"template": _template_dict(saved), "versions": self._versions(saved.name)}

    @rpc
    @_fixable
    def history(self, name: str | None = None) -> dict:
        name = name or self.name
        if not name:
            return {"name": None, "versions": []}
        return {"name": name, "versions": self._versions(name)}

    @rpc
    @_fixable
    def diff(self, name: str | None = None, v1: int | None = None, v2: int | None = None) -> dict:
        """A unified diff of two versions (default: the latest and the one before), as text."""
        name = name or self.name
        if not name:
            raise ValueError("save the template first: there are no versions to compare yet")
        library = _session().templates
        if v2 is None:
            v2 = library.get(name).version
        if v1 is None:
            earlier = [v["version"] for v in self._versions(name) if v["version"] < v2]
            v1 = earlier[0] if earlier else v2
        return {"name": name, "v1": v1, "v2": v2, "text": library.diff(name, v1, v2)}

    def _build_snapshot(self) -> Snapshot:
        template = self.template
        return template_snapshot(_template_dict(template) if template else None, list(self.models),
                                 getattr(self, "_last_run", None))

    # -- helpers ---------------------------------------------------------------------------------

    def _versions(self, name: str) -> list[dict]:
        return [_version_dict(t) for t in _session().templates.versions(name)]

    def _draft(self, name, prompt, system, model, options, defaults):
        """The edited text as a Template: every check of a saved one (syntax with line and
        column, names, options), so run and save refuse exactly what a save would refuse."""
        from ..placeholders import PlaceholderSyntaxError, parse
        from ..templates import Template

        prompt = _text(prompt, "prompt")
        system = _text(system, "system", optional=True)
        used: list[str] = []
        for text in (prompt, system):
            try:
                used += parse(text).variables if text else []
            except PlaceholderSyntaxError:
                pass  # Template() below reports it, naming the field
        # The form may still hold defaults of variables the text no longer uses: drop them.
        kept = {k: v for k, v in _mapping(defaults, "defaults").items() if k in used}
        return Template(name=(name or "").strip() or (self.name or _UNNAMED), prompt=prompt,
                        system=system, model=model, options=_mapping(options, "options"),
                        defaults=kept)

    async def _call(self, template, prompt: str, system: str | None, model: str, index: int,
                    run_id: str | None) -> dict:
        session = _session()
        stream_id = self.streams.start(meta={"run": run_id, "model": model, "index": index})
        try:
            session.resolve(model, dict(template.options))  # an unknown model fails its column only
            response = await session.acall(
                session._messages(prompt, system), model=model, options=dict(template.options),
                stream=True, on_text=lambda delta: self.streams.push(delta, stream_id))
        except asyncio.CancelledError:
            self.streams.fail("Stopped.", stream_id=stream_id)
            raise
        except Exception as exc:  # noqa: BLE001 - one model failing leaves the others running
            from .streaming import error_line

            self.streams.fail(exc, stream_id=stream_id)
            return {"model": model, "index": index, "stream_id": stream_id, "ok": False,
                    "error": error_line(exc)}
        summary = {"model": model, "index": index, "stream_id": stream_id, "ok": True,
                   "error": None, "id": response.id, "resolved_model": response.model, "status": response.status,
                   "input_tokens": response.input_tokens, "output_tokens": response.output_tokens,
                   "cost": response.cost, "unpriced": response.unpriced,
                   "duration_ms": response.duration_ms, "cached": response.cached}
        self.streams.finish(response.text, meta=summary, stream_id=stream_id)
        return {**summary, "text": response.text}
