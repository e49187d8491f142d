"""`llm_notebook.ModelPicker()`: choose a model from a searchable list, test it, make it the default.

The list is `Session.models()` (the embedded model, custom endpoints, aliases, then litellm's
price map: thousands of rows). It goes to the browser once, on request, as a compact table
grouped by provider (model ids lose their repeated `provider/` prefix), and the browser filters
it as the user types: a trait holding the table would be re-sent whole on every change.

The request handlers live in `PickerHandlers` so the chat widget, which embeds the same picker
(js/src/widgets/picker/view.ts), answers the same requests.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import traitlets

from ._base import LLMWidget, rpc
from .snapshot import Snapshot, picker_snapshot

__all__ = ["ModelPicker", "PickerHandlers", "models_table"]

_KIND_NAMES = {"embedded": "embedded", "endpoint": "endpoint", "alias": "alias",
               "provider (key present)": "keyed", "provider": "provider"}


def _session():
    import llm_notebook

    return llm_notebook.session()


def _number(value: Any) -> float | int | None:
    """A JSON number, or None for missing values (pandas gives NaN for them)."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if math.isnan(number) or math.isinf(number):
        return None
    return int(number) if number.is_integer() else round(number, 6)


def models_table(session=None) -> dict:
    """`Session.models()` as the picker's compact table.

        {"default": "local/smollm2",
         "groups": [{"label": "local", "kind": "embedded", "prefix": "local/", "key": true,
                     "rows": [["smollm2", 2048, 0, 0, 1]]}, ...]}

    A row is [id without the group's prefix, context window, $ per 1M input tokens, $ per 1M
    output tokens, available (1/0)]; unknown numbers are null. `key` is whether the provider's
    key is present (null when it does not apply, e.g. an alias).
    """
    session = session or _session()
    frame = session.models()
    groups: dict[tuple[str, str], dict] = {}
    for rec in frame.itertuples(index=False):
        kind = _KIND_NAMES.get(rec.group, "provider")
        label = str(rec.provider or "") if kind != "alias" else "aliases"
        group = groups.get((kind, label))
        if group is None:
            present = rec.key_present
            known = present is not None and not (isinstance(present, float) and math.isnan(present))
            group = {"label": label, "kind": kind, "prefix": "", "key": bool(present) if known else None,
                     "rows": [], "_order": _group_order(rec.group)}
            groups[(kind, label)] = group
        row = [str(rec.model), _number(rec.context_window), _number(rec.input_per_1m),
               _number(rec.output_per_1m), 1 if rec.available else 0]
        if kind == "alias":
            row.append(str(rec.provider))  # "alias of <target>"
        group["rows"].append(row)
    for group in groups.values():
        # Most ids repeat their group's "provider/": send it once (only if every id has it).
        prefix = f"{group['label']}/"
        if group["kind"] != "endpoint" and all(r[0].startswith(prefix) for r in group["rows"]):
            group["prefix"] = prefix
            for r in group["rows"]:
                r[0] = r[0][len(prefix):]
    # Models with no provider in the price map go last among the providers.
    ordered = sorted(groups.values(), key=lambda g: (g.pop("_order"), not g["label"], g["label"]))
    return {"default": session.default_model(), "groups": ordered}


def _group_order(group: str) -> int:
    from ..session import MODEL_GROUPS

    return MODEL_GROUPS.index(group) if group in MODEL_GROUPS else len(MODEL_GROUPS)


class PickerHandlers:
    """The requests a model picker front-end makes (a mixin for LLMWidget subclasses)."""

    @rpc("picker.models")
    def _picker_models(self) -> dict:
        return models_table()

    @rpc("picker.check")
    async def _picker_check(self, model: str) -> dict:
        model = _require_model(model)
        # Session.check is synchronous (it waits on the runner's loop), so it runs in a worker
        # thread: this handler already runs on that loop, and the kernel's thread stays free.
        return await asyncio.get_running_loop().run_in_executor(None, _session().check, model)

    @rpc("picker.use_default")
    def _picker_use_default(self, model: str) -> dict:
        session = _session()
        session.use(_require_model(model))
        return {"default": session.default_model()}


def _require_model(model: Any) -> str:
    if not isinstance(model, str) or not model.strip():
        raise ValueError("choose a model first (for example local/smollm2)")
    model = model.strip()
    if model.endswith("/*"):
        raise ValueError(f"{model} stands for every model of that endpoint: type its name, e.g. "
                         f"{model[:-1]}my-model")
    return model


class ModelPicker(PickerHandlers, LLMWidget):
    """A searchable list of models; `value` is the chosen model id.

        picker = llm_notebook.ModelPicker()
        picker                        # pick one; "Use as default" sets the session's default
        picker.value                  # 'local/smollm2'
        picker.observe(lambda change: print(change["new"]), "value")
    """

    _bundle = "picker"

    value = traitlets.Unicode("", help="The chosen model id.").tag(sync=True)
    default_model = traitlets.Unicode(
        "", help="The session's default model (updated by the 'Use as default' action).").tag(sync=True)

    def __init__(self, value: str | None = None, **kwargs: Any) -> None:
        session = _session()
        default = session.default_model()
        super().__init__(value=value or default, default_model=default, **kwargs)
        # Clicking through the list changes the value often: the saved output follows once the
        # choice has been still for a second.
        self.observe(lambda _change: self.refresh_snapshot(delay=1.0), names=["value", "default_model"])

    def _build_snapshot(self) -> Snapshot:
        return picker_snapshot(self.value, self.default_model)

    @rpc("picker.use_default")
    def _picker_use_default(self, model: str) -> dict:
        result = PickerHandlers._picker_use_default(self, model)
        self.default_model = result["default"]
        return result

    def use_as_default(self) -> None:
        """Makes the chosen model the session's default (like the button)."""
        self._picker_use_default(self.value)
