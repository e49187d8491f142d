"""`%llm <command>`: models, use, alias, new, history, usage, keys, check, replay, chat, templates,
help.

Tables come back as DataFrames (shown as the cell's result, escaped by pandas' HTML repr);
one-line confirmations are printed. Every command has `--help`.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass

from IPython.core.error import UsageError
from IPython.core.magic_arguments import argument, magic_arguments

from . import parsing
from .errors import user_errors

_TABLE_TEXT_CHARS = 80  # prompt/response previews in %llm history


@dataclass(frozen=True)
class Command:
    spec: Callable          # a @magic_arguments function: its parser and help
    run: Callable           # run(magics, session, args) -> value shown as the cell result
    summary: str


COMMANDS: dict[str, Command] = {}


def _register(name: str, spec: Callable, run: Callable, summary: str) -> None:
    COMMANDS[name] = Command(spec, run, summary)  # the order of registration is the help's order


def run_line(magics, line: str):
    tokens = parsing.split(line)
    if not tokens or tokens[0] in ("-h", "--help"):
        print(overview())
        return None
    if tokens[0].startswith("-"):
        # `%llm -t NAME --var k=v`: a call with no cell text (IPython refuses an empty %%llm
        # cell), which is how a template that needs no {input} is run.
        from .cell_magic import run_cell

        return run_cell(magics, line, "")
    name, rest = tokens[0], line.strip()[len(tokens[0]):]
    found = COMMANDS.get(name)
    if found is None:
        close = difflib.get_close_matches(name, list(COMMANDS), n=1)
        hint = f" Did you mean '%llm {close[0]}'?" if close else ""
        raise UsageError(f"unknown command {name!r}.{hint} Commands: {', '.join(COMMANDS)}; "
                         "to send a prompt, use the %%llm cell magic")
    args = parsing.parse(found.spec, rest)
    if args is None:
        return None
    import llm_notebook

    with user_errors():
        return found.run(magics, llm_notebook.session(), args)


def overview() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["%llm COMMAND [options]   (add --help to any command for its options)", ""]
    lines += [f"  %llm {name:<{width}}  {cmd.summary}" for name, cmd in COMMANDS.items()]
    lines += ["", "%%llm [MODEL] [options] sends the cell as a prompt: %llm help shows its options."]
    return "\n".join(lines)


def _optional_widget(attribute: str, what: str):
    """A widget class from the package, or a clear error if that part is not installed yet."""
    import importlib

    import llm_notebook

    module_name = llm_notebook._LAZY[attribute][0]
    try:
        importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise UsageError(f"{what} is not available in this version of llm-notebook") from None
        raise
    return getattr(llm_notebook, attribute)


def _clip(text) -> str:
    if not isinstance(text, str):
        return "" if text is None else str(text)
    text = " ".join(text.split())
    return text if len(text) <= _TABLE_TEXT_CHARS else text[: _TABLE_TEXT_CHARS - 1] + "…"


# -- models ----------------------------------------------------------------------------------------

_USABLE_GROUPS = ("embedded", "endpoint", "alias", "provider (key present)")


@magic_arguments(name="llm models")
@argument("--all", action="store_true",
          help="Also list models of providers without a key (thousands of them).")
@argument("-q", "--query", metavar="TEXT", help="Only models whose id contains TEXT.")
def _models_spec(line):
    """List the models you can use: the embedded model, your endpoints and aliases, and the
    models of providers that have a key (key present: yes/no; keys are never shown)."""


def _models(magics, session, args):
    frame = session.models()
    if not args.all:
        frame = frame[frame["group"].isin(_USABLE_GROUPS)]
    if args.query:
        frame = frame[frame["model"].str.contains(args.query, case=False, regex=False)]
    key = frame["key_present"].map(lambda v: "" if v is None else ("yes" if v else "no"))
    frame = frame.assign(key=key)[["model", "group", "key", "available", "context_window",
                                   "input_per_1m", "output_per_1m"]]
    return frame.reset_index(drop=True)


_register("models", _models_spec, _models, "list usable models (--all: every known model)")


# -- use / alias -------------------------------------------------------------------------------------

@magic_arguments(name="llm use")
@argument("model", metavar="MODEL", help="Model id, alias or endpoint model.")
def _use_spec(line):
    """Make MODEL the session's default (same as %config LLMNotebook.default_model)."""


