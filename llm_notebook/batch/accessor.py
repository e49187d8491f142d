"""`df.llm` and `s.llm`: run a prompt over every row of a DataFrame or every value of a Series
(importing this module registers both)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import pandas as pd

from .. import pricing
from .settings import HELP


@pd.api.extensions.register_dataframe_accessor("llm")
class LLMAccessor:
    """`df.llm.map(prompt, ...)` and `df.llm.estimate(prompt, ...)`."""

    def __init__(self, frame: pd.DataFrame):
        self._frame = frame

    def map(self, prompt, *, session=None, **settings):
        """Send `prompt` once per row, `{column}` placeholders filled from the row.

        Returns a Series of replies aligned to the DataFrame's index (<NA> where a row failed),
        or with `schema` (JSON schema dict or pydantic model) a DataFrame with one column per
        field. `.attrs["llm"]` holds the job id and counts; `session.job(id).errors()` the
        failed rows. Running the same map again sends only the rows without an answer.
        With `background=True` it returns a Job at once; `job.result()` is that Series.

        prompt: text with {column} placeholders, a saved template or a saved template's name.
        """
        from . import api

        s = _session(session)
        run, out_schema = api.prepare(s, frame=self._frame, prompt=prompt, keep_answers=False,
                                      **settings)
        if run.background:
            return api.submit_background(s, run, frame=self._frame, schema=out_schema)
        try:
            api.run_sync(run, run.progress)
        finally:
            if run.job_id:
                api.remember_index(run.job_id, self._frame.index)
        api.warn_outcome(run)
        return api.frame_result(run, self._frame.index, out_schema)

    map.__doc__ += "\n        " + HELP + "\n        "

    def estimate(self, prompt, *, session=None, **settings) -> "Estimate":
        """Expected tokens and cost of `map` with the same arguments, without sending anything."""
        from . import api

        s = _session(session)
        run, _ = api.prepare(s, frame=self._frame, prompt=prompt, check_budget=False, **settings)
        return estimate_run(s, run)

    # Semantic operators (llm_notebook/semantic/): each runs on the batch engine and has
    # `.estimate(...)`, e.g. df.llm.filter("mentions 'refund'") / df.llm.filter.estimate(...).
    @property
    def filter(self):
        """`df.llm.filter(condition)`: the rows for which the model judges the condition true."""
        return _operator(self._frame, "filter")

    @property
    def classify(self):
        """`df.llm.classify(labels)`: one of the labels per row ('other' when none fits)."""
        return _operator(self._frame, "classify")

    @property
    def extract(self):
        """`df.llm.extract(schema)`: the schema's fields into columns, one call per row."""
        return _operator(self._frame, "extract")

    @property
    def topk(self):
        """`df.llm.topk(criterion, k)`: the k best rows, by a tournament of bounded calls."""
        return _operator(self._frame, "topk")

    @property
    def join(self):
        """`df.llm.join(other, condition)`: pairs of rows that satisfy the condition."""
        return _operator(self._frame, "join")

    @property
    def agg(self):
        """`df.llm.agg(instruction)`: one answer over all rows, folded to fit the context."""
        return _operator(self._frame, "agg")

    @property
    def embed(self):
        """`df.llm.embed(columns, model=...)`: a Series of vectors (cached in the log)."""
        return _operator(self._frame, "embed")

    @property
    def search(self):
        """`df.llm.search(query, k)`: the k rows nearest the query (embeddings)."""
        return _operator(self._frame, "search")


@pd.api.extensions.register_series_accessor("llm")
class LLMSeriesAccessor:
    """`s.llm.map(prompt, ...)`: `{value}` (or `{<the Series' name>}`) is each value in turn.

    The Series runs as a one-column DataFrame, so it has every option of `df.llm.map`.
    """

    def __init__(self, series: pd.Series):
        self._series = series

    def _frame(self) -> pd.DataFrame:
        frame = pd.DataFrame({"value": self._series}, index=self._series.index)
        name = self._series.name
        if isinstance(name, str) and name.isidentifier() and name != "value":
            frame[name] = self._series
        return frame

    # The semantic operators, on the values as a one-column DataFrame (`value`); filter keeps
    # the Series' shape (the values for which the condition holds).
    filter = property(lambda self: _operator(self._series, "filter_values"))
    classify = property(lambda self: _operator(self._values(), "classify"))
    extract = property(lambda self: _operator(self._values(), "extract"))
    topk = property(lambda self: _operator(self._values(), "topk"))
    agg = property(lambda self: _operator(self._values(), "agg"))
    embed = property(lambda self: _operator(self._values(), "embed"))
    search = property(lambda self: _operator(self._values(), "search"))

    def _values(self) -> pd.DataFrame:
        return self._series.to_frame("value")

    def map(self, prompt, **kwargs):
        """Send `prompt` once per value; returns what `df.llm.map` returns, on this index."""
        with _series_placeholders():
            return LLMAccessor(self._frame()).map(prompt, **kwargs)

    def estimate(self, prompt, **kwargs) -> "Estimate":
        """Expected tokens and cost of `map` with the same arguments, without sending anything."""
        with _series_placeholders():
            return LLMAccessor(self._frame()).estimate(prompt, **kwargs)


