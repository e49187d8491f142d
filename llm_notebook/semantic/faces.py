"""The operators as `df.llm` shows them: `df.llm.filter(condition)` runs, and
`df.llm.filter.estimate(condition)` says what it would send (the same arguments)."""

from __future__ import annotations

from . import agg as agg_mod
from . import join as join_mod
from . import judgements, plan, search as search_mod, topk as topk_mod


class Operator:
    """One operator bound to a DataFrame: call it to run, `.estimate(...)` to count calls."""

    def __init__(self, frame, run, estimate, doc: str | None = None):
        self._frame = frame
        self._run = run
        self._estimate = estimate
        self.__doc__ = doc or run.__doc__

    def __call__(self, *args, session=None, **kwargs):
        return self._run(_session(session), self._frame, *args, **kwargs)

    def estimate(self, *args, session=None, **kwargs) -> "plan.OperatorEstimate":
        """Calls (at most), tokens and cost of the same call, without sending a request."""
        return self._estimate(_session(session), self._frame, *args, **kwargs)

    def __repr__(self) -> str:
        return f"<df.llm operator: {(self.__doc__ or '').strip().splitlines()[0]}>"


def _session(session):
    if session is not None:
        return session
    from ..session import session as default_session

    return default_session()


def filter_rows(session, frame, condition: str, *, columns=None, **settings):
    """The rows for which the model judges `condition` true (a yes/no per row, constrained to a
    boolean). Rows whose call failed are left out and counted in `.attrs["llm"]`; with
    background=True an OperatorJob whose result() is those rows."""
    mask = judgements.filter_mask(session, frame, condition, columns=columns, **settings)
    if isinstance(mask, plan.OperatorJob):
        return mask.then(lambda m: _kept(frame, m))
    return _kept(frame, mask)


def _kept(data, mask):
    out = data[mask.fillna(False).astype(bool)]
    out.attrs["llm"] = dict(mask.attrs.get("llm", {}), kept=len(out),
                            unjudged=int(mask.isna().sum()))
    return out


def filter_values(session, series, condition: str, **settings):
    """The values of a Series for which the model judges `condition` true."""
    mask = judgements.filter_mask(session, series.to_frame("value"), condition, **settings)
    if isinstance(mask, plan.OperatorJob):
        return mask.then(lambda m: _kept(series, m))
    return _kept(series, mask)


def estimate_filter_values(session, series, condition: str, **settings):
    return judgements.estimate_filter(session, series.to_frame("value"), condition, **settings)


def _extract_request(frame, schema, prompt, columns, settings: dict) -> tuple[str, dict]:
    """extract's map() prompt and settings: unless a prompt is given, one that shows the row's
    columns (but the attachment columns, which go as attachments), and the extraction
    instruction after the caller's own system prompt."""
    attached = settings.get("attachments")
    attached = [attached] if isinstance(attached, str) else list(attached or [])
    if prompt is None:
        names = frame.columns if columns is None else \
            ([columns] if isinstance(columns, str) else columns)
        prompt = judgements.extract_prompt(frame, [c for c in names if c not in attached])
    own = settings.get("system")
    system = f"{own}\n\n{judgements.EXTRACT_SYSTEM}" if own else judgements.EXTRACT_SYSTEM
    return prompt, {**settings, "schema": schema, "system": system}


def extract(session, frame, schema, *, prompt: str | None = None, columns=None, **settings):
    """Fields of `schema` (a JSON schema dict or pydantic model) into columns, one call per
    row: `df.llm.map(prompt, schema=schema)`, with a prompt that shows the row's columns
    (`columns=`) unless you give one; `attachments=` sends an image/PDF column along."""
    from ..batch.accessor import LLMAccessor

    prompt, settings = _extract_request(frame, schema, prompt, columns, settings)
    return LLMAccessor(frame).map(prompt, session=session, **settings)


def estimate_extract(session, frame, schema, *, prompt: str | None = None, columns=None,
                     **settings):
    from ..batch.accessor import LLMAccessor
    from .plan import OperatorEstimate

    prompt, settings = _extract_request(frame, schema, prompt, columns, settings)
    first = LLMAccessor(frame).estimate(prompt, session=session, **settings)
    return OperatorEstimate("extract", first.model, first.rows, "one per row", first)


def operators(frame) -> dict:
    return {
        "filter": Operator(frame, filter_rows, judgements.estimate_filter),
        "filter_values": Operator(frame, filter_values, estimate_filter_values),
        "classify": Operator(frame, judgements.classify, judgements.estimate_classify),
        "extract": Operator(frame, extract, estimate_extract),
        "topk": Operator(frame, topk_mod.topk, topk_mod.estimate),
        "join": Operator(frame, join_mod.join, join_mod.estimate),
        "agg": Operator(frame, agg_mod.agg, agg_mod.estimate),
        "embed": Operator(frame, search_mod.embed, search_mod.estimate_embed),
        "search": Operator(frame, search_mod.search, search_mod.estimate_search),
    }
