"""Template files: our YAML/JSON export format, and simonw/llm's template YAML.

Our format (YAML or JSON, chosen by the file's extension)::

    llm_notebook_templates: 1          # format version
    templates:
      - name: summarize
        prompt: |
          Summarize {text} in {n} words.
        system: null
        model: openai/gpt-4o-mini
        options: {temperature: 0.2}
        defaults: {n: 30}
        tags: [demo]
        message: first version
        version: 1                     # informational: importing numbers versions anew
        created: '2025-01-01T12:00:00+00:00'

A name may appear several times (an export with every version): the entries become successive
versions, in file order.

An llm template is a YAML mapping with ``prompt``, ``system``, ``model``, ``defaults`` and
``options`` (or just a string: the prompt), using ``$var``/``${var}`` placeholders and ``$input``
for the piped-in text; it is named after the file. Reading never executes anything: YAML is
read with ``safe_load`` (no Python tags), and every entry is validated as a Template before the
caller writes any of them.

A file may come from someone else, so reading it is bounded: at most ``MAX_FILE_BYTES``, and a
YAML document whose aliases would expand to more than ``MAX_YAML_NODES`` nodes (a 500-byte
"billion laughs" file expands to gigabytes) is refused before anything is built from it.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..placeholders import from_llm_style
from .template import Template, TemplateError, check_name

FORMAT_KEY = "llm_notebook_templates"
FORMAT_VERSION = 1
SUFFIXES = (".yaml", ".yml", ".json")
_ENTRY_KEYS = {"name", "prompt", "system", "model", "options", "defaults", "tags", "message",
               "version", "created"}
_LLM_KEYS = {"name", "prompt", "system", "model", "defaults", "options"}
# Keys of newer llm templates that have no equivalent here: imported without them, with a warning.
_LLM_UNSUPPORTED = {"type", "extract", "extract_last", "schema_object", "fragments",
                    "system_fragments", "tools", "functions"}
# A whole exported library with every version fits comfortably; a larger file is refused.
MAX_FILE_BYTES = 5 * 1024 * 1024
# Nodes a YAML document may hold once its aliases are expanded (each alias counts its target
# whole, as a later json.dumps or a walk over the values would).
MAX_YAML_NODES = 200_000


class TemplateFileError(TemplateError):
    """A template file that cannot be read; the message names the file and the problem."""

    def __init__(self, path: Path | str, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}; nothing was imported")


class TemplateImportWarning(UserWarning):
    """Part of an llm template has no equivalent here and was left out."""


# --- writing ------------------------------------------------------------------------------------


def document(templates: Iterable[Template]) -> dict:
    return {FORMAT_KEY: FORMAT_VERSION, "templates": [t.to_dict() for t in templates]}


def _yaml_dumper():
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper, value: str):
        # Multi-line prompts read best as literal blocks; PyYAML falls back to a quoted style
        # by itself when a block cannot represent the text exactly (e.g. trailing spaces).
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    return Dumper


def dumps(templates: Iterable[Template], suffix: str) -> str:
    doc = document(templates)
    if suffix == ".json":
        return json.dumps(doc, ensure_ascii=False, indent=2) + "\n"
    import yaml

    return yaml.dump(doc, Dumper=_yaml_dumper(), sort_keys=False, allow_unicode=True, width=100)


def write(path: Path, templates: Iterable[Template]) -> None:
    """Write templates to one file, atomically (a reader never sees half a file)."""
    write_text(path, dumps(templates, path.suffix.lower()))


def write_text(path: Path, text: str) -> None:
    """Write `text` to `path` atomically (template and workflow exports)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# --- reading ------------------------------------------------------------------------------------


def template_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in SUFFIXES and not p.name.startswith("."))


def read(path: Path, *, name: str | None = None) -> list[Template]:
    """Every template in a file or a folder's template files, validated, in order.

    Raises TemplateFileError (naming the file and the problem) for the first bad file.
    """
    if not path.exists():
        raise TemplateFileError(path, "no such file or folder")
    if path.is_dir():
        files = template_files(path)
        if not files:
            raise TemplateFileError(path, "the folder holds no .yaml, .yml or .json files")
        if name is not None:
            raise TemplateError("name= renames the template of a single file; "
                                "it cannot apply to a whole folder")
        return [t for f in files for t in read_file(f)]
    return read_file(path, name=name)


def read_file(path: Path, *, name: str | None = None) -> list[Template]:
    if path.suffix.lower() not in SUFFIXES:
        raise TemplateFileError(path, "template files end in .yaml, .yml or .json")
    text = _read_text(path)
    data = _load(path, text)
    try:
        if isinstance(data, dict) and FORMAT_KEY in data:
            templates = _from_ours(path, data)
            if name is not None:
                if len(templates) != 1 or len({t.name for t in templates}) != 1:
                    raise TemplateError("name= renames a file's only template, but this file "
                                        f"holds {len(templates)}")
                templates = [Template(**{**t.content(), "name": name}) for t in templates]
            return templates
        if isinstance(data, str) or (isinstance(data, dict) and ("prompt" in data or "system" in data)):
            return [_from_llm(path, data, name)]
    except TemplateFileError:
        raise
    except TemplateError as exc:
        raise TemplateFileError(path, str(exc)) from None
    raise TemplateFileError(
        path, f"not a template file: expected an llm-notebook export (with '{FORMAT_KEY}') or an "
              f"llm template (a mapping with 'prompt' or 'system'), found {_kind(data)}")


def load_bounded(path: Path, error: Callable[[Path, str], Exception], what: str = "template") -> Any:
    """The data of a YAML or JSON file someone else may have written, read within the limits
    above (workflow files use it too); a problem raises `error(path, problem)`."""
    return _load(path, _read_text(path, error, what), error, what)


