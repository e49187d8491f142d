"""`llm_notebook.Batch()`: the batch face. Choose a DataFrame of the notebook or upload a CSV,
JSONL, Parquet or Excel file, a prompt (or a saved template) and a model; see the estimate; run
now, as a background job or through the provider's Batch API; watch the progress; download the
results (CSV, Parquet, JSONL) with the input's columns, the answers, each row's status and error.

Everything it runs is a batch job (batch/background.py's queue, as `df.llm.map(...,
background=True)`): the kernel stays free, `widget.job` is the Job (`.result()`, `.export()`),
and "now" differs from "background" only in being watched here rather than announced by
JupyterLab when it ends.

An upload comes from the browser in chunks of custom messages (one binary buffer each) and is
parsed here by pandas (batch/files.py), at most `max_upload_mb`; a download is the job's table
(batch/export.py) sent back in the answer to a request, at most MAX_DOWNLOAD_MB.
"""

from __future__ import annotations

import base64
import threading
import time
import uuid
from typing import Any

import traitlets

from ._base import LLMWidget, rpc
from .snapshot import Snapshot, batch_form_snapshot

__all__ = ["Batch", "MODES"]

MODES = ("now", "background", "batch_api")
CHUNK_BYTES = 512 * 1024            # upload pieces the browser sends
MAX_DOWNLOAD_MB = 50.0
PROGRESS_SECONDS = 0.2
MAX_MODELS = 300


def _session():
    import llm_notebook

    return llm_notebook.session()


def _user_namespace() -> dict:
    try:
        from IPython import get_ipython
    except ImportError:
        return {}
    shell = get_ipython()
    return getattr(shell, "user_ns", None) or {}


