"""Batch jobs as users see them: `session.jobs()` (a DataFrame) and `session.job(id)` (a Job)."""

from __future__ import annotations

from . import store
from ..errors import UserError


class JobNotFound(UserError, KeyError):
    def __str__(self) -> str:  # KeyError would show the message in quotes
        return str(self.args[0])


class Job:
    """One batch job in the log. `errors()` lists its failed rows; `result()` its answers."""

    def __init__(self, session, job_id: str):
        self.session = session
        record = store.job(session.log, job_id)
        if record is None:
            raise JobNotFound(f"no batch job {job_id!r} in the log; session.jobs() lists them")
        self.id = record["id"]

    @property
    def info(self) -> dict:
        """The job's record: status, rows, done, ok, errors, cached, tokens, cost, ..."""
        return store.job(self.session.log, self.id)

    @property
    def status(self) -> str:
        return self.info["status"]

    def _index(self):
        from .api import recent_index

        return recent_index(self.id)

    def errors(self):
        """A DataFrame of the rows that failed: kind, message, attempts, prompt, reply.

        Indexed by the input's index labels when the job ran in this kernel, else by row number.
        """
        import pandas as pd

        rows = store.job_rows(self.session.log, self.id, errors_only=True)
        frame = pd.DataFrame(rows, columns=["row", "status", "error_kind", "error", "attempts",
                                            "cached", "cost", "call_id", "prompt", "response"])
        frame = frame.drop(columns=["status", "cached", "cost"])
        index = self._index()
        if index is not None and len(frame) and frame["row"].max() < len(index):
            frame.index = index[frame["row"].to_numpy()]
        else:
            frame.index = frame["row"].to_numpy()
        return frame

    def result(self):
        """The answers recorded so far as a Series (<NA> for rows without one)."""
        import pandas as pd

        info = self.info
        texts = [None] * info["rows"]
        for r in store.job_rows(self.session.log, self.id):
            if r["status"] == "ok" and 0 <= r["row"] < len(texts):
                texts[r["row"]] = r["response"]
        index = self._index()
        if index is None or len(index) != len(texts):
            index = None
        return pd.Series(pd.array(texts, dtype="string"), index=index)

    def __repr__(self) -> str:
        i = self.info
        return (f"<Job {i['id']} {i['status']}: {i['done']}/{i['rows']} rows done, {i['ok']} ok, "
                f"{i['errors']} errors, {i['cached']} cached, ${i['cost']:.4f} · {i['model']}>")


def jobs_frame(session, limit: int = 50):
    """Recent batch jobs, newest first: id, created, status, model, rows, done, errors, cost..."""
    import pandas as pd

    rows = store.jobs(session.log, limit=limit)
    frame = pd.DataFrame(rows, columns=["id", "created", "finished", "status", "model", "prompt",
                                        "rows", "done", "ok", "errors", "cached", "input_tokens",
                                        "output_tokens", "cost", "unpriced", "notebook"])
    for col in ("created", "finished"):
        frame[col] = pd.to_datetime(frame[col], unit="s", utc=True)
    return frame
