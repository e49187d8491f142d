"""`ddf.llm` and `dds.llm`: `df.llm.map` / `estimate` for dask DataFrames and Series, the rows
run on the workers of a `distributed.Client`.

Lazy or not: `map` runs now, like `persist()`. A run's every answer is logged by the kernel
that starts it (the log and cache are the kernel's, never the workers'), so the run cannot
hide inside a later `compute()` of someone else's graph: `map` reads the input (computing
it on the cluster), sends the rows without an answer, logs their outcomes as they come back,
and returns a dask collection holding the answers, partitioned like the input (same
divisions, same index), so `ddf.assign(answer=ddf.llm.map(...))` lines up. `estimate`
computes the input the same way and sends nothing to any model.
"""

from __future__ import annotations

from dask.dataframe.extensions import register_dataframe_accessor, register_series_accessor

from ..batch.settings import HELP
from ..errors import UserError


@register_dataframe_accessor("llm")
class DaskLLMAccessor:
    """`ddf.llm.map(prompt, ...)` and `ddf.llm.estimate(prompt, ...)` on a Dask cluster."""

    def __init__(self, frame):
        self._frame = frame

    def map(self, prompt, *, session=None, client=None, rows_per_task=None, **settings):
        """Send `prompt` once per row on the cluster's workers; `{column}` placeholders are
        filled from the row. Runs now (like `persist()`) and returns a dask Series of replies
        (or with `schema`, a dask DataFrame of fields) with the input's index and divisions;
        `.llm_info` holds the job id and counts, and the rows each worker answered.

        client: the distributed.Client to use (default: the current one).
        rows_per_task: rows per task (default: about four tasks per worker, at most 200).
        """
        _refuse_unsupported(settings)
        client = _client(client)
        pieces = _pieces(self._frame, client)
        return _run(pieces, self._frame, client, prompt, session=session,
                    rows_per_task=rows_per_task, series=False, settings=settings)

    map.__doc__ += "\n        " + HELP + "\n        "

    def estimate(self, prompt, *, session=None, client=None, **settings):
        """Expected tokens and cost of `map` with the same arguments; computes the input (on
        the cluster when there is a client), sends nothing to any model."""
        from ..batch.accessor import LLMAccessor

        frame = _concat(_pieces(self._frame, client))
        return LLMAccessor(frame).estimate(prompt, session=session, **settings)


@register_series_accessor("llm")
class DaskLLMSeriesAccessor:
    """`dds.llm.map(prompt, ...)`: `{value}` (or `{<the Series' name>}`) is each value."""

    def __init__(self, series):
        self._series = series

    def map(self, prompt, *, session=None, client=None, rows_per_task=None, **settings):
        """What `ddf.llm.map` does, over the Series' values."""
        _refuse_unsupported(settings)
        client = _client(client)
        pieces = [_series_frame(p) for p in _pieces(self._series, client)]
        return _run(pieces, self._series, client, prompt, session=session,
                    rows_per_task=rows_per_task, series=True, settings=settings)

    def estimate(self, prompt, *, session=None, client=None, **settings):
        """Expected tokens and cost of `map` with the same arguments; sends nothing."""
        from ..batch.accessor import LLMSeriesAccessor

        return LLMSeriesAccessor(_concat(_pieces(self._series, client))).estimate(
            prompt, session=session, **settings)


def _pieces(collection, client) -> list:
    """The input's partitions as pandas objects: computed on the cluster of `client`, or by
    dask's default scheduler (the current client, if any) without one."""
    import dask

    parts = collection.to_delayed()
    if client is None:
        return list(dask.compute(*parts))
    return list(client.gather(client.compute(parts)))


def _concat(pieces: list):
    import pandas as pd

    return pd.concat(pieces) if len(pieces) > 1 else pieces[0]


def _series_frame(piece):
    from ..batch.accessor import LLMSeriesAccessor

    return LLMSeriesAccessor(piece)._frame()


def _run(pieces: list, collection, client, prompt, *, session, rows_per_task, series: bool,
         settings: dict):
    from ..batch import accessor as pandas_accessor
    from ..batch import api
    from .dispatch import ClusterRows

    dispatch = ClusterRows(client, rows_per_task=rows_per_task)
    frame = _concat(pieces)
    s = pandas_accessor._session(session)
    placeholders = pandas_accessor._series_placeholders() if series else _no_context()
    with placeholders:
        run, out_schema = api.prepare(s, frame=frame, prompt=prompt, keep_answers=False,
                                      **settings)
    run.rows_elsewhere = dispatch
    try:
        api.run_sync(run, run.progress)
    finally:
        if run.job_id:
            api.remember_index(run.job_id, frame.index)
    api.warn_outcome(run)
    result = api.frame_result(run, frame.index, out_schema)
    info = dict(result.attrs["llm"], workers=dict(dispatch.workers), tasks=dispatch.tasks)
    return _like(collection, result, [len(p) for p in pieces], info)


class NotOnACluster(UserError, ValueError):
    """A setting of df.llm.map that a cluster run cannot honour (shown in one line)."""


def _refuse_unsupported(settings: dict) -> None:
    """Before the input is computed: settings that run a batch in the kernel."""
    for name, value, why in (("background", True, "it runs now, like persist()"),
                             ("via", "batch_api", "its rows run on the cluster's workers")):
        if settings.get(name) == value:
            raise NotOnACluster(f"ddf.llm.map does not take {name}={value!r}: {why}; use "
                                f"ddf.compute().llm.map(..., {name}={value!r}) for that")


class _no_context:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _client(client):
    try:
        from distributed import Client, get_client
    except ImportError:
        raise UserError("ddf.llm.map runs on a Dask cluster, which needs distributed: "
                        "pip install 'llm-notebook[dask]'") from None
    if client is not None:
        if not isinstance(client, Client):
            raise UserError(f"client= takes a distributed.Client, not {type(client).__name__}")
        return client
    try:
        return get_client()
    except ValueError:
        raise UserError("ddf.llm.map runs on a Dask cluster: start a client first "
                        "(from distributed import Client; client = Client() or Client(address)), "
                        "or use ddf.compute().llm.map(...) to run in this kernel") from None


def _like(collection, result, lengths: list, info: dict):
    """`result` (pandas) as a dask collection partitioned like `collection`."""
    import dask.dataframe as dd

    pieces, start = [], 0
    for n in lengths:
        piece = result.iloc[start:start + n]
        piece.attrs = {}
        pieces.append(piece)
        start += n
    out = dd.from_map(_same, pieces, meta=result.iloc[:0], divisions=collection.divisions,
                      enforce_metadata=False)
    try:
        out.llm_info = info
    except AttributeError:
        pass
    return out


def _same(piece):
    return piece
