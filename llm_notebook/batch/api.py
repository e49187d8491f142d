"""The front doors of batch runs: `Session.batch/abatch` (lists of prompts) and `df.llm.map`
(DataFrame rows), which both prepare a BatchRun, run it with live progress, and shape its result.
"""

from __future__ import annotations

import asyncio
import collections
import queue
import time
from typing import Any

from .. import providers
from ..call.replay import Replay
from ..retry import RetryPolicy
from . import inputs
from .engine import BatchRun
from .settings import BatchSettings

DEFAULT_CONCURRENCY = 16
PROGRESS_SECONDS = 0.2           # progress refresh (5/s: far below what iopub can take)
ATTACHMENT_SAMPLE_ROWS = 256   # rows whose attachments are checked against the model up front
INTERRUPT_GRACE = 1.8            # Ctrl-C: seconds to let the run write what finished
# Indexes of recent DataFrame runs, so session.job(id).errors() can show the user's labels.
_RECENT_INDEXES: "collections.OrderedDict[str, Any]" = collections.OrderedDict()


class BatchResult(list):
    """The answers of session.batch(), in input order: text (or parsed dict with a schema),
    None for a row that failed. `.info` holds the job id and counts; `.job` the Job."""

    def __init__(self, items, info: dict, job):
        super().__init__(items)
        self.info = info
        self.job = job
        self.job_id = info["job_id"]

    def errors(self):
        """A DataFrame of the rows that failed (row, kind, message, attempts, prompt)."""
        return self.job.errors()

    def __repr__(self) -> str:
        i = self.info
        return (f"<BatchResult job {i['job_id']}: {i['ok']} ok, {i['error']} errors, "
                f"{i['cached']} cached of {i['rows']} rows; {list.__repr__(self)[:200]}>")


def prepare(session, *, frame=None, prompts=None, prompt=None, options: dict | None = None,
            check_budget: bool = True, keep_answers: bool = True,
            **keywords) -> tuple[BatchRun, Any]:
    """Everything that can fail before a call, fails here; returns the run and the schema.

    `keywords` are BatchSettings and model options (BatchSettings.split); `options` more
    model options. With a session or day budget set, a run whose estimate could cross it is
    refused here, before any row is sent, and in replay mode a run with rows that are not
    recorded (`check_budget=False` for estimates: they refuse nothing).
    `keep_answers=False` for runs whose result is shaped once they end (map, batch): they read
    their answers back from the log then (BatchRun.answers)."""
    from .. import context as ctx
    from .schema import OutputSchema

    settings, more_options = BatchSettings.split(keywords)
    options = {k: v for k, v in {**(options or {}), **more_options}.items() if v is not None}
    model, system = settings.model, settings.system
    if frame is not None:
        spec = inputs.prompt_spec(session, prompt, system=system, model=model, options=options)
    else:
        spec = inputs.PromptSpec(prompt="", system=system, model=model, options=options)
    options = dict(spec.options)
    policy = _policy(session, options)
    out_schema = OutputSchema(settings.schema) if settings.schema is not None else None
    route = session.resolve(spec.model, options)
    if settings.via == "batch_api":
        from .. import providers

        providers.batch_api_support(route)   # a provider without one: refused before anything
    system_text = spec.system
    if out_schema is not None:
        options.setdefault("response_format", out_schema.response_format())
        if route.kind == "local":  # its grammar fixes the shape; words help a small model fill it
            system_text = f"{system_text}\n\n{out_schema.hint()}" if system_text else out_schema.hint()
    limit_tokens = inputs.max_prompt_tokens(route)
    if frame is not None:
        spec.system = system_text
        rows = inputs.FrameRows(frame, spec, max_tokens=limit_tokens,
                                attach=settings.attachments)
    else:
        if settings.attachments is not None:
            raise TypeError("attachments= names DataFrame columns (df.llm.map); in batch() give "
                            "each prompt as messages whose content holds the attachments")
        if isinstance(prompts, (str, bytes)) or not hasattr(prompts, "__len__"):
            raise TypeError("batch() takes a list of prompts (strings or message lists); for one "
                            "prompt use ask()")
        rows = inputs.ListRows(list(prompts), system_text, max_tokens=limit_tokens)
    _refuse_attachments(route, rows, settings.attachments)
    if settings.on_error == "raise":
        bad = inputs.first_error(rows)
        if bad is not None:
            i, count, (_kind, message) = bad
            raise ValueError(f"row {i}: {message} ({count} bad row(s) in all; nothing was "
                             "sent; fix them, or use on_error='keep' to send the others)")
    width = _concurrency(settings.concurrency, route)
    context = {"notebook": ctx.notebook_path(), "cell_id": ctx.cell_id()}
    run = BatchRun(session, route, rows, settings, options=options, concurrency=width,
                   schema=out_schema, system=system_text, policy=policy, context=context,
                   keep_answers=keep_answers, replay=Replay.of(session))
    if check_budget:
        _refuse_not_recorded(run)
        _refuse_over_budget(session, run)
    return run, out_schema