def _use(magics, session, args):
    with user_errors():
        session.use(args.model)
    print(f"Default model: {args.model}")


_register("use", _use_spec, _use, "set the session's default model")


@magic_arguments(name="llm alias")
@argument("name", metavar="NAME", help="A short name without '/'.")
@argument("model", metavar="MODEL", help="The model it stands for.")
def _alias_spec(line):
    """Make NAME stand for MODEL (e.g. %llm alias fast openai/gpt-4o-mini)."""


def _alias(magics, session, args):
    from ..errors import MissingKeyError

    with user_errors():
        try:
            session.resolve(args.model)
        except MissingKeyError:
            pass  # the alias is fine; the key can come later
    try:
        session.alias(args.name, args.model)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    print(f"{args.name} → {args.model}")


_register("alias", _alias_spec, _alias, "give a model a short name")


# -- new -------------------------------------------------------------------------------------------

@magic_arguments(name="llm new")
@argument("-s", "--system", metavar="TEXT", help="System prompt for the new conversation.")
@argument("-m", "--model", metavar="MODEL", help="Model for the new conversation.")
def _new_spec(line):
    """Start a new conversation: the next %%llm cells no longer see the earlier turns."""


def _new(magics, session, args):
    with user_errors():
        if args.model:
            session.resolve(args.model)
        session.new_conversation(model=args.model, system=args.system)
    print("New conversation started.")


_register("new", _new_spec, _new, "start a new conversation")


# -- history / usage ------------------------------------------------------------------------------

@magic_arguments(name="llm history")
@argument("-q", "--query", metavar="TEXT", help="Full-text search in prompts and replies.")
@argument("-n", type=int, default=20, metavar="N", help="How many calls (default 20).")
@argument("-m", "--model", metavar="MODEL", help="Only calls to this model.")
def _history_spec(line):
    """The latest calls in the log, newest first."""


def _history(magics, session, args):
    if args.n < 1:
        raise UsageError("-n must be 1 or more")
    frame = session.history(search=args.query, model=args.model, limit=args.n)
    if frame.empty:
        print("No matching calls in the log." if args.query or args.model else "No calls in the log yet.")
        return None
    frame = frame[["id", "ts", "model", "status", "prompt", "response", "input_tokens",
                   "output_tokens", "cost"]].copy()
    frame["prompt"] = frame["prompt"].map(_clip)
    frame["response"] = frame["response"].map(_clip)
    return frame.reset_index(drop=True)


_register("history", _history_spec, _history, "recent calls (-q TEXT to search, -n N)")


@magic_arguments(name="llm usage")
@argument("--by", choices=("model", "day", "hour", "notebook", "conversation", "job"),
          default="model",
          help="Group by model (default), day, hour, notebook, conversation or job (batch run).")
@argument("--panel", action="store_true", help="Show the interactive usage panel instead.")
def _usage_spec(line):
    """Calls, tokens, cost, errors and latency from the log."""


def _usage(magics, session, args):
    if args.panel:
        return _optional_widget("UsagePanel", "the usage panel")()
    frame = session.usage(by=args.by)
    if frame.empty:
        print("No calls in the log yet.")
        return None
    return frame


_register("usage", _usage_spec, _usage,
          "tokens and cost (--by model|day|hour|notebook|conversation|job, --panel)")


# -- keys / check ---------------------------------------------------------------------------------

