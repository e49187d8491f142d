"""Where a call comes from: the notebook path and cell id, when running in a Jupyter kernel."""

from __future__ import annotations

import os


def notebook_path() -> str | None:
    # jupyter_server sets JPY_SESSION_NAME to the notebook's path for the kernels it starts.
    return os.environ.get("JPY_SESSION_NAME") or None


def cell_id() -> str | None:
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    kernel = getattr(shell, "kernel", None)
    if kernel is None:
        return None
    try:
        parent = kernel.get_parent() if hasattr(kernel, "get_parent") else kernel._parent_header
    except Exception:
        return None
    metadata = (parent or {}).get("metadata") or {}
    return metadata.get("cellId")


def cell_label() -> str | None:
    """How a user finds the running cell in an error message: `cell In [5]` (its execution count)
    while a cell runs; None for a call a widget made, or outside IPython."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    if shell is None:
        return None
    kernel = getattr(shell, "kernel", None)
    if kernel is not None:
        try:
            parent = kernel.get_parent() if hasattr(kernel, "get_parent") else kernel._parent_header
        except Exception:
            parent = None
        header = (parent or {}).get("header") or {}
        if header.get("msg_type") not in (None, "execute_request"):
            return None        # a widget's message, not a cell
    # IPython numbers a cell, then counts on before running it: the next cell's number is set.
    count = getattr(shell, "execution_count", None)
    return f"cell In [{count - 1}]" if isinstance(count, int) and count > 1 else None
