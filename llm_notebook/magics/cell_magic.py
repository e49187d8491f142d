"""`%%llm [MODEL] [options]`: send the cell as a prompt and stream the reply into the output.

Consecutive cells continue the Session's current conversation (`--new` starts another one;
`--chat NAME` uses a named, persistent one). `_llm` always holds the last Response.
"""

from __future__ import annotations

import keyword

from IPython.core.error import UsageError
from IPython.core.magic_arguments import argument, magic_arguments

from ..errors import ResponseFormatError
from . import parsing
from .errors import ReplyInterrupted, user_errors
from .output import FORMATS, call_metadata, extract_code, open_display
from .template_cell import from_template, interpolate_cell

# Options that have their own flag, or must not be typed into a notebook cell.
_RESERVED_OPTIONS = {
    "model": "use -m/--model or the MODEL argument",
    "system": "use -s/--system",
    "stream": "use --no-stream",
    "cache": "use --cache or --no-cache",
    "messages": "the cell is the message",
    "prompt": "the cell is the prompt",
}

_INSTRUCTIONS = {
    "code": "Reply with only Python code in a single fenced code block, with no explanation.",
    "json": "Reply with only valid JSON: no prose and no code fences.",
}


@magic_arguments(name="%llm")
@argument("model", nargs="?", metavar="MODEL",
          help="Model id, alias or endpoint model (e.g. openai/gpt-4o-mini, local/smollm2). "
               "Default: the session's default model (%%llm use MODEL).")
@argument("-m", "--model", dest="model_option", metavar="MODEL", help="Same as MODEL.")
@argument("-s", "--system", metavar="TEXT", help="System prompt for this call.")
@argument("-t", "--template", metavar="NAME", help="Use a saved template; the cell (if any) "
          "becomes its {input}.")
@argument("--var", action="append", metavar="KEY=VALUE",
          help="A template variable (repeatable).")
@argument("-f", "--format", choices=FORMATS, metavar="FORMAT",
          help="markdown (default), text, code (the code goes into a new cell below), json "
               "(parsed; -o gets the object) or html (sanitized).")
@argument("-o", "--out", metavar="VAR",
          help="Also store the result in this variable (the Response; for -f json the object).")
@argument("--new", action="store_true", help="Start a new conversation.")
@argument("--chat", metavar="NAME", help="Continue the named conversation (kept in the log).")
@argument("--no-stream", action="store_true", help="Show the reply only when it is complete.")
@argument("--cache", dest="cache", action="store_const", const=True, default=None,
          help="Answer from the response cache when the same request was made before.")
@argument("--no-cache", dest="cache", action="store_const", const=False,
          help="Always call the model (default: LLMNotebook.cache).")
@argument("-T", "--temperature", type=float, metavar="T", help="Sampling temperature.")
@argument("--max-tokens", type=int, metavar="N", help="Most tokens in the reply.")
@argument("--option", action="append", metavar="KEY=VALUE",
          help="Any other provider option, e.g. --option top_p=0.9 (repeatable; JSON values).")
@argument("--raw", action="store_true",
          help="Send the cell exactly as written: no {name} interpolation.")
@argument("--attach", action="append", metavar="PATH",
          help="An image (PNG, JPEG, GIF, WebP) or PDF of the notebook's folder to send with the "
               "prompt (repeatable).")
def cell_spec(line, cell):
    """Send the cell to an LLM and stream the reply into the output.

    {name} in the cell is replaced by the variable `name` (a DataFrame becomes its schema and
    a sample; {In[3]} and {Out[3]} work); write {{ and }} for literal braces. Consecutive cells
    continue one conversation until --new. `_llm` holds the last Response. A template that
    needs no cell text runs as a line: %llm -t NAME --var key=value.
    """


def help_text() -> str:
    return parsing.help_text(cell_spec)


def run_cell(magics, line: str, body: str):
    args = parsing.parse(cell_spec, line)
    if args is None:
        return
    import llm_notebook

    body = body.rstrip()  # IPython keeps the cell's trailing newline; it is not part of the prompt
    shell = magics.shell
    session = llm_notebook.session()
    fmt = args.format or magics.default_format
    _check_out_name(args.out)
    model = _model_argument(args)
    options = _call_options(args)

    filled: list[str] = []
    if args.template:
        prompt, system, model, options, filled = from_template(session, magics, args, body, model,
                                                               options)
    else:
        if args.var:
            raise UsageError("--var sets template variables; use it with -t NAME")
        if not body.strip():
            raise UsageError("the cell is empty: write the prompt on the lines below %%llm "
                             "(or run a template with %llm -t NAME)")
        prompt = body if args.raw else interpolate_cell(magics, body)
        system = args.system
    if not prompt.strip():
        raise UsageError("the prompt is empty once its {placeholders} are filled in")

    with user_errors():
        attached = _attachments(session, args.attach)
        if model:
            session.resolve(model, options)  # a typo fails before any conversation changes
        conversation = _conversation(session, args, model, system)
        system = _with_instructions(system or conversation.system, fmt, magics.format_instructions)
        model = model or conversation.model
        route = session.resolve(model, options)

    stream = magics.stream and not args.no_stream
    display = open_display(shell, route.model, fmt, magics.max_updates_per_second)
    # Which of the template's placeholders came from notebook variables: shown, never silent.
    note = f"from the notebook: {', '.join(filled)}" if filled else ""
    if attached:
        note = "; ".join(filter(None, [note, "attached: " + ", ".join(a.describe() for a in attached)]))
    response = _call(shell, display, conversation, fmt, prompt,
                     dict(model=model, system=system, cache=args.cache, attachments=attached,
                          **options), stream, note)
    _deliver(shell, display, response, fmt, args.out, note)
    return


