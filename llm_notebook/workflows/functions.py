"""The Python functions workflows may run: the ones the user registered in this process.

A saved or imported workflow names its Python steps and predicates (`function: clean_text`);
it never carries their code. Storing code in the log, or reading it from a workflow file, would
run whatever the file's author wrote as soon as the workflow runs. So the name is looked up
here, among the functions the user's own code registered:

    @llm_notebook.workflows.register
    def clean_text(df):
        return df.assign(text=df.text.str.strip())

`Workflow.python(fn)` and `Workflow.filter(fn)` register `fn` themselves. Registering a name
again replaces its function (a notebook cell run again after an edit). A name nobody
registered fails the run before anything is sent, saying how to register it; for the command
line, `--functions my_steps.py` imports the user's file of registered functions first.

`fingerprint(fn)` is part of a Python step's key (workflows/keys.py): it changes when the
function's code, defaults, or the simple global values it reads (numbers, text, tuples of
them) change, so editing a function re-runs its step. What it cannot see (a global list
mutated in place, a file the function reads) is the user's to signal, by registering the
function under a new name or passing `version=` to the step's function with `register`.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import WorkflowError
from .steps import FUNCTION_RE

_REGISTRY: dict[str, tuple[Callable, str | None]] = {}
_SIMPLE = (int, float, str, bool, bytes, type(None))


def register(fn: Callable | None = None, *, name: str | None = None, version: str | None = None):
    """Register `fn` as a workflow function under `name` (default: its own name); usable as
    `@register` or `@register(name="clean", version="2")`. Returns `fn`."""
    def add(function: Callable) -> Callable:
        if not callable(function):
            raise WorkflowError(f"register() takes a function, not {type(function).__name__}")
        chosen = name or getattr(function, "__name__", None)
        if not chosen or chosen == "<lambda>":
            raise WorkflowError("a lambda has no name to save in a workflow: give it one, "
                                "e.g. register(fn, name='is_urgent') or .filter(fn, name='urgent')")
        if not FUNCTION_RE.fullmatch(chosen):
            raise WorkflowError(f"a workflow function's name is letters, digits, '_' and '.', "
                                f"starting with a letter or '_'; got {chosen!r}")
        _REGISTRY[chosen] = (function, None if version is None else str(version))
        return function

    return add if fn is None else add(fn)


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def registered() -> list[str]:
    """The names of the registered functions, sorted."""
    return sorted(_REGISTRY)


def adopt(fn: Callable, fallback: str | None = None) -> str:
    """Register a function a workflow step was given (under its own name; a lambda under
    `fallback`, the step's name) and return that name. One registered already under that
    name keeps its version."""
    own = getattr(fn, "__name__", None)
    name = fallback if own in (None, "<lambda>") else own
    current = _REGISTRY.get(name) if name else None
    register(fn, name=name, version=current[1] if current and current[0] is fn else None)
    return name


def lookup(name: str, step: str) -> Callable:
    try:
        return _REGISTRY[name][0]
    except KeyError:
        known = ", ".join(registered()) or "none yet"
        raise WorkflowError(
            f"step '{step}' runs the Python function '{name}', which is not registered in this "
            f"process (registered: {known}); define it and register it with "
            f"llm_notebook.workflows.register({name}) (on the command line: --functions "
            "your_file.py). A saved or imported workflow names its functions, never their "
            "code") from None


def fingerprint(name: str) -> str:
    """A hash of what a registered function would do: its code, defaults and simple globals."""
    function, version = _REGISTRY[name]
    digest = hashlib.sha256()
    digest.update(f"{name}\0{version}\0".encode())
    _feed_function(digest, function, set())
    return digest.hexdigest()


def _feed_function(digest, function: Any, seen: set) -> None:
    target = getattr(function, "__func__", function)      # bound methods
    code = getattr(target, "__code__", None)
    if code is None:                                       # a callable object, a builtin
        call = getattr(type(target), "__call__", None)
        code = getattr(call, "__code__", None)
        digest.update(repr(type(target)).encode())
        if code is None:
            return
        target = call
    _feed_code(digest, code)
    for value in (getattr(target, "__defaults__", None), getattr(target, "__kwdefaults__", None)):
        digest.update(_simple_repr(value).encode())
    cells = getattr(target, "__closure__", None) or ()
    for cell in cells:
        try:
            digest.update(_simple_repr(cell.cell_contents).encode())
        except ValueError:      # an empty cell
            pass
    globals_ = getattr(target, "__globals__", {})
    for global_name in _names(code):
        value = globals_.get(global_name)
        if isinstance(value, _SIMPLE) or _is_simple_tuple(value):
            digest.update(f"{global_name}={value!r}".encode())
        elif isinstance(value, types.FunctionType) and id(value) not in seen:
            seen.add(id(value))                            # a helper it calls: its code counts
            _feed_function(digest, value, seen)


def _feed_code(digest, code: types.CodeType) -> None:
    digest.update(code.co_code)
    digest.update(repr(code.co_names).encode())
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _feed_code(digest, const)
        else:
            digest.update(_simple_repr(const).encode())


def _names(code: types.CodeType) -> list[str]:
    out = list(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            out += _names(const)
    return out


def _is_simple_tuple(value: Any) -> bool:
    return isinstance(value, (tuple, frozenset)) and all(isinstance(v, _SIMPLE) for v in value)


def _simple_repr(value: Any) -> str:
    if isinstance(value, _SIMPLE) or _is_simple_tuple(value):
        return repr(value)
    if isinstance(value, tuple):
        return "(" + ",".join(_simple_repr(v) for v in value) + ")"
    return f"<{type(value).__module__}.{type(value).__qualname__}>"


def load(source: str) -> None:
    """Import the user's functions: a Python file path, or an importable module's name (the
    command line's --functions). Running it is the user's own choice on their command line."""
    path = Path(source)
    if source.endswith(".py") or path.exists():
        if not path.is_file():
            raise WorkflowError(f"--functions {source}: no such Python file")
        module_name = f"llm_notebook_workflow_functions_{abs(hash(str(path.resolve())))}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
        return
    try:
        importlib.import_module(source)
    except ModuleNotFoundError as exc:
        raise WorkflowError(f"--functions {source}: no Python file or importable module of that "
                            f"name ({exc})") from None