def _refuse_attachments(route, rows, attach_columns) -> None:
    """A model that cannot take the rows' attachments refuses the whole run before any row: a
    text-only one as soon as a column of attachments is named; otherwise by the attachments of
    the first rows (a run's rows are built a chunk at a time: reading every file here would read
    them all twice)."""
    from ..attachments import refuse_for, references

    if attach_columns is not None:
        refuse_for(route, [{"mime_type": "image/*", "name": f"column {attach_columns!r}"}],
                   text_only=True)
    sample = rows.build(0, min(rows.n, ATTACHMENT_SAMPLE_ROWS)).messages
    refs = [ref for m in sample if m is not None for ref in references(m)]
    if refs:
        refuse_for(route, refs)


def _refuse_not_recorded(run: BatchRun) -> None:
    """Replaying, a run with rows the recordings do not hold fails before any row runs: in
    replay mode because they are not recorded, in auto mode if they need a key that is missing."""
    replay = run.replay
    if replay is None or not replay.replays:
        return
    from .feed import chunks

    missing = 0
    for chunk in chunks(run.rows, run.route, run.options, replay=replay):
        keys = [k for k in chunk.replay_keys if k is not None]
        found = replay.find_many(keys)
        missing += sum(1 for k in keys if k not in found)
    if missing and replay.strict:
        raise replay.not_recorded(run.route, None, rows=missing, total=run.n)
    if missing:
        providers.check_key(run.route)


def _refuse_over_budget(session, run: BatchRun) -> None:
    from .. import budget as budgets

    if not budgets._limits(session):
        return
    from .accessor import estimate_run

    estimate = estimate_run(session, run)
    if estimate.to_send:
        budgets.check_run(session, estimate.cost, what=f"this batch run of {estimate.to_send} rows",
                          detail=f"est. ${estimate.cost or 0:.4f}, {estimate.input_tokens:,} input + "
                                 f"{estimate.output_tokens:,} output tokens")


def _policy(session, options: dict) -> RetryPolicy:
    """Per-row retry policy; `deadline=`, `timeout=`, `max_retries=` may be given per batch."""
    config = session.config
    policy = RetryPolicy(max_retries=options.pop("max_retries", config.max_retries),
                         deadline=options.pop("deadline", config.deadline),
                         timeout=options.pop("timeout", config.timeout))
    for name in ("deadline", "timeout"):
        value = getattr(policy, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    if isinstance(policy.max_retries, bool) or not isinstance(policy.max_retries, int) \
            or policy.max_retries < 0:
        raise ValueError(f"max_retries must be a whole number >= 0, got {policy.max_retries!r}")
    return policy


def _concurrency(value, route) -> int:
    if route.kind == "local":
        return 1  # CPU-bound: one row at a time is the fastest way through
    if value is None:
        return DEFAULT_CONCURRENCY
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"concurrency must be a whole number >= 1, got {value!r}")
    return value


# -- running ---------------------------------------------------------------------------------

