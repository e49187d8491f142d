"""The Session: one per kernel, shared by the magics, widgets, batch runs and the sidebar."""

from __future__ import annotations

import queue
import threading
import time
import uuid
from typing import Any, AsyncIterator, Iterator

# asyncio and the loop thread (runner) are imported by the calls that need them, so that
# `%load_ext llm_notebook` in a plain IPython (which, from 9.x, no longer loads asyncio) stays lean.
from . import keys, pricing, providers
from .config import LLMNotebook
from .errors import LLMError
from .providers import Endpoint
from .response import Response
from .retry import RetryPolicy

# The groups of models() in the order they are listed: what works right now comes first.
MODEL_GROUPS = ("embedded", "endpoint", "alias", "provider (key present)", "provider")

_SESSION: "Session | None" = None
_SESSION_LOCK = threading.Lock()


def session() -> "Session":
    """The kernel's one Session, created on first use and shared by every face."""
    global _SESSION
    with _SESSION_LOCK:
        if _SESSION is None:
            _SESSION = Session(config=_config_from_ipython())
        return _SESSION


def reset_session() -> None:
    """Forget the kernel's Session: the next `session()` builds a new one (as after a kernel
    restart). Tests use it to start each test from a fresh Session; widgets and magics already
    holding the old one keep it.

    `llm_notebook.session` is this module's function of the same name, so reach this hook with
    `from llm_notebook.session import reset_session`.
    """
    global _SESSION
    with _SESSION_LOCK:
        _SESSION = None


def _config_from_ipython() -> LLMNotebook:
    """Inside IPython, hang the config off the shell so `%config` and config files reach it."""
    try:
        from IPython import get_ipython
        shell = get_ipython()
    except ImportError:
        shell = None
    if shell is None:
        return LLMNotebook()
    for existing in shell.configurables:
        if isinstance(existing, LLMNotebook):
            return existing
    config = LLMNotebook(parent=shell)
    shell.configurables.append(config)
    from .ipython_errors import install

    install(shell)
    return config