def _read_text(path: Path, error: Callable[[Path, str], Exception] = TemplateFileError,
               what: str = "template") -> str:
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)  # never more, whatever the file claims to be
    except OSError as exc:
        raise error(path, f"cannot read it ({exc.strerror})") from None
    if len(raw) > MAX_FILE_BYTES:
        raise error(path, f"the file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB, "
                          f"the most a {what} file may be; split it into smaller files")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _load(path: Path, text: str, error: Callable[[Path, str], Exception] = TemplateFileError,
          what: str = "template") -> Any:
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise error(path, f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
        except RecursionError:
            raise error(path, f"the JSON is nested too deeply to be a {what} file") from None
    import yaml

    try:
        return _safe_yaml(text, what)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise error(path, f"invalid YAML{where}: {problem}") from None
    except RecursionError:
        raise error(path, f"the YAML is nested too deeply to be a {what} file") from None
    except _TooBig as exc:
        raise error(path, str(exc)) from None


class _TooBig(Exception):
    pass


def _safe_yaml(text: str, what: str = "template") -> Any:
    """`yaml.safe_load`, except that the document's size once aliases are expanded is checked
    on the composed node graph (cheap: aliases are shared nodes there) before any Python object
    is built from it."""
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, what)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _check_expansion(root, what: str = "template") -> None:
    import yaml

    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise _TooBig("an alias refers to a node that contains it (a recursive YAML "
                          f"alias), which no {what} can hold")
        open_nodes.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            children = ()
        for child in children:
            total += size(child)
            if total > MAX_YAML_NODES:
                raise _TooBig(f"its aliases expand to more than {MAX_YAML_NODES:,} values (an "
                              f"alias bomb?); a {what} file needs far fewer")
        open_nodes.discard(key)
        sizes[key] = total
        return total

    size(root)


def _kind(data: Any) -> str:
    if data is None:
        return "an empty file"
    if isinstance(data, dict):
        keys = ", ".join(repr(k) for k in list(data)[:8])
        return f"a mapping with keys {keys}" if keys else "an empty mapping"
    return f"a {type(data).__name__}"


def _from_ours(path: Path, data: dict) -> list[Template]:
    version = data.get(FORMAT_KEY)
    if version != FORMAT_VERSION:
        if isinstance(version, int) and version > FORMAT_VERSION:
            raise TemplateError(f"format version {version} was written by a newer llm-notebook; "
                                "upgrade llm-notebook to import it")
        raise TemplateError(f"'{FORMAT_KEY}' must be {FORMAT_VERSION}, found {version!r}")
    extra = set(data) - {FORMAT_KEY, "templates"}
    if extra:
        raise TemplateError(f"unknown top-level key(s) {', '.join(map(repr, sorted(extra, key=str)))}")
    entries = data.get("templates")
    if not isinstance(entries, list):
        raise TemplateError(f"'templates' must be a list of templates, found {_kind(entries)}")
    templates = []
    for number, entry in enumerate(entries, 1):
        where = f"entry {number} of 'templates'"
        if not isinstance(entry, dict):
            raise TemplateError(f"{where} must be a mapping, found {_kind(entry)}")
        unknown = set(entry) - _ENTRY_KEYS
        if unknown:
            raise TemplateError(f"{where}: unknown key(s) "
                                f"{', '.join(map(repr, sorted(unknown, key=str)))}; a template has "
                                f"{', '.join(sorted(_ENTRY_KEYS))}")
        if "name" not in entry or "prompt" not in entry:
            raise TemplateError(f"{where}: needs both 'name' and 'prompt'")
        try:
            templates.append(Template(
                name=entry["name"], prompt=entry["prompt"], system=entry.get("system"),
                model=entry.get("model"), options=entry.get("options"),
                defaults=entry.get("defaults"), tags=entry.get("tags") or (),
                message=entry.get("message") or f"imported from {path.name}"))
        except TemplateError as exc:
            raise TemplateError(f"{where}: {exc}") from None
    return templates


def _from_llm(path: Path, data: Any, name: str | None) -> Template:
    if name is None:
        name = path.stem
        try:
            check_name(name)
        except TemplateError:
            raise TemplateError(f"the file name {name!r} is not a valid template name ("
                                "letters, digits, '_', '-', '.'); rename the file or pass "
                                "name='...'") from None
    if isinstance(data, str):
        data = {"prompt": data}
    unknown = set(data) - _LLM_KEYS - _LLM_UNSUPPORTED
    if unknown:
        raise TemplateError(f"unknown key(s) {', '.join(map(repr, sorted(unknown, key=str)))} in "
                            f"an llm template; it has {', '.join(sorted(_LLM_KEYS - {'name'}))}")
    dropped = sorted(set(data) & _LLM_UNSUPPORTED)
    if dropped:
        warnings.warn(f"{path}: imported without {', '.join(dropped)}, which llm-notebook "
                      "templates do not support", TemplateImportWarning, stacklevel=4)
    prompt, system = data.get("prompt"), data.get("system")
    for key, value in (("prompt", prompt), ("system", system)):
        if value is not None and not isinstance(value, str):
            raise TemplateError(f"'{key}' must be text, found {_kind(value)}")
    # llm sends the piped-in input as the prompt of a template that has only a system prompt.
    prompt = from_llm_style(prompt) if prompt else "{input}"
    defaults = data.get("defaults")
    if isinstance(defaults, dict):
        defaults = {str(k): v for k, v in defaults.items()}
    return Template(name=name, prompt=prompt,
                    system=from_llm_style(system) if system else None,
                    model=data.get("model"), options=data.get("options"), defaults=defaults,
                    message=f"imported from {path.name} (llm template)")
