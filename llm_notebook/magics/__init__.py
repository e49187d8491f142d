"""The IPython face of llm-notebook: `%%llm` (prompt in the cell) and `%llm <command>`.

`%load_ext llm_notebook` calls `load_ipython_extension`. Loading must stay cheap (≤ 0.3 s): it
imports neither litellm nor pandas; those load on the first call that needs them.

Modules: `llm_magics` (the Magics class and its %config traits), `cell_magic`, `line_magic`,
`parsing` (arguments, --help, usage errors), `output` (streaming display and final rendering),
`safe_html` (`-f html` sanitizer), `errors` (UsageError / interrupt reporting).
"""

from __future__ import annotations

__all__ = ["LLMMagics", "load_ipython_extension", "unload_ipython_extension"]


def __getattr__(name: str):
    if name == "LLMMagics":
        from .llm_magics import LLMMagics

        return LLMMagics
    raise AttributeError(f"module 'llm_notebook.magics' has no attribute {name!r}")


def load_ipython_extension(ipython) -> None:
    from ..session import session
    from .llm_magics import LLMMagics

    if not any(isinstance(m, LLMMagics) for m in ipython.magics_manager.registry.values()):
        # Magics.__init__ appends the instance to ipython.configurables, so %config sees it.
        ipython.register_magics(LLMMagics(shell=ipython))
    # The Session's settings (LLMNotebook) must be reachable from %config as well.
    config = session().config
    if config not in ipython.configurables:
        ipython.configurables.append(config)
    from ..ipython_errors import install

    install(ipython)


def unload_ipython_extension(ipython) -> None:
    from .llm_magics import LLMMagics

    manager = ipython.magics_manager
    for kind in ("line", "cell"):
        found = manager.magics[kind].get("llm")
        if found is not None and isinstance(getattr(found, "__self__", None), LLMMagics):
            del manager.magics[kind]["llm"]
    for key, instance in list(manager.registry.items()):
        if isinstance(instance, LLMMagics):
            del manager.registry[key]
    ipython.configurables[:] = [c for c in ipython.configurables if not isinstance(c, LLMMagics)]
