"""How a workflow's LLM steps reach the batch engine: through its public faces only.

In a cell or a script a step is `df.llm.map(...)` itself (pacing, retries, cache, budget,
progress and Ctrl-C as any map). The builder widget runs a workflow off the kernel's thread and
must be stoppable from its Stop button, which a KeyboardInterrupt cannot reach there; it runs the
same prepared batch (`batch.api.prepare` / `frame_result`, what `map` does) on the runner's loop
and cancels it when asked: the run then writes what finished, as on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable

from .errors import WorkflowStopped

STOP_GRACE = 1.8            # seconds a stopped run gets to write what finished


def map_rows(session, frame, prompt, **settings):
    """`frame.llm.map(prompt, **settings)` on `session`: a Series, or a DataFrame with a schema."""
    from ..batch import accessor  # noqa: F401  (registers df.llm even if pandas came first)

    return frame.llm.map(prompt, session=session, **settings)


class StoppableMap:
    """`map_rows` for a run on a worker thread: progress snapshots go to `on_progress`, and
    setting `stop` cancels the batch within STOP_GRACE seconds, its finished rows logged."""

    def __init__(self, stop: threading.Event, on_progress: Callable[[dict], None] | None = None):
        self.stop = stop
        self.on_progress = on_progress

    def __call__(self, session, frame, prompt, **settings):
        from .. import runner
        from ..batch import api

        settings["progress"] = False
        run, schema = api.prepare(session, frame=frame, prompt=prompt, **settings)
        if self.on_progress is not None:
            run.on_progress(self.on_progress)
        finished = threading.Event()

        async def main():
            try:
                return await run.run()
            finally:
                finished.set()

        future = runner.submit(main())
        try:
            while True:
                try:
                    future.result(timeout=0.1)
                    break
                except concurrent.futures.TimeoutError:
                    if self.stop.is_set():
                        future.cancel()           # cancels the run's task on the loop
                        finished.wait(STOP_GRACE)
                        done = run.snapshot()["done"]
                        raise WorkflowStopped(f"stopped: {done} of {run.n} rows of this step "
                                              f"finished and are saved (job {run.job_id}); run "
                                              "again to send only the rest") from None
                except asyncio.CancelledError:
                    raise WorkflowStopped("stopped") from None
        finally:
            if run.job_id:
                api.remember_index(run.job_id, frame.index)
        return api.frame_result(run, frame.index, schema)
