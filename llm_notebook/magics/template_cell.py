"""`%%llm -t NAME` / `%llm -t NAME`: a saved template's prompt, system text, model and options.

A template may come from someone else. Its options were checked when it was built (generation
options only); here, its placeholders are never filled from a notebook variable that looks like
a credential, the ones filled from the notebook are reported (for the footer), and its own model
must be one this kernel can route before anything is sent.
"""

from __future__ import annotations

from IPython.core.error import UsageError

from . import parsing
from .errors import user_errors


def interpolate_cell(magics, text: str) -> str:
    """A cell's text with its `{name}`s filled from the notebook (the cell is the user's own
    text: any variable it names is used); for plain `%%llm` cells and a template's {input}."""
    from ..interpolate import interpolate

    shell = magics.shell
    with user_errors():
        return interpolate(text, shell.user_ns, hidden=shell.user_ns_hidden,
                           max_rows=magics.dataframe_rows, max_chars=magics.dataframe_chars)


def from_template(session, magics, args, body, model, options):
    """Prompt, system, model and options from a saved template (`-t NAME`).

    Variables come from --var, then the cell (as {input}), then same-named notebook variables
    (a DataFrame summarised as in the cell; never one that looks like a credential), then the
    template's saved defaults. Also returns the names filled from the notebook (for the footer).
    """
    templates = getattr(session, "templates", None)
    if templates is None:
        raise UsageError("templates are not available yet")
    try:
        template = templates.get(args.template)
    except (LookupError, ValueError) as exc:
        raise UsageError(f"{exc}; list templates with %llm templates") from None
    used = list(getattr(template, "variables", None) or [])
    explicit = parsing.key_values(args.var, "--var", json_values=False)
    if body.strip():
        if "input" not in used:
            raise UsageError(f"template {args.template!r} has no {{input}}, so the cell text would "
                             "be ignored: leave the cell empty, or add {input} to the template")
        explicit.setdefault("input", body if args.raw else interpolate_cell(magics, body))
    found, withheld = _from_notebook(magics, [n for n in used if n not in explicit])
    try:
        prompt = template.render(found, **explicit)
        system = template.render_system(found, **explicit)
    except ValueError as exc:  # a missing variable or a bad value: the message names it
        if withheld:
            looks = "looks like a credential" if len(withheld) == 1 else "look like credentials"
            raise UsageError(f"{exc} (the notebook's {', '.join(withheld)} {looks}, which a "
                             "template is never filled with; pass --var NAME=... if it really is "
                             "meant for the model)") from None
        raise UsageError(str(exc)) from None
    merged = dict(getattr(template, "options", None) or {})
    merged.update(options)
    model = model or template.model
    if model and not args.model and not args.model_option:
        _check_template_model(session, args.template, model)
    filled = sorted(found, key=used.index)
    return prompt, args.system or system, model, merged, filled


def _from_notebook(magics, names: list[str]) -> tuple[dict, list[str]]:
    """Values for a template's variables from same-named notebook variables, as prompt text.

    A template may come from someone else and name any variable: one whose name or text looks
    like a credential (llm_notebook.redact's patterns) is never filled in, so a shared template
    cannot send the notebook's keys to a model. Returns (filled, withheld names)."""
    from .. import redact
    from ..interpolate import describe_value

    namespace = magics.shell.user_ns
    found, withheld = {}, []
    for name in names:
        if name not in namespace or name.startswith("_"):
            continue
        text = describe_value(name, namespace[name], max_rows=magics.dataframe_rows,
                              max_chars=magics.dataframe_chars)
        if redact.looks_secret(name, text):
            withheld.append(name)
        else:
            found[name] = text
    return found, withheld


def _check_template_model(session, template: str, model: str) -> None:
    """A template's own model must be one this kernel can route (an alias, a configured
    endpoint, a provider, the embedded model) before anything is sent."""
    from ..errors import UnknownModelError

    try:
        session.resolve(model)
    except UnknownModelError as exc:
        raise UsageError(f"template {template!r} names the model {model!r}, which this kernel "
                         f"cannot use: {exc} Or run it with -m MODEL.") from None
