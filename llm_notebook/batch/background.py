"""Background batch jobs: `df.llm.map(..., background=True)` returns a Job at once.

A background job is a batch run (engine.BatchRun) on llm-notebook's background loop
(runner.py), so the kernel is free to run other cells. Its job record is opened before it is
queued (its id is known at once; its status is `queued`), and at most
`LLMNotebook.background_jobs` run at once per kernel: the rest wait in the order they came.
Jobs on one model share its pacing (pacing.shared_pacer), so two jobs never exceed the model's
rpm/tpm together.

Its progress widget is updated from the loop thread (comm messages leave on iopub whatever cell
runs), and its Stop button asks this object to cancel (a custom message: handled at once while
the kernel is idle, after the running cell otherwise). When it ends, the job record says so,
and JupyterLab announces it: the lab extension polls the server extension, which reads the
log's `jobs` table (server/handlers.py: JobsEndedHandler), so the announcement comes even when
the kernel is busy, and after a page reload.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from typing import Any, Callable

from . import store
from .pacing import AdaptiveLimit

KEEP_FINISHED = 8   # finished jobs whose results stay in memory (job.result() is then instant)


class LiveJob:
    """A job running (or queued, or just finished) in this kernel."""

    def __init__(self, run, shape: Callable[[Any], Any], frame=None):
        self.run = run
        self.shape = shape          # run -> what the foreground call returns
        self.frame = frame          # the input DataFrame (job.export() keeps its columns)
        self.future = None          # concurrent.futures.Future of the drive coroutine
        self.task: asyncio.Task | None = None
        self.display = None
        self.error: BaseException | None = None
        self.cancel_requested = False
        self.ended = threading.Event()

    @property
    def job_id(self) -> str:
        return self.run.job_id

    @property
    def status(self) -> str:
        return self.run.job_status

    def cancel(self) -> None:
        """(any thread) A queued job never starts; a running one starts no more rows (rows in
        flight finish; a provider batch is cancelled at the provider)."""
        from .. import runner

        self.cancel_requested = True
        self.run.cancel()
        if self.run.started is None:
            task = self.task
            if task is not None:
                runner.loop().call_soon_threadsafe(task.cancel)


class JobQueue:
    """The background jobs of one Session."""

    def __init__(self, session):
        self.session = session
        self.live: "collections.OrderedDict[str, LiveJob]" = collections.OrderedDict()
        self._gate: AdaptiveLimit | None = None    # made on the background loop, on first use
        self._lock = threading.Lock()

    def submit(self, run, *, shape: Callable[[Any], Any], frame=None):
        """Open `run`'s job, show its progress, queue it; returns its Job."""
        from .. import runner
        from . import progress as progress_mod
        from .jobs import Job

        run.open_job()
        live = LiveJob(run, shape, frame)
        display = progress_mod.open_display(run.progress, run, background=True)
        if display is not None:
            from .api import _throttled

            live.display = _throttled(display)
            run.on_progress(live.display.update)
            if hasattr(display, "on_stop"):
                display.on_stop(live.cancel)
        with self._lock:
            self.live[run.job_id] = live
            self._forget_old()
        live.future = runner.submit(self._drive(live))
        return Job(self.session, run.job_id)

    def get(self, job_id: str) -> LiveJob | None:
        with self._lock:
            return self.live.get(job_id)

    def active(self) -> list[LiveJob]:
        with self._lock:
            return [j for j in self.live.values() if not j.ended.is_set()]

    def _forget_old(self) -> None:
        finished = [k for k, j in self.live.items() if j.ended.is_set()]
        for key in finished[:max(0, len(finished) - KEEP_FINISHED)]:
            del self.live[key]

    # -- on the background loop -------------------------------------------------------------

    async def _drive(self, live: LiveJob) -> None:
        run = live.run
        live.task = asyncio.current_task()
        slot = False
        try:
            if live.cancel_requested:
                raise asyncio.CancelledError
            await self._slots().acquire()
            slot = True
            if live.cancel_requested:
                raise asyncio.CancelledError
            await run.run()
        except asyncio.CancelledError:
            if run.started is None:   # cancelled while queued: it never ran
                run.job_status = "cancelled"
                await asyncio.get_running_loop().run_in_executor(
                    None, store.set_status, run.log, run.job_id, "cancelled")
            live.error = None
        except BaseException as exc:  # handed to job.result()
            live.error = exc
        finally:
            if slot:
                self._slots().release()
            # The display's final numbers go out before a waiter wakes (job.wait() then shows
            # them again from its own cell: see Job.wait).
            if live.display is not None:
                try:
                    live.display.close(run.snapshot())
                except Exception:
                    pass
            live.ended.set()

    def _slots(self) -> AdaptiveLimit:
        """The gate of running jobs, `background_jobs` wide (read again each time: the setting
        may change while jobs wait)."""
        want = max(1, int(self.session.config.background_jobs))
        if self._gate is None:
            self._gate = AdaptiveLimit(want)
        elif self._gate.maximum != want:
            self._gate.resize(want)
        return self._gate


def queue_of(session) -> JobQueue:
    """The Session's job queue (made on first use)."""
    queue = getattr(session, "_job_queue", None)
    if queue is None:
        queue = session._job_queue = JobQueue(session)
    return queue