def _attachments(session, paths: list[str] | None) -> list:
    """`--attach` files, from the notebook's folder only: a cell may come from someone else, and
    must not send files from elsewhere on this machine (Python code may: ask(attachments=...))."""
    from ..attachments import load_all

    return load_all(paths, within=session._notebook_folder) if paths else []


def _check_out_name(name: str | None) -> None:
    if name is not None and (not name.isidentifier() or keyword.iskeyword(name)):
        raise UsageError(f"-o needs a Python variable name, got {name!r}")


def _model_argument(args) -> str | None:
    if args.model and args.model_option and args.model != args.model_option:
        raise UsageError(f"two models given ({args.model!r} and -m {args.model_option!r}); give one")
    return args.model or args.model_option


def _call_options(args) -> dict:
    from .. import options as call_options

    options = parsing.key_values(args.option, "--option")
    for key, value in options.items():
        if key in _RESERVED_OPTIONS:
            raise UsageError(f"--option {key}=...: {_RESERVED_OPTIONS[key]}")
        if call_options.is_credential(key):
            raise UsageError(
                f"--option {key}=... would save a secret in the notebook and the log; set the "
                "provider's environment variable or run llm_notebook.session().set_key(...)")
        # A notebook can come from someone else: its cells shape answers, never route them.
        problem = call_options.untrusted_problem(key, value)
        if problem:
            raise UsageError(f"--option {key}=...: {problem}")
    if args.temperature is not None:
        options["temperature"] = args.temperature
    if args.max_tokens is not None:
        if args.max_tokens < 1:
            raise UsageError("--max-tokens must be 1 or more")
        options["max_tokens"] = args.max_tokens
    return options


def _conversation(session, args, model, system):
    if args.chat:
        if args.new:
            raise UsageError("--new starts an unnamed conversation; --chat NAME continues a named "
                             "one: use one of them")
        return session.chat(args.chat, model=model, system=system)
    if args.new:
        # The new conversation keeps -m and -s for the cells that continue it.
        return session.new_conversation(model=model, system=system)
    return session.current()


def _with_instructions(system: str | None, fmt: str, enabled: bool) -> str | None:
    instruction = _INSTRUCTIONS.get(fmt) if enabled else None
    if not instruction:
        return system
    return f"{system}\n\n{instruction}" if system else instruction


def _footer(response, note: str) -> str:
    footer = response.footer()
    return f"{footer} · {note}" if note else footer


def _call(shell, display, conversation, fmt, prompt, kwargs, stream, note=""):
    """Run the call, keeping the display current; returns the Response."""
    call = None
    try:
        with user_errors():
            if not stream:
                return conversation.ask(prompt, **kwargs)
            call = conversation.stream(prompt, **kwargs)
            chunks = iter(call)
            try:
                for delta in chunks:
                    display.add(delta)
            finally:
                chunks.close()  # an interrupt between chunks must still cancel the request
            return call.response
    except KeyboardInterrupt:
        response = call.response if call is not None else None
        _show_unfinished(shell, display, response, fmt, "interrupted", note)
        if response is not None and response.text:
            raise ReplyInterrupted(
                f"the partial reply is kept above and in the log (call {response.id})") from None
        raise ReplyInterrupted("the request was cancelled before any text arrived") from None
    except UsageError:
        _show_unfinished(shell, display, call.response if call is not None else None, fmt, "failed",
                         note)
        raise


def _show_unfinished(shell, display, response, fmt, status, note="") -> None:
    """An interrupted or failed call: keep whatever text arrived, with its status in the footer."""
    if response is not None:
        shell.user_ns["_llm"] = response  # the interrupted/incomplete row, partial text included
    text = response.text if response is not None and response.text else display.text
    footer = _footer(response, note) if response is not None else status
    if not text:
        display.fail(footer)
        return
    metadata = call_metadata(response, fmt) if response is not None else None
    # An unfinished reply is not valid code, JSON or HTML; markdown still renders fine.
    display.finish(text, footer, metadata=metadata, fmt="markdown" if fmt == "markdown" else "text")


def _deliver(shell, display, response, fmt, out, note="") -> None:
    """Final rendering, `_llm`, `-o`, and the new cell for `-f code`."""
    shell.user_ns["_llm"] = response
    value = response
    parsed = None
    footer = _footer(response, note)
    if fmt == "json":
        try:
            parsed = response.json()
        except ResponseFormatError as exc:
            display.finish(response.text, footer, metadata=call_metadata(response, fmt), fmt="text")
            raise UsageError(str(exc)) from None
        value = parsed
    display.finish(response.text, footer, metadata=call_metadata(response, fmt), value=parsed)
    if out:
        shell.user_ns[out] = value
    if fmt == "code":
        code = extract_code(response.text)
        if code.strip():
            shell.set_next_input(code, replace=False)
