"""llm-notebook: work with any LLM from a Jupyter notebook.

Importing this package is cheap on purpose (≤ 0.3 s, no network, no threads) and changes
nothing outside it: litellm, pandas, widgets and the embedded model load only when first used
(litellm with its offline price map, see providers/litellm_route.py), and the `df.llm` accessor
is registered when pandas loads (see _pandas_hook.py for why, with numbers).
"""

from __future__ import annotations

from .errors import LLMError
from .session import Session, session
from .response import Response
from . import _pandas_hook  # noqa: F401

__version__ = "0.1.0"

__all__ = [
    "LLMError",
    "Response",
    "Session",
    "session",
    "load_ipython_extension",
    "unload_ipython_extension",
    "Batch",
    "Chat",
    "ModelPicker",
    "TemplateEditor",
    "UsagePanel",
    "compare",
    "ComparisonGrid",
    "checks",
    "Workflow",
    "WorkflowBuilder",
    "__version__",
]

# Heavy public names resolve on first use, keeping `import llm_notebook` fast.
_LAZY = {
    "Batch": ("llm_notebook.widgets.batch", "Batch"),
    "Chat": ("llm_notebook.widgets.chat", "Chat"),
    "ModelPicker": ("llm_notebook.widgets.picker", "ModelPicker"),
    "TemplateEditor": ("llm_notebook.widgets.template_editor", "TemplateEditor"),
    "UsagePanel": ("llm_notebook.widgets.usage_panel", "UsagePanel"),
    "ComparisonGrid": ("llm_notebook.comparison", "ComparisonGrid"),
    "compare": ("llm_notebook.comparison", "compare"),
    "checks": ("llm_notebook.comparison", "checks"),
    "Workflow": ("llm_notebook.workflows", "Workflow"),
    "WorkflowBuilder": ("llm_notebook.widgets.workflow_builder", "WorkflowBuilder"),
}


def __getattr__(name: str):
    if name == "workflows":  # `llm_notebook.workflows.register` without importing it first
        import importlib

        return importlib.import_module("llm_notebook.workflows")
    if name in _LAZY:
        import importlib

        module_name, attr = _LAZY[name]
        return getattr(importlib.import_module(module_name), attr)
    raise AttributeError(f"module 'llm_notebook' has no attribute {name!r}")


def load_ipython_extension(ipython):
    """`%load_ext llm_notebook`: register the magics (and the df.llm accessor via the hook)."""
    from .magics import load_ipython_extension as _load

    _load(ipython)


def unload_ipython_extension(ipython):
    from .magics import unload_ipython_extension as _unload

    _unload(ipython)


def _jupyter_labextension_paths():
    return [{"src": "labextension", "dest": "llm-notebook"}]


def _jupyter_server_extension_points():
    return [{"module": "llm_notebook.server"}]