@magic_arguments(name="llm keys")
def _keys_spec(line):
    """Which providers have an API key (from the environment, .env, the keyring or set_key).
    The keys themselves are never shown."""


def _keys(magics, session, args):
    from .. import keys

    present = session.keys()
    width = max(len(p) for p in present)
    lines = [f"{'provider':<{width}}  key  environment variable"]
    for provider, has in present.items():
        lines.append(f"{provider:<{width}}  {'yes' if has else 'no ':<3}  "
                     f"{' or '.join(keys.env_vars_for(provider))}")
    lines.append("Set a key: the environment variable, a .env file, or "
                 "llm_notebook.session().set_key('provider').")
    print("\n".join(lines))


_register("keys", _keys_spec, _keys, "which providers have a key")


@magic_arguments(name="llm check")
@argument("model", nargs="?", metavar="MODEL", help="Default: the session's default model.")
def _check_spec(line):
    """Send a tiny prompt to MODEL and report whether it answers, and how fast."""


def _check(magics, session, args):
    result = session.check(args.model)
    if not result["ok"]:
        raise UsageError(f"{result['model']} failed: {result['error']}")
    reply = _clip(result.get("reply"))
    print(f"{result['model']} answered in {result['latency_ms']:.0f} ms: {reply!r}")


_register("check", _check_spec, _check, "test that a model answers")


# -- replay ---------------------------------------------------------------------------------------

@magic_arguments(name="llm replay")
@argument("mode", nargs="?", metavar="MODE", help="off, record, replay or auto.")
def _replay_spec(line):
    """Record the answers of this notebook's calls beside it, or replay them (no network, no
    key): off | record | replay | auto (replay what is recorded, call and record the rest).
    Without MODE: the mode in force and where the recordings are."""


def _replay(magics, session, args):
    from ..config import REPLAY_MODES

    if args.mode is not None:
        mode = args.mode.strip().lower()
        if mode not in REPLAY_MODES:
            raise UsageError(f"unknown replay mode {args.mode!r}: use one of "
                             f"{', '.join(REPLAY_MODES)}")
        session.config.replay = mode
    with user_errors():
        mode = session.config.replay_mode()
        recordings = session.recordings
        count = len(recordings)
    print(f"Replay: {mode} · recordings: {recordings.path} ({count:,} answers)")


_register("replay", _replay_spec, _replay,
          "record or replay this notebook's answers (off | record | replay | auto)")


# -- widgets ----------------------------------------------------------------------------------------

@magic_arguments(name="llm chat")
@argument("name", nargs="?", metavar="NAME",
          help="A named conversation, kept in the log (the same as %%llm --chat NAME); "
               "default: a new unnamed one.")
@argument("-m", "--model", help="Default: the conversation's model, else the session's.")
@argument("-s", "--system", metavar="TEXT", help="System prompt for a new conversation.")
def _chat_spec(line):
    """Open the chat widget, on a new conversation or on the named one."""


def _chat(magics, session, args):
    chat = _optional_widget("Chat", "the chat widget")
    return chat(model=args.model, system=args.system, name=args.name)


_register("chat", _chat_spec, _chat, "open the chat widget")


@magic_arguments(name="llm templates")
def _templates_spec(line):
    """List the saved prompt templates (use one with %%llm -t NAME)."""


def _templates(magics, session, args):
    templates = getattr(session, "templates", None)
    if templates is None:
        raise UsageError("templates are not available yet")
    frame = templates.list()
    if len(frame) == 0:
        print("No templates saved yet: llm_notebook.session().templates.save(name, prompt) "
              "saves one.")
        return None
    return frame


_register("templates", _templates_spec, _templates, "list saved prompt templates")


@magic_arguments(name="llm help")
def _help_spec(line):
    """Show the commands of %llm and the options of %%llm."""


def _help(magics, session, args):
    from .cell_magic import help_text

    print(overview() + "\n\n" + help_text())


_register("help", _help_spec, _help, "this list, and the options of %%llm")
