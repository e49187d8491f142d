"""The `LLMMagics` class: `%%llm` and `%llm`, with its settings as traits.

Magics are Configurables and IPython appends them to `shell.configurables`, so
`%config LLMMagics` lists these settings and `%config LLMMagics.default_format = "text"` (or
`c.LLMMagics.default_format` in ipython_config.py) changes them. Session-wide settings (model,
cache, timeouts, budgets) live on `LLMNotebook`.
"""

from __future__ import annotations

from IPython.core.magic import Magics, line_cell_magic, magics_class
from traitlets import Bool, Enum, Float, Int, TraitError, validate

from . import cell_magic, line_magic
from .output import FORMATS


@magics_class
class LLMMagics(Magics):
    default_format = Enum(
        FORMATS, "markdown",
        help="How %%llm shows a reply when -f is not given: markdown (rendered, sanitized), text, "
        "code (also put into a new cell below), json (parsed) or html (sanitized).",
    ).tag(config=True)

    stream = Bool(
        True, help="Stream replies into the cell as they arrive (--no-stream turns it off per cell)."
    ).tag(config=True)

    max_updates_per_second = Float(
        20.0,
        help="Most times a second a streaming reply is redrawn (at most 20: each redraw resends "
        "the whole text, and Jupyter drops output messages that come too fast).",
    ).tag(config=True)

    format_instructions = Bool(
        True,
        help="With -f code or -f json, add a line to the system prompt asking for only code or "
        "only JSON.",
    ).tag(config=True)

    dataframe_rows = Int(
        20, help="Most rows of a DataFrame sent when a prompt says {df} (the schema is always sent)."
    ).tag(config=True)

    dataframe_chars = Int(
        4000, help="Most characters a DataFrame takes in a prompt (shape, schema and sample rows)."
    ).tag(config=True)

    @validate("max_updates_per_second")
    def _rate(self, proposal):
        value = proposal["value"]
        if not 0 < value <= 20:
            raise TraitError("max_updates_per_second must be more than 0 and at most 20")
        return value

    @validate("dataframe_rows")
    def _rows(self, proposal):
        if proposal["value"] < 1:
            raise TraitError("dataframe_rows must be 1 or more")
        return proposal["value"]

    @validate("dataframe_chars")
    def _chars(self, proposal):
        if proposal["value"] < 200:
            raise TraitError("dataframe_chars must be at least 200")
        return proposal["value"]

    @line_cell_magic
    def llm(self, line: str, cell: str | None = None):
        if cell is None:
            return line_magic.run_line(self, line)
        return cell_magic.run_cell(self, line, cell)


# `%llm?` and `%%llm?` show the help of the cell magic and the list of subcommands.
LLMMagics.llm.__doc__ = cell_magic.help_text() + "\n\n" + line_magic.overview()