class Session:
    def __init__(self, *, config: LLMNotebook | None = None, log_path: str | None = None):
        self.config = config or LLMNotebook()
        if log_path:
            self.config.log_path = log_path
        self.aliases: dict[str, str] = {}
        self.endpoints: dict[str, Endpoint] = {}
        self.kernel_session = uuid.uuid4().hex
        self.spent = 0.0                      # USD spent by this Session (for the session budget)
        self._log = None
        self._log_lock = threading.Lock()
        self._recordings = None
        from .recordings import notebook_folder

        # Where the notebook's recordings are, as the kernel started (a later os.chdir in the
        # notebook does not move them).
        self._notebook_folder = notebook_folder()
        self._current: "Conversation | None" = None
        self._listeners: list = []

    # -- the log ----------------------------------------------------------------------------------

    @property
    def log(self):
        from .log import Log

        path = self.config.resolved_log_path()
        with self._log_lock:
            if self._log is None or self._log.path != path:
                self._log = Log(path)
            return self._log

    @property
    def recordings(self):
        """The notebook's recordings (llm_notebook.recordings.Recordings): the answers `%llm
        replay` records and replays, in llm-recordings.jsonl beside the notebook unless
        LLMNotebook.recordings names another file."""
        import os

        from .recordings import FILE_NAME, Recordings

        path = self.config.recordings_path() or os.path.join(self._notebook_folder, FILE_NAME)
        with self._log_lock:
            if self._recordings is None or self._recordings.path != path:
                self._recordings = Recordings(path)
            return self._recordings

    @property
    def templates(self):
        """The prompt template library (llm_notebook.templates.TemplateLibrary) in this log."""
        from .templates import TemplateLibrary

        return TemplateLibrary(lambda: self.log)

    @property
    def workflows(self):
        """Saved workflows (llm_notebook.workflows.library.WorkflowLibrary) in this log."""
        from .workflows.library import WorkflowLibrary

        return WorkflowLibrary(lambda: self.log)

    def on_call(self, listener) -> None:
        """Call `listener(row_dict)` after each call is logged (widgets refresh on it)."""
        self._listeners.append(listener)

    def off_call(self, listener) -> None:
        """Stop calling a listener added with on_call (e.g. when its widget is closed)."""
        try:
            self._listeners.remove(listener)
        except ValueError:
            pass

    def _notify(self, row: dict) -> None:
        for listener in list(self._listeners):
            try:
                listener(row)
            except Exception:
                pass

    # -- models ---------------------------------------------------------------------------------

    def alias(self, name: str, model: str) -> None:
        """Make `name` stand for `model` (e.g. alias("fast", "openai/gpt-4o-mini"))."""
        if not name or "/" in name:
            raise ValueError("an alias is a plain name without '/', e.g. alias('fast', 'openai/gpt-4o-mini')")
        self.aliases[name] = model

    def add_endpoint(self, name: str, base_url: str, api_key_env: str | None = None, *,
                     api_key: str | None = None, via: str = "http",
                     attachments: bool | None = None) -> Endpoint:
        """Make `name/<model>` call the OpenAI-compatible server at `base_url`.

        `attachments=False` declares its models text-only (a call with an image or PDF is then
        refused before it is sent); None (unknown) lets the server decide."""
        if not name or "/" in name:
            raise ValueError("an endpoint name is a plain word, e.g. add_endpoint('lab', 'http://localhost:8000/v1')")
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        if via not in ("http", "litellm"):
            raise ValueError("via must be 'http' (lean client) or 'litellm'")
        from . import redact

        redact.register(api_key)
        endpoint = Endpoint(name=name, base_url=base_url, api_key_env=api_key_env,
                            api_key=api_key, via=via, attachments=attachments)
        self.endpoints[name] = endpoint
        return endpoint

    def default_model(self) -> str:
        if self.config.default_model:
            return self.config.default_model
        if "default" in self.aliases:
            return "default"
        for provider, model in providers.PROVIDER_DEFAULTS.items():
            if keys.has_key(provider) and provider not in keys.KEYLESS:
                return model
        return "local/smollm2"

    def use(self, model: str) -> None:
        """Set the session's default model (checked now, so a typo fails here)."""
        self.resolve(model)
        self.config.default_model = model

    def resolve(self, model: str | None = None, options: dict | None = None) -> providers.Route:
        # Replaying, a call whose answer is recorded needs no key: a missing one is reported
        # when a call is about to be sent (providers.check_key).
        replaying = self.config.replay in ("replay", "auto")
        return providers.resolve(model or self.default_model(), endpoints=self.endpoints,
                                 aliases=self.aliases, options=options,
                                 require_key=not replaying)

    def models(self):
        """A DataFrame of known models: id, provider, key present, context window, prices."""
        import pandas as pd

        from .providers import local

        rows = [{"model": "local/smollm2", "provider": "local", "group": "embedded",
                 "key_present": True, "available": local.available(), "context_window": 2048,
                 "input_per_1m": 0.0, "output_per_1m": 0.0}]
        for ep in self.endpoints.values():
            rows += self._endpoint_models(ep)
        for name, target in self.aliases.items():
            rows.append({"model": name, "provider": f"alias of {target}", "group": "alias",
                         "key_present": None, "available": True, "context_window": None,
                         "input_per_1m": None, "output_per_1m": None})
        with_keys = set(keys.providers_with_keys())
        for model_id, info in pricing.price_map().items():
            if info.get("mode") not in ("chat", None):
                continue
            provider = info.get("litellm_provider") or ""
            if "/" not in model_id and provider:
                model_id = f"{provider}/{model_id}"
            cin, cout = info.get("input_cost_per_token"), info.get("output_cost_per_token")
            rows.append({"model": model_id, "provider": provider,
                         "group": "provider (key present)" if provider in with_keys else "provider",
                         "key_present": provider in with_keys, "available": True,
                         "context_window": info.get("max_input_tokens") or info.get("max_tokens"),
                         "input_per_1m": None if cin is None else cin * 1e6,
                         "output_per_1m": None if cout is None else cout * 1e6})
        frame = pd.DataFrame(rows).drop_duplicates("model")
        frame["_order"] = frame["group"].map({group: i for i, group in enumerate(MODEL_GROUPS)})
        return frame.sort_values(["_order", "model"]).drop(columns="_order").reset_index(drop=True)

    def _endpoint_models(self, ep: Endpoint) -> list[dict]:
        """An endpoint's models as its server lists them (GET /models); one `name/*` row,
        marked unavailable, when it cannot be asked."""
        from .providers import http

        key = ep.key()
        row = {"provider": ep.name, "group": "endpoint",
               "key_present": key is not None or ep.api_key_env is None,
               "context_window": None}
        try:
            listed = http.list_models(ep.base_url, key)
        except LLMError:
            listed = []
        if not listed:
            return [dict(row, model=f"{ep.name}/*", available=False, input_per_1m=None,
                         output_per_1m=None)]
        out = []
        for name in listed:
            model = f"{ep.name}/{name}"
            rates = pricing.rates(model, 0, self.config.prices)
            out.append(dict(row, model=model, available=True,
                            input_per_1m=None if rates is None else rates[0] * 1e6,
                            output_per_1m=None if rates is None else rates[1] * 1e6))
        return out

    def check(self, model: str | None = None) -> dict:
        """Make a tiny real call; report latency or a clear error (never raises for call errors)."""
        model = model or self.default_model()
        started = time.perf_counter()
        try:
            resp = self.ask("Reply with the word OK.", model=model, max_tokens=5, cache=False)
        except LLMError as exc:
            return {"model": model, "ok": False, "error": str(exc), "kind": exc.kind,
                    "latency_ms": round((time.perf_counter() - started) * 1000, 1)}
        return {"model": resp.model, "ok": True, "error": None, "kind": None,
                "latency_ms": round(resp.duration_ms or 0, 1), "reply": resp.text[:80]}

    # -- keys -----------------------------------------------------------------------------------

    def set_key(self, provider: str, value: str | None = None, *, keyring: bool = False) -> None:
        """Ask for a provider's key (getpass) and keep it in memory, or in the OS keyring."""
        if value is None:
            import getpass

            value = getpass.getpass(f"API key for {provider}: ")
        value = (value or "").strip()
        if not value:
            raise ValueError("no key entered; nothing was changed")
        keys.set_key(provider, value, keyring_store=keyring)

    def keys(self) -> dict[str, bool]:
        """Which providers have a key (True/False); never the keys themselves."""
        return {p: keys.has_key(p) for p in keys.PROVIDER_ENV}

    # -- calls ----------------------------------------------------------------------------------

    def _messages(self, prompt: str, system: str | None, history: list[dict] | None = None,
                  attachments=None) -> list[dict]:
        """The request's messages; `attachments` (paths, bytes, URLs, PIL images) go with the
        prompt as content parts (llm_notebook/attachments.py)."""
        from .attachments import load_all, user_content

        messages = []
        if system:
            messages.append({"role": "system", "content": system})
        messages.extend(history or [])
        messages.append({"role": "user", "content": user_content(prompt, load_all(attachments))})
        return messages

    def policy(self) -> RetryPolicy:
        return RetryPolicy(max_retries=self.config.max_retries, deadline=self.config.deadline,
                           timeout=self.config.timeout)

    async def acall(self, messages: list[dict], *, model: str | None = None,
                    options: dict | None = None, cache: bool | None = None, stream: bool = False,
                    on_text=None, conversation_id: str | None = None,
                    parent_id: int | None = None, state=None) -> Response:
        """Send a list of chat messages (the call pipeline behind every face: see
        llm_notebook/call/single.py). `on_text` receives the text as it arrives; a call of a
        conversation names it and the message it answers; `state` (call.single.CallState) is
        filled in as the call runs."""
        from .call.single import call_once

        return await call_once(self, messages, model=model, options=options or {}, cache=cache,
                               stream=stream, on_text=on_text, conversation_id=conversation_id,
                               parent_id=parent_id, state=state)

    def _options(self, options: dict) -> dict:
        return {k: v for k, v in options.items() if v is not None}

    async def aask(self, prompt: str, *, model: str | None = None, system: str | None = None,
                   cache: bool | None = None, attachments=None, **options) -> Response:
        return await self.acall(self._messages(prompt, system, attachments=attachments),
                                model=model, options=self._options(options), cache=cache)

    def ask(self, prompt: str, *, model: str | None = None, system: str | None = None,
            cache: bool | None = None, attachments=None, **options) -> Response:
        """Send one prompt; returns a Response (its row is in the log). `attachments`: images
        or PDFs (paths, bytes, http(s) URLs or PIL images) sent with the prompt."""
        _check_prompt(prompt)
        self.resolve(model, options)  # fail fast on a bad model before touching the loop
        messages = self._messages(prompt, system, attachments=attachments)  # (a bad file too)
        from . import runner

        return runner.run(self.acall(messages, model=model, options=self._options(options),
                                     cache=cache))

    async def astream(self, prompt: str, *, model: str | None = None, system: str | None = None,
                      cache: bool | None = None, attachments=None,
                      **options) -> AsyncIterator[str]:
        _check_prompt(prompt)
        async for chunk in _astream(self, self._messages(prompt, system, attachments=attachments),
                                    model=model, options=self._options(options), cache=cache):
            yield chunk

    def stream(self, prompt: str, *, model: str | None = None, system: str | None = None,
               cache: bool | None = None, attachments=None, **options) -> "Stream":
        """Iterate text chunks as they arrive; `.response` holds the Response afterwards."""
        _check_prompt(prompt)
        self.resolve(model, options)
        return Stream(self, self._messages(prompt, system, attachments=attachments), model=model,
                      options=self._options(options), cache=cache)

    # -- conversations --------------------------------------------------------------------------

    def chat(self, name: str | None = None, *, model: str | None = None,
             system: str | None = None) -> "Conversation":
        """A conversation whose asks send the prior turns. A named one survives kernel restarts."""
        from .conversation import Conversation

        return Conversation.open(self, name=name, model=model, system=system)

    def current(self) -> "Conversation":
        """The conversation that consecutive `%%llm` cells continue."""
        if self._current is None:
            self._current = self.chat()
        return self._current

    def new_conversation(self, **kw) -> "Conversation":
        self._current = self.chat(**kw)
        return self._current

    # -- batch runs (llm_notebook.batch; df.llm.map is built on these) -------------------------

    def batch(self, prompts, **settings):
        """Send many prompts (strings or message lists) concurrently, paced and resumable.

        Returns a BatchResult: a list of replies in input order (None where a row failed) with
        `.info` (job id, counts) and `.errors()`; with `background=True` a Job at once, whose
        `result()` is that BatchResult. Keywords are those of df.llm.map
        (llm_notebook.batch.settings.BatchSettings; any other goes to the model):
        """
        from .batch import api

        run, _ = api.prepare(self, prompts=prompts, keep_answers=False, **settings)
        if run.background:
            return api.submit_background(self, run)
        api.run_sync(run, run.progress)
        api.warn_outcome(run)
        return api.list_result(self, run)

    async def abatch(self, prompts, **settings):
        """`batch()` for async code: runs on the caller's event loop (no progress display
        unless progress= asks for one)."""
        from .batch import api

        settings.setdefault("progress", False)
        if settings.get("background"):
            raise ValueError("abatch() already runs beside your other code; for a Job that runs "
                             "in the background use batch(..., background=True)")
        run, _ = api.prepare(self, prompts=prompts, **settings)
        await api.run_async(run, run.progress)
        api.warn_outcome(run)
        return api.list_result(self, run)

    def jobs(self, limit: int = 50, *, active: bool = False):
        """Recent batch jobs as a DataFrame: status (queued, running, done...), via, rows, done,
        errors, cached, cost; jobs running in this kernel with their live numbers.
        `active=True`: only the queued and running ones."""
        from .batch.jobs import jobs_frame

        return jobs_frame(self, limit=limit, active=active)

    def job(self, job_id: str):
        """One batch job: `.status`, `.progress`, `.wait()`, `.result()`, `.cancel()`,
        `.errors()`, `.export(path)`; a unique id prefix is enough."""
        from .batch.jobs import Job

        return Job(self, job_id)

    # -- reading the log ------------------------------------------------------------------------

    def history(self, search: str | None = None, model: str | None = None, limit: int = 100,
                notebook: str | None = None):
        import pandas as pd

        from .log import HISTORY_COLUMNS

        rows = self.log.history_rows(search=search, model=model, notebook=notebook, limit=limit)
        # Columns even when nothing matched, so `history()[["prompt"]]` works on a fresh log.
        frame = pd.DataFrame(rows, columns=list(HISTORY_COLUMNS))
        frame["ts"] = pd.to_datetime(frame["ts"], unit="s", utc=True)
        return frame

    def usage(self, by: str = "model", *, since=None, until=None, model: str | None = None,
              notebook: str | None = None):
        """Calls, tokens, cost, unpriced calls, error and cache-hit rates and latency percentiles
        per model, day, hour, notebook, conversation or job (see llm_notebook.usage)."""
        from .usage import usage_frame

        return usage_frame(self.log, by=by, since=since, until=until, model=model, notebook=notebook)


