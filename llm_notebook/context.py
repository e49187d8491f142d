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