class Batch(LLMWidget):
    """The batch face (see the module docstring).

        llm_notebook.Batch()                     # DataFrames of the notebook, or upload a file
        llm_notebook.Batch(df, prompt="Summarize: {text}", model="openai/gpt-4o-mini")
        widget.job.result()                      # the run's Series, as df.llm.map returns it
    """

    _bundle = "batch"

    sources = traitlets.List(help="Tables to choose from: [{name, rows, columns, kind}] "
                                  "(kind: notebook or upload).").tag(sync=True)
    source = traitlets.Unicode("", help="The chosen table's name.").tag(sync=True)
    prompt = traitlets.Unicode("", help="Prompt with {column} placeholders, or a saved "
                                        "template's name.").tag(sync=True)
    model = traitlets.Unicode("", help="Model id; '' for the session's default.").tag(sync=True)
    mode = traitlets.Unicode("now", help="now, background or batch_api.").tag(sync=True)
    state = traitlets.Dict(help="The run: status, line, done, total, errors, cost, job_id, "
                                "error.").tag(sync=True)
    max_upload_mb = traitlets.Float(50.0, help="Largest file the browser may upload.").tag(sync=True)

    def __init__(self, data=None, *, prompt: str = "", model: str = "", mode: str = "now",
                 session=None, max_upload_mb: float = 50.0, **kwargs: Any) -> None:
        self._session = session or _session()
        self._tables: dict[str, Any] = {}      # given to the widget, or uploaded
        self._uploads: dict[str, dict] = {}
        self._lock = threading.RLock()
        self._job_id: str | None = None
        self._shown_at = 0.0
        if data is not None:
            named = data if isinstance(data, dict) else {"data": data}
            for name, frame in named.items():
                self._tables[str(name)] = frame
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        super().__init__(prompt=prompt, model=model, mode=mode, max_upload_mb=max_upload_mb,
                         **kwargs)
        self.sources = self._list_sources()
        if self.sources:
            self.source = self.sources[0]["name"]

    # -- Python API -------------------------------------------------------------------------

    @property
    def job(self):
        """The Job of the last run (None before the first)."""
        if self._job_id is None:
            return None
        return self._session.job(self._job_id)

    def table(self, name: str | None = None):
        """The DataFrame a source name stands for (the chosen one by default)."""
        name = name if name is not None else self.source
        with self._lock:
            if name in self._tables:
                return self._tables[name]
        frame = _user_namespace().get(name)
        if _is_frame(frame):
            return frame
        raise ValueError(f"no table named {name!r}: choose one of the list, or upload a file")

    def _build_snapshot(self) -> Snapshot:
        rows = next((s["rows"] for s in self.sources if s["name"] == self.source), None)
        return batch_form_snapshot(self.source, rows, self.prompt, self.model, self.mode,
                                   self.state.get("settled") or "")

    # -- sources ----------------------------------------------------------------------------

    def _list_sources(self) -> list[dict]:
        found = []
        with self._lock:
            tables = dict(self._tables)
        for name, frame in tables.items():
            found.append(_describe(name, frame, "upload" if name in self._uploaded() else "given"))
        for name, value in _user_namespace().items():
            if name.startswith("_") or name in tables or not _is_frame(value):
                continue
            found.append(_describe(name, value, "notebook"))
        return found

    def _uploaded(self) -> set:
        return {u["name"] for u in self._uploads.values() if u.get("done")}

    @rpc("sources")
    def _sources(self) -> list[dict]:
        self.sources = self._list_sources()
        return self.sources

    @rpc("choices")
    async def _choices(self) -> dict:
        """Models and saved templates to offer (off the kernel's thread: listing an endpoint's
        models asks its server)."""
        import asyncio

        return await asyncio.get_running_loop().run_in_executor(None, self._list_choices)

    def _list_choices(self) -> dict:
        session = self._session
        try:
            frame = session.models()
            keep = frame["group"].isin(["embedded", "endpoint", "alias", "provider (key present)"])
            models = [m for m in frame.loc[keep & frame["available"].astype(bool), "model"]
                      if not str(m).endswith("/*")][:MAX_MODELS]
        except Exception:  # the list is a help, not a must: any id can be typed
            models = []
        try:
            templates = session.templates.names()
        except Exception:
            templates = []
        return {"models": models, "templates": templates,
                "default_model": session.default_model()}

    # -- uploads ----------------------------------------------------------------------------

    @rpc("upload_begin")
    def _upload_begin(self, name: str, size: int) -> dict:
        from ..batch.files import kind_of

        kind_of(str(name))
        limit = self.max_upload_mb * 1e6
        if not isinstance(size, int) or size < 0:
            raise ValueError("size must be the file's length in bytes")
        if size > limit:
            raise ValueError(f"{name} is {size / 1e6:,.1f} MB, more than the {self.max_upload_mb:g} "
                             "MB this widget takes; read it with pandas in a cell instead "
                             "(Batch(df) shows that DataFrame)")
        upload = uuid.uuid4().hex
        with self._lock:
            self._uploads[upload] = {"name": str(name), "size": size, "parts": [], "got": 0}
        return {"upload": upload, "chunk_bytes": CHUNK_BYTES}

    def on_custom_message(self, content: dict, buffers: list) -> None:
        if content.get("type") != "upload.chunk":
            return
        with self._lock:
            upload = self._uploads.get(content.get("upload"))
            if upload is None or upload.get("done") or not buffers:
                return
            data = bytes(buffers[0])
            upload["got"] += len(data)
            if upload["got"] > upload["size"] or upload["got"] > self.max_upload_mb * 1e6:
                upload["error"] = "the file sent more bytes than it said it had"
                upload["parts"] = []
                return
            upload["parts"].append(data)

    @rpc("upload_end")
    def _upload_end(self, upload: str) -> dict:
        from ..batch.files import read_table

        with self._lock:
            entry = self._uploads.get(upload)
            if entry is None:
                raise ValueError("unknown upload; choose the file again")
            if entry.get("error") or entry["got"] != entry["size"]:
                self._uploads.pop(upload, None)
                raise ValueError(entry.get("error") or f"the upload of {entry['name']} was cut "
                                 f"short ({entry['got']:,} of {entry['size']:,} bytes); try again")
            data = b"".join(entry.pop("parts"))
        frame = read_table(entry["name"], data)
        with self._lock:
            entry["done"] = True
            self._tables[entry["name"]] = frame
        self.sources = self._list_sources()
        self.source = entry["name"]
        return _describe(entry["name"], frame, "upload")

    # -- estimate and run -------------------------------------------------------------------

    def _settings(self) -> dict:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if not self.prompt.strip():
            raise ValueError("write a prompt with {column} placeholders, or a saved template's name")
        settings: dict = {"model": self.model.strip() or None, "progress": False}
        if self.mode == "batch_api":
            settings.update(via="batch_api", background=True)
        elif self.mode == "background":
            settings["background"] = True
        return settings

    @rpc("estimate")
    def _estimate(self) -> dict:
        frame = self.table()
        estimate = frame.llm.estimate(self.prompt, session=self._session, **self._settings())
        return {"text": str(estimate), **estimate.to_dict()}

    @rpc("run")
    def _run(self) -> dict:
        """Start a run of the form as it is; answers with its job id at once."""
        from ..batch import api
        from ..batch.background import queue_of

        job = self.job
        if job is not None and not job.done:
            raise ValueError(f"job {job.id} is still running: stop it first, or wait")
        frame = self.table()
        run, schema = api.prepare(self._session, frame=frame, prompt=self.prompt,
                                  keep_answers=False, **self._settings())
        run.on_progress(self._progress)
        index = frame.index

        def shape(finished):
            return api.frame_result(finished, index, schema)

        job = queue_of(self._session).submit(run, shape=shape, frame=frame)
        api.remember_index(job.id, frame.index)
        self._job_id = job.id
        live = queue_of(self._session).get(job.id)
        live.future.add_done_callback(lambda _f: self._ended(job.id))
        self._progress(run.snapshot(), force=True)
        return {"job_id": job.id}

    @rpc("stop")
    def _stop(self) -> bool:
        job = self.job
        if job is not None and not job.done:
            job.cancel()
            return True
        return False

    def _progress(self, snapshot: dict, force: bool = False) -> None:
        # Called on the background loop after each flush: at most five updates a second, and
        # always the last (a status other than running).
        from ..batch.progress import describe

        now = time.monotonic()
        settled = snapshot["status"] not in ("queued", "running")
        if not (force or settled) and now - self._shown_at < PROGRESS_SECONDS:
            return
        self._shown_at = now
        self.state = {**{k: snapshot.get(k) for k in ("status", "done", "total", "errors",
                                                       "cached", "cost", "job_id", "provider")},
                      "line": describe(snapshot), "settled": describe(snapshot, timing=False),
                      "error": None}

    def _ended(self, job_id: str) -> None:
        from ..batch.background import queue_of
        from .streaming import error_line

        live = queue_of(self._session).get(job_id)
        if live is None:
            return
        self._progress(live.run.snapshot(), force=True)
        if live.error is not None:
            self.state = {**self.state, "error": error_line(live.error)}
        self.refresh_snapshot()

    # -- results ----------------------------------------------------------------------------

    @rpc("download")
    def _download(self, format: str) -> dict:
        from ..batch.export import FORMATS, to_bytes

        job = self.job
        if job is None:
            raise ValueError("run the batch first: there are no results to download yet")
        if format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}")
        data = to_bytes(job.to_pandas(), format)
        if len(data) > MAX_DOWNLOAD_MB * 1e6:
            raise ValueError(f"the results are {len(data) / 1e6:,.0f} MB, too many to download "
                             f"here; write them with llm_notebook.session().job({job.id!r})"
                             f".export('results.{format}')")
        base = "".join(c if c.isalnum() or c in "-_" else "-" for c in self.source) or "batch"
        return {"filename": f"{base}-{job.id}.{format}", "mime": FORMATS[format],
                "data": base64.b64encode(data).decode("ascii")}


def _is_frame(value) -> bool:
    import sys

    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(value, pandas.DataFrame)


def _describe(name: str, frame, kind: str) -> dict:
    return {"name": name, "rows": int(len(frame)), "columns": [str(c) for c in frame.columns][:200],
            "kind": kind}
