"""The Jupyter server extension: REST handlers the JupyterLab sidebar reads the log through.

Enabled by `jupyter-config/jupyter_server_config.d/llm_notebook.json` (installed with the
wheel); `llm_notebook._jupyter_server_extension_points` names this module. The log path comes
from the same setting the kernels use: `c.LLMNotebook.log_path` in the server's config, else
$LLM_NOTEBOOK_LOG, else the user data directory.
"""

from __future__ import annotations

from .handlers import API_PREFIX, ROUTES, LogAccess, handlers

__all__ = ["API_PREFIX", "ROUTES", "LogAccess", "handlers", "log_path_for"]


def log_path_for(serverapp) -> str:
    from ..config import LLMNotebook

    return LLMNotebook(config=serverapp.config).resolved_log_path()


def _load_jupyter_server_extension(serverapp) -> None:
    web_app = serverapp.web_app
    access = LogAccess(log_path_for(serverapp), serverapp.root_dir)
    web_app.settings["llm_notebook_log"] = access
    web_app.add_handlers(".*$", handlers(web_app.settings["base_url"]))
    serverapp.log.info("llm_notebook | REST API at %s%s/, log %s",
                       web_app.settings["base_url"], API_PREFIX, access.path)