def run_sync(run: BatchRun, progress=None) -> BatchRun:
    """Run on the background loop; show progress from this thread; Ctrl-C stops within 2 s.

    The run tells this thread its numbers after each flush (an event, through a queue): the
    display is updated here, in the thread of the cell that started the run."""
    from .. import runner
    from . import progress as progress_mod

    if runner._in_loop_thread():
        raise RuntimeError("batch()/df.llm.map() were called from llm-notebook's own event loop; "
                           "use `await session.abatch(...)` there")
    display = _throttled(progress_mod.open_display(progress, run))
    snapshots: "queue.Queue" = queue.Queue()
    if display is not None:
        run.on_progress(snapshots.put)
    loop = runner.loop()
    holder: dict = {}

    async def main():
        holder["task"] = asyncio.current_task()
        return await run.run()

    future = asyncio.run_coroutine_threadsafe(main(), loop)
    future.add_done_callback(lambda _f: snapshots.put(_ENDED))
    try:
        while True:
            try:
                item = snapshots.get(timeout=PROGRESS_SECONDS)
            except queue.Empty:
                continue    # no news; wait again (the wait stays interruptible by Ctrl-C)
            if item is _ENDED:
                break
            display.update(item)
    except KeyboardInterrupt:
        task = holder.get("task")
        if task is not None:
            loop.call_soon_threadsafe(task.cancel)
        else:
            future.cancel()
        try:
            future.result(timeout=INTERRUPT_GRACE)
        except BaseException:
            pass
        snap = run.snapshot()
        if display is not None:
            display.close(dict(snap, status="interrupted"))
        if run.via == "batch_api":
            raise KeyboardInterrupt(
                f"stopped waiting for job {run.job_id}: its provider batch goes on; "
                f"llm_notebook.session().job({run.job_id!r}).result() picks it up where it is") from None
        raise KeyboardInterrupt(
            f"batch interrupted: {snap['done']} of {snap['total']} rows finished and are saved "
            f"(job {run.job_id}); run the same call again to send only the rest, or see "
            f"llm_notebook.session().job({run.job_id!r}).result()") from None
    except BaseException:
        if display is not None:
            display.close(run.snapshot())
        raise
    try:
        return future.result()
    finally:
        if display is not None:
            display.close(run.snapshot())


_ENDED = object()


class _Throttle:
    """A progress display that shows at most one update per PROGRESS_SECONDS (the run tells
    its numbers after every flush, ten times a second)."""

    def __init__(self, display):
        self.display = display
        self.shown_at = 0.0

    def update(self, snapshot: dict) -> None:
        now = time.monotonic()
        if now - self.shown_at >= PROGRESS_SECONDS:
            self.shown_at = now
            self.display.update(snapshot)

    def close(self, snapshot: dict) -> None:
        self.display.close(snapshot)

    def show_again(self) -> None:
        show_again = getattr(self.display, "show_again", None)
        if show_again is not None:
            show_again()


def _throttled(display):
    return None if display is None else _Throttle(display)


async def run_async(run: BatchRun, progress=None) -> BatchRun:
    from . import progress as progress_mod

    display = _throttled(progress_mod.open_display(progress, run))
    if display is not None:
        run.on_progress(display.update)
    try:
        return await run.run()
    finally:
        if display is not None:
            display.close(run.snapshot())


def submit_background(session, run: BatchRun, *, frame=None, schema=None):
    """Start `run` as a background job; returns its Job at once. Its result is what the
    foreground call returns: a Series/DataFrame on `frame`'s index, else a BatchResult."""
    from .background import queue_of

    if frame is not None:
        index = frame.index

        def shape(finished: BatchRun):
            return frame_result(finished, index, schema)
    else:
        def shape(finished: BatchRun):
            return list_result(session, finished)
    job = queue_of(session).submit(run, shape=shape, frame=frame)
    if frame is not None:
        remember_index(job.id, frame.index)
    return job


# -- results ---------------------------------------------------------------------------------

def list_result(session, run: BatchRun) -> BatchResult:
    from .jobs import Job

    items = run.parsed_answers()
    return BatchResult(items, run.summary(), Job(session, run.job_id))


def frame_result(run: BatchRun, index, schema):
    """df.llm.map's result: a Series of texts, or a DataFrame of fields with a schema."""
    import pandas as pd

    info = run.summary()
    if schema is None:
        out = pd.Series(pd.array(run.answers(), dtype="string"), index=index)
    else:
        columns = schema.result_columns()
        records = [schema.row_values(v) if v is not None else {} for v in run.parsed_answers()]
        out = pd.DataFrame.from_records(records, columns=columns, index=index)
        out = out.convert_dtypes()
    out.attrs["llm"] = info
    return out


def remember_index(job_id: str, index) -> None:
    _RECENT_INDEXES[job_id] = index
    while len(_RECENT_INDEXES) > 20:
        _RECENT_INDEXES.popitem(last=False)


def recent_index(job_id: str):
    return _RECENT_INDEXES.get(job_id)


def warn_outcome(run: BatchRun) -> None:
    """One line when a run ended early or had errors (the numbers are also in .attrs)."""
    import warnings

    s = run.summary()
    if s["status"] == "budget":
        warnings.warn(f"llm-notebook: the run stopped before crossing its budget: {s['ok']} ok, "
                      f"{s['not_run'] + s['error']} rows without an answer (job {s['job_id']})",
                      stacklevel=3)