def _check_prompt(prompt) -> None:
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a string, got {type(prompt).__name__}")
    if not prompt.strip():
        raise ValueError("the prompt is empty; write something to send")


async def _astream(session: Session, messages: list[dict], **kw) -> AsyncIterator[str]:
    """Run a streamed call as a task and yield its text as it arrives."""
    async for text in stream_texts(
            lambda on_text: session.acall(messages, stream=True, on_text=on_text, **kw)):
        yield text


async def stream_texts(start_call) -> AsyncIterator[str]:
    """Run a streamed call (`start_call(on_text)` returns its coroutine) as a task and yield
    its text as it arrives; leaving early cancels the call (its row says interrupted)."""
    import asyncio

    q: asyncio.Queue = asyncio.Queue()
    done = object()
    task = asyncio.ensure_future(start_call(q.put_nowait))
    task.add_done_callback(lambda _t: q.put_nowait(done))
    try:
        while True:
            item = await q.get()
            if item is done:
                break
            yield item
        task.result()
    finally:
        if not task.done():
            task.cancel()
            try:
                await task
            except BaseException:
                pass


class Stream:
    """A sync iterator over a streamed call running on the background loop."""

    def __init__(self, session: Session, messages: list[dict], **kw):
        from .call.single import CallState

        self._session = session
        self._messages = messages
        self._kw = kw
        self.state = CallState()
        self.response: Response | None = None

    def __iter__(self) -> Iterator[str]:
        import asyncio

        from . import runner

        q: "queue.Queue[tuple[str, Any]]" = queue.Queue()
        holder: dict = {}

        async def call():
            holder["task"] = asyncio.current_task()
            try:
                resp = await self._session.acall(self._messages, stream=True,
                                                 on_text=lambda d: q.put(("delta", d)),
                                                 state=self.state, **self._kw)
                q.put(("end", resp))
            except BaseException as exc:
                q.put(("error", exc))
                if isinstance(exc, asyncio.CancelledError):
                    raise

        loop = runner.loop()
        runner.submit(call())
        finished = False
        try:
            while True:
                try:
                    kind, value = q.get(timeout=0.1)
                except queue.Empty:
                    continue
                if kind == "delta":
                    yield value
                elif kind == "end":
                    self.response = value
                    finished = True
                    return
                else:
                    finished = True
                    self.response = self.state.response
                    raise value
        finally:
            if not finished:
                # Interrupted (Ctrl-C) or abandoned: cancel the call and wait for its log row.
                task = holder.get("task")
                if task is not None:
                    loop.call_soon_threadsafe(task.cancel)
                deadline = time.monotonic() + 2.0
                while time.monotonic() < deadline:
                    try:
                        kind, value = q.get(timeout=0.05)
                    except queue.Empty:
                        continue
                    if kind != "delta":
                        break
                self.response = self.state.response

    @property
    def text(self) -> str:
        return self.response.text if self.response else "".join(self.state.partial)
