"""`llm_notebook.Chat()`: a chat inside a cell, backed by a conversation in the log.

The log is the widget's memory: what the browser shows comes from a `state` request answered
from the log (never from saved widget state), so a reloaded page or a re-created `Chat(name=...)`
shows the same history. Answers stream as custom messages (widgets/streaming.py); a turn's
final text, tokens and cost come with the next `state`.

Branches. A turn is one call row (prompt + answer) whose `parent_id` is the turn before it.
Editing a prompt or regenerating an answer asks again from that turn's parent, which makes a
sibling of the turn: a new branch. All branches stay in the widget's one conversation (its head
is the branch on screen), rather than in `Conversation.fork()` copies: a fork is a new
conversation row, so re-creating `Chat(name=...)` would lose the branch the user was on, and
`branches()` cannot find an edited *first* prompt in another conversation.

Messages to the front-end, besides responses and streams:
    {"type": "chat.changed"}     the log changed (a turn ended, a branch was switched): re-read state
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import traitlets

from ..session import _check_prompt
from ._base import SETTLE_SECONDS, LLMWidget, rpc
from .picker import PickerHandlers, _session
from .snapshot import Snapshot, chat_snapshot

__all__ = ["Chat"]

# Turn fields the front-end gets (the row has more: messages, options, cache key...).
_TURN_FIELDS = ("id", "parent_id", "prompt", "response", "status", "error", "model",
                "input_tokens", "output_tokens", "cost", "unpriced", "cached", "duration_ms",
                "ttft_ms", "ts", "replayed")


# The error line of a stream the user stopped (js/src/widgets/chat.ts shows no error for it).
STOPPED = "Stopped."


class _Head:
    """Marker: continue from the branch on screen."""


HEAD = _Head()


class ChatBusy(RuntimeError):
    """A reply is still streaming; the chat takes one message at a time."""


class Chat(PickerHandlers, LLMWidget):
    """A chat UI in a cell: streaming answers, stop, edit, regenerate, branches, search, export.

        chat = llm_notebook.Chat(name="ideas")      # a named chat continues across kernels
        chat                                         # show it
        chat.ask("Give me three names for a cat")    # or type into it
        chat.to_markdown(), chat.to_json(), chat.export("chat.md")

    Extra keyword arguments (temperature=, max_tokens=, ...) go with every call.
    """

    _bundle = "chat"

    model = traitlets.Unicode("", help="Model of the next message ('' = the session's default).").tag(sync=True)
    system = traitlets.Unicode("", help="System prompt of the conversation.").tag(sync=True)
    name = traitlets.Unicode(None, allow_none=True, help="The conversation's name, if any.").tag(sync=True)
    conversation_id = traitlets.Unicode("", help="The conversation's id in the log.").tag(sync=True)
    busy = traitlets.Bool(False, help="True while a reply is streaming.").tag(sync=True)

    def __init__(self, model: str | None = None, system: str | None = None, name: str | None = None,
                 **options: Any) -> None:
        from ..conversation import Conversation

        session = _session()
        options = {k: v for k, v in options.items() if v is not None}
        if model is not None:
            session.resolve(model, options)  # a typo fails here, not at the first message
        conversation = Conversation.open(session, name=name, model=model, system=system)
        super().__init__(model=conversation.model or session.default_model(),
                         system=conversation.system or "", name=conversation.name,
                         conversation_id=conversation.id)
        self.conversation = conversation
        # Sent with every call and never synced to the browser (it may hold an api_key).
        self._options = options
        self._lock = threading.Lock()
        self._active: dict | None = None       # the exchange streaming now
        self._active_task: asyncio.Task | None = None
        self._stop_requested = False

    def __repr__(self) -> str:
        label = f"name={self.name!r}" if self.name else f"id={self.conversation_id[:8]}"
        return f"<Chat {label} model={self.model!r} turns={len(self.conversation.turns())}>"

    @traitlets.observe("model", "system")
    def _settings_changed(self, change) -> None:
        # Before __init__ has opened the conversation, the traits are being set from it.
        if getattr(self, "conversation", None) is not None:
            setattr(self.conversation, change["name"], change["new"] or None)

    # -- Python API ------------------------------------------------------------------------------

    def ask(self, prompt: str, *, wait: bool = True):
        """Sends a message as if typed, streaming the answer into the widget.

        wait=True blocks until the answer is complete and returns its Response (interrupt the
        kernel to stop it; the Stop button needs an idle kernel); wait=False returns at once with
        a concurrent.futures.Future of it. (Not `send`: that is the widget's message method.)
        """
        _check_prompt(prompt)
        return self._run_settled(self._exchange(prompt, HEAD), wait)

    def stop(self) -> bool:
        """Stops the answer that is streaming (it is logged as 'interrupted' with its text so far).
        Returns False when nothing was streaming."""
        with self._lock:
            task = self._active_task
            if task is None or task.done():
                return False
            self._stop_requested = True
        task.get_loop().call_soon_threadsafe(task.cancel)
        return True

    def _run_settled(self, exchange, wait: bool):
        """Runs an exchange from Python; waiting, returns once the outputs show its turn."""
        if not wait:
            return _run(exchange, False)
        try:
            return _run(exchange, True)
        finally:
            self.flush_snapshot()

    def turns(self) -> list[dict]:
        """The turns of the branch on screen, oldest first, with their branch position."""
        return [self._turn(row) for row in self.conversation.turns()]

    def regenerate(self, turn_id: int | None = None, *, wait: bool = True):
        """Asks the prompt of `turn_id` (default: the last turn) again: a new branch."""
        turn = self._own_turn(turn_id)
        # Never from the cache: a regenerated answer is meant to be a new one.
        return self._run_settled(self._exchange(turn["prompt"] or "", turn["parent_id"], cache=False), wait)

    def edit(self, turn_id: int, prompt: str, *, wait: bool = True):
        """Replaces the prompt of `turn_id` and asks it: a new branch from that turn's parent."""
        _check_prompt(prompt)
        turn = self._own_turn(turn_id)
        return self._run_settled(self._exchange(prompt, turn["parent_id"]), wait)

    def switch(self, turn_id: int) -> list[dict]:
        """Shows the branch through `turn_id` (down to its latest reply); returns its turns."""
        self._switch(turn_id)
        self.flush_snapshot()
        return self.turns()

    def to_markdown(self) -> str:
        """The branch on screen as markdown: prompts, answers and their footers."""
        title = self.name or f"chat {self.conversation_id[:8]}"
        lines = [f"# {title}", ""]
        if self.system:
            lines += ["**System:**", "", self.system, ""]
        for turn in self.turns():
            lines += ["**You:**", "", turn["prompt"] or "", ""]
            lines += [f"**Assistant** ({turn['footer']}):", "", turn["response"] or "", ""]
        return "\n".join(lines).rstrip() + "\n"

    def to_json(self) -> str:
        """The branch on screen as JSON: the conversation and its messages with their numbers."""
        messages: list[dict] = []
        if self.system:
            messages.append({"role": "system", "content": self.system})
        for turn in self.turns():
            messages.append({"role": "user", "content": turn["prompt"] or "", "id": turn["id"]})
            messages.append({"role": "assistant", "content": turn["response"] or "", "id": turn["id"],
                             **{k: turn[k] for k in ("model", "status", "input_tokens", "output_tokens",
                                                     "cost", "duration_ms")}})
        doc = {"conversation": {"id": self.conversation_id, "name": self.name, "model": self.model,
                                "system": self.system or None},
               "exported": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "messages": messages}
        return json.dumps(doc, ensure_ascii=False, indent=2)

    def export(self, path: str | Path) -> Path:
        """Writes the branch on screen to `path`: JSON for *.json, markdown otherwise."""
        path = Path(path)
        text = self.to_json() if path.suffix.lower() == ".json" else self.to_markdown()
        path.write_text(text, encoding="utf-8")
        return path

    # -- requests from the front-end -------------------------------------------------------------

    @rpc
    def state(self) -> dict:
        with self._lock:
            active = dict(self._active) if self._active else None
        if active is not None:
            active["text"] = self.streams.text(active["stream_id"])
        return {"conversation": {"id": self.conversation_id, "name": self.name, "system": self.system},
                "turns": self.turns(), "busy": active is not None, "active": active}

    @rpc("send")
    async def _rpc_send(self, prompt: str, attachments: list | None = None) -> dict:
        _check_prompt(prompt)
        return self._turn_of(await self._exchange(prompt, HEAD,
                                                  attachments=_uploads(attachments)))

    @rpc("edit")
    async def _rpc_edit(self, turn_id: int, prompt: str) -> dict:
        _check_prompt(prompt)
        turn = self._own_turn(turn_id)
        return self._turn_of(await self._exchange(prompt, turn["parent_id"]))

    @rpc("regenerate")
    async def _rpc_regenerate(self, turn_id: int) -> dict:
        turn = self._own_turn(turn_id)
        return self._turn_of(await self._exchange(turn["prompt"] or "", turn["parent_id"], cache=False))

    @rpc("stop")
    def _rpc_stop(self) -> bool:
        return self.stop()

    @rpc("switch")
    def _rpc_switch(self, turn_id: int) -> dict:
        self._switch(turn_id)
        return self.state()

    @rpc("export")
    def _rpc_export(self, format: str = "markdown") -> dict:
        stem = (self.name or f"chat-{self.conversation_id[:8]}").replace("/", "_")
        if format == "json":
            return {"filename": f"{stem}.json", "mime": "application/json", "text": self.to_json()}
        if format == "markdown":
            return {"filename": f"{stem}.md", "mime": "text/markdown", "text": self.to_markdown()}
        raise ValueError(f"export format must be 'markdown' or 'json', not {format!r}")

    # -- the exchange ----------------------------------------------------------------------------

    async def _exchange(self, prompt: str, parent: int | None | _Head, *, cache: bool | None = None,
                        attachments: list | None = None):
        """Asks `prompt` after `parent` (HEAD: the branch on screen), streaming the answer.

        Runs on the runner's loop. Returns the Response; a stop from the user returns the
        interrupted one, any other cancellation (kernel interrupt) propagates.
        """
        conversation = self.conversation
        with self._lock:
            if self._active is not None:
                raise ChatBusy("a reply is still streaming: stop it (Esc) or wait for it")
            previous_head = conversation.head_id
            parent_id = previous_head if isinstance(parent, _Head) else parent
            model = self.model or None
            stream_id = self.streams.start(meta={"prompt": prompt, "parent_id": parent_id,
                                                 "model": model or ""})
            self._active = {"stream_id": stream_id, "prompt": prompt, "parent_id": parent_id,
                            "model": model or ""}
            self._active_task = asyncio.current_task()
            self._stop_requested = False
        self.busy = True
        conversation.head_id = parent_id
        stopped = False
        try:
            try:
                async for chunk in conversation.astream(prompt, model=model, cache=cache,
                                                        attachments=attachments, **self._options):
                    self.streams.push(chunk, stream_id)
            except asyncio.CancelledError:
                stopped = self._stop_requested
                self._fail(stream_id, STOPPED, previous_head, parent_id)
                if not stopped:
                    raise
            except BaseException as exc:
                self._fail(stream_id, exc, previous_head, parent_id)
                raise
            finally:
                with self._lock:
                    self._active = None
                    self._active_task = None
                    self._stop_requested = False
            row = self._new_row(parent_id)
            if stopped:
                # The user's stop: the call logged an 'interrupted' row with the text so far
                # (none if it had not begun). Swallowing the cancellation ends this handler
                # normally, so the front-end's request gets that turn as its answer.
                return _response_of(row) if row else None
            self.streams.finish(row["response"] or "", meta=self._turn(row), stream_id=stream_id)
            self._changed()
            return _response_of(row)
        finally:
            self.busy = False
            # The turn has settled: that is what a saved notebook shows (the Python API
            # flushes this before it returns).
            self.refresh_snapshot(delay=SETTLE_SECONDS)

    def _fail(self, stream_id: str, error: Any, previous_head: int | None, parent_id: int | None) -> None:
        # The call logged its row: an interrupted one (with the partial text) becomes the head;
        # after an error the branch on screen is the one before the message.
        row = self._new_row(parent_id)
        if row is None or row["status"] == "error":
            self.conversation.head_id = previous_head
        self.streams.fail(error, stream_id=stream_id)
        self._changed()

    def _new_row(self, parent_id: int | None) -> dict | None:
        """The row the exchange left as head, if it moved the head past `parent_id`."""
        head = self.conversation.head_id
        if head is None or head == parent_id:
            return None
        return self._log.call(head)

    def _changed(self) -> None:
        try:
            self.send({"type": "chat.changed"})
        except Exception:  # the front-end is gone; the log has everything
            pass

    def _build_snapshot(self) -> Snapshot:
        return chat_snapshot(self.name, self.system, self.turns())

    # -- turns and branches ----------------------------------------------------------------------

    @property
    def _log(self):
        return self.conversation.session.log

    def _siblings(self, row: dict) -> list[int]:
        """Ids of the branches at this turn: answers to the same history in this conversation."""
        try:
            rows = self.conversation.branches(row["id"])
        except KeyError:
            return [row["id"]]
        ids = [r["id"] for r in rows
               if r["conversation_id"] == self.conversation_id and r["status"] != "error"]
        return ids if row["id"] in ids else sorted(ids + [row["id"]])

    def _turn(self, row: dict) -> dict:
        turn = {k: row.get(k) for k in _TURN_FIELDS}
        turn["unpriced"] = bool(turn["unpriced"])
        turn["cached"] = bool(turn["cached"])
        turn["replayed"] = bool(turn["replayed"])
        siblings = self._siblings(row)
        turn["branch"] = {"index": siblings.index(row["id"]), "ids": siblings}
        turn["footer"] = _response_of(row).footer()
        return turn

    def _turn_of(self, response) -> dict | None:
        """The turn a Response belongs to (None when a stop came before the call began)."""
        row = self._log.call(response.id) if response is not None and response.id is not None else None
        return self._turn(row) if row else None

    def _own_turn(self, turn_id: int | None) -> dict:
        if turn_id is None:
            turns = self.conversation.turns()
            if not turns:
                raise ValueError("the chat is empty: send a message first")
            return turns[-1]
        row = self._log.call(int(turn_id))
        if row is None or row["conversation_id"] != self.conversation_id:
            raise ValueError(f"message {turn_id} is not part of this chat")
        return row

    def _switch(self, turn_id: int) -> None:
        with self._lock:
            if self._active is not None:
                raise ChatBusy("a reply is still streaming: stop it (Esc) before switching branches")
        row = self._own_turn(turn_id)
        if row["status"] == "error":
            raise ValueError(f"message {turn_id} failed; it has no branch to show")
        # Down to the latest reply of that branch, so switching back and forth keeps its end.
        leaf = row["id"]
        while True:
            children = [c["id"] for c in self._log.children(leaf)
                        if c["conversation_id"] == self.conversation_id and c["status"] != "error"]
            if not children:
                break
            leaf = max(children)
        self.conversation.head_id = leaf
        self._log.set_head(self.conversation_id, leaf)
        self._changed()
        self.refresh_snapshot(delay=SETTLE_SECONDS)


def _run(coro, wait: bool):
    """Runs an exchange from Python: to completion (Ctrl-C cancels it), or in the background."""
    from .. import runner

    return runner.run(coro) if wait else runner.submit(coro)


def _response_of(row: dict):
    from ..response import Response

    return Response.from_row(row)


def _uploads(items: list | None) -> list:
    """The files the attach button uploaded ({"name", "data": base64}), as attachments (checked
    like any other: type by content, size capped; an upload is a file the user picked)."""
    import base64
    import binascii

    from ..attachments import MAX_BYTES, MAX_PER_MESSAGE, from_upload
    from ..errors import AttachmentError

    if not items:
        return []
    if not isinstance(items, list) or len(items) > MAX_PER_MESSAGE:
        raise AttachmentError(f"attach at most {MAX_PER_MESSAGE} files to one message")
    found = []
    for item in items:
        data = item.get("data") if isinstance(item, dict) else None
        if not isinstance(data, str) or len(data) > MAX_BYTES * 4 // 3 + 8:
            raise AttachmentError("an attached file is missing or larger than "
                                  f"{MAX_BYTES // 1_000_000} MB")
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise AttachmentError("an attached file did not arrive whole; attach it again") from None
        found.append(from_upload(str(item.get("name") or ""), raw))
    return found
