"""Versioned prompt templates stored in the log: ``session.templates``.

    t = session.templates.save("summarize", "Summarize {text} in {n} words.", defaults={"n": 30})
    t.render(text=article)                 # -> the prompt
    session.templates.get("summarize@1")   # an older version

One placeholder syntax everywhere (``llm_notebook.placeholders``): ``{name}``, ``{{``/``}}``.
"""

from .files import TemplateFileError, TemplateImportWarning
from .library import TemplateLibrary
from .template import (
    Template,
    TemplateError,
    TemplateNotFound,
    TemplateSyntaxError,
    TemplateVariableError,
)

__all__ = [
    "Template",
    "TemplateError",
    "TemplateFileError",
    "TemplateImportWarning",
    "TemplateLibrary",
    "TemplateNotFound",
    "TemplateSyntaxError",
    "TemplateVariableError",
]