@contextlib.contextmanager
def _series_placeholders():
    """A missing placeholder is explained in the Series' terms, not its one-column DataFrame's."""
    from .inputs import MissingColumnError

    try:
        yield
    except MissingColumnError as exc:
        raise MissingColumnError(exc.name, exc.columns, series=True) from None


def _operator(frame, name: str):
    from ..semantic.faces import operators

    return operators(frame)[name]


def _session(session):
    if session is not None:
        return session
    from ..session import session as default_session

    return default_session()


@dataclass
class Estimate:
    """What a batch would cost. Output tokens are `max_tokens` per row when set (an upper
    bound), else an assumed typical length (`output_per_row`)."""
    model: str
    rows: int
    to_send: int
    cached: int
    bad_rows: int
    input_tokens: int
    output_tokens: int
    output_per_row: int
    output_is_limit: bool
    cost: float | None
    cost_per_row: float | None
    via: str = "calls"               # "batch_api": priced at the provider's batch price
    replayed: int = 0                # rows the notebook's recordings answer (replay, auto)

    def __str__(self) -> str:
        out = "at most" if self.output_is_limit else "assumed"
        cost = "price unknown" if self.cost is None else f"≈ ${self.cost:,.4f}"
        if self.via == "batch_api" and self.cost is not None:
            cost += " at the Batch API price"
        replayed = f"{self.replayed:,} replayed, " if self.replayed else ""
        return (f"{self.model}: {self.rows:,} rows, {self.to_send:,} to send ({replayed}"
                f"{self.cached:,} cached, {self.bad_rows:,} bad) · ~{self.input_tokens:,} input + "
                f"{self.output_tokens:,} output tokens ({self.output_per_row} per row, {out}) · {cost}")

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(str(self))

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


def estimate_run(session, run) -> Estimate:
    """What `run` would send and cost, read a chunk of rows at a time (cache hits included)."""
    from ..tokens import estimate_prompt
    from .feed import chunks

    per_row = run.pace_out
    limit = run.options.get("max_tokens") or run.options.get("max_completion_tokens")
    to_send = cached = replayed = bad = tin = 0
    cost = 0.0
    replay = run.replay if run.replay is not None and run.replay.replays else None
    for chunk in chunks(run.rows, run.route, run.options, replay=replay):
        bad += len(chunk.errors)
        todo = [j for j, m in enumerate(chunk.messages) if m is not None]
        if replay is not None and todo:
            found = replay.find_many(chunk.replay_keys[j] for j in todo)
            replayed += sum(1 for j in todo if chunk.replay_keys[j] in found)
            # (in replay mode nothing is sent: a row that is not recorded fails)
            todo = [] if replay.strict else [j for j in todo if chunk.replay_keys[j] not in found]
        if run.cache and todo:
            hits = session.log.cache_get_many([chunk.keys[j] for j in todo])
            cached += sum(1 for j in todo if chunk.keys[j] in hits)
            todo = [j for j in todo if chunk.keys[j] not in hits]
        todo = [chunk.messages[j] for j in todo]
        to_send += len(todo)
        # Priced row by row, as the rows will be: a tiered price depends on each prompt's size.
        for messages in todo:
            row_in = estimate_prompt(messages)
            tin += row_in
            row_cost = run.price(row_in, per_row) if cost is not None else None
            cost = None if row_cost is None else cost + row_cost
    if not pricing.is_priced(run.route.model, session.config.prices):
        cost = None
    return Estimate(model=run.route.model, rows=run.n, to_send=to_send, cached=cached,
                    bad_rows=bad, input_tokens=tin, output_tokens=per_row * to_send,
                    output_per_row=per_row, output_is_limit=bool(limit), cost=cost,
                    cost_per_row=None if cost is None or not to_send else cost / to_send,
                    via=run.via, replayed=replayed)
