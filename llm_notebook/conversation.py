"""Conversations: chains of calls in the log, linked by parent_id, with branches.

A conversation row holds a name and its head (latest call). Its history is the chain of calls
from the head back to the root, so it survives kernel restarts. `fork(message_id)` starts a new
branch whose history ends at that message; editing or regenerating a message forks at its
parent.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from .response import Response

if TYPE_CHECKING:
    from .session import Session, Stream


class Conversation:
    def __init__(self, session: "Session", conv_id: str, *, name: str | None, head_id: int | None,
                 model: str | None, system: str | None):
        self.session = session
        self.id = conv_id
        self.name = name
        self.head_id = head_id
        self.model = model
        self.system = system

    @classmethod
    def open(cls, session: "Session", *, name: str | None = None, model: str | None = None,
             system: str | None = None) -> "Conversation":
        log = session.log
        if name is not None:
            row = log.conversation(name=name)
            if row is not None:
                conv = cls(session, row["id"], name=name, head_id=row["head_id"],
                           model=model or row["model"], system=system or row["system"])
                return conv
        conv_id = uuid.uuid4().hex
        try:
            log.create_conversation(conv_id, name=name, model=model, system=system)
        except Exception:
            # Another kernel created the same name a moment ago: use theirs.
            row = log.conversation(name=name) if name else None
            if row is None:
                raise
            return cls(session, row["id"], name=name, head_id=row["head_id"],
                       model=model or row["model"], system=system or row["system"])
        return cls(session, conv_id, name=name, head_id=None, model=model, system=system)

    @classmethod
    def by_id(cls, session: "Session", conv_id: str) -> "Conversation":
        row = session.log.conversation(conv_id=conv_id)
        if row is None:
            raise KeyError(f"no conversation {conv_id!r} in the log")
        return cls(session, row["id"], name=row["name"], head_id=row["head_id"],
                   model=row["model"], system=row["system"])

    def __repr__(self) -> str:
        label = f"name={self.name!r}" if self.name else f"id={self.id[:8]}"
        return f"<Conversation {label} turns={len(self.turns())}>"

    # -- reading ----------------------------------------------------------------------------------

    def turns(self) -> list[dict]:
        """The calls of this branch, oldest first (each has prompt, response, id, model...)."""
        return self.session.log.thread(self.head_id)

    def messages(self) -> list[dict]:
        """The chat messages this branch would send as history."""
        out: list[dict] = []
        for turn in self.turns():
            if turn["status"] == "error":
                continue
            out.append({"role": "user", "content": turn["prompt"] or "", "id": turn["id"]})
            out.append({"role": "assistant", "content": turn["response"] or "", "id": turn["id"]})
        return out

    def branches(self, message_id: int) -> list[dict]:
        """The alternatives to a message: calls answering the same history (siblings)."""
        call = self.session.log.call(message_id)
        if call is None:
            raise KeyError(f"no message {message_id} in the log")
        if call["parent_id"] is None:
            conv_ids = [call["conversation_id"]] + self.session.log.root_siblings(call["conversation_id"])
            return self.session.log.children(None, conv_ids)
        return self.session.log.children(call["parent_id"])

    # -- writing ----------------------------------------------------------------------------------

    def _history(self) -> list[dict]:
        return [{"role": m["role"], "content": m["content"]} for m in self.messages()]

    def _kwargs(self, model, options):
        return {"model": model or self.model, "options": self.session._options(options)}

    def _advance(self, response: Response | None) -> None:
        if response is not None and response.id is not None and response.status != "error":
            self.head_id = response.id
            self.session.log.set_head(self.id, self.head_id)

    async def aask(self, prompt: str, *, model: str | None = None, system: str | None = None,
                   cache: bool | None = None, attachments=None, **options) -> Response:
        from .call.single import CallState

        messages = self.session._messages(prompt, system or self.system, self._history(),
                                          attachments=attachments)
        state = CallState()
        try:
            return await self.session.acall(messages, cache=cache, conversation_id=self.id,
                                            parent_id=self.head_id, state=state,
                                            **self._kwargs(model, options))
        finally:
            self._advance(state.response)

    def ask(self, prompt: str, *, model: str | None = None, system: str | None = None,
            cache: bool | None = None, attachments=None, **options) -> Response:
        """Ask the next turn. `attachments`: images or PDFs sent with this prompt (later turns
        see their names: attach a file again to ask about it again)."""
        from . import runner
        from .attachments import load_all
        from .session import _check_prompt

        _check_prompt(prompt)
        self.session.resolve(model or self.model, options)
        loaded = load_all(attachments)       # a bad file fails here, before the loop
        return runner.run(self.aask(prompt, model=model, system=system, cache=cache,
                                    attachments=loaded, **options))

    def stream(self, prompt: str, *, model: str | None = None, system: str | None = None,
               cache: bool | None = None, attachments=None, **options) -> "Stream":
        from .session import Stream, _check_prompt

        _check_prompt(prompt)
        self.session.resolve(model or self.model, options)
        messages = self.session._messages(prompt, system or self.system, self._history(),
                                          attachments=attachments)
        return _ConversationStream(self, self.session, messages, cache=cache,
                                   conversation_id=self.id, parent_id=self.head_id,
                                   **self._kwargs(model, options))

    async def astream(self, prompt: str, *, model: str | None = None, system: str | None = None,
                      cache: bool | None = None, attachments=None, **options):
        from .call.single import CallState
        from .session import _check_prompt, stream_texts

        _check_prompt(prompt)
        messages = self.session._messages(prompt, system or self.system, self._history(),
                                          attachments=attachments)
        state = CallState()
        try:
            async for text in stream_texts(lambda on_text: self.session.acall(
                    messages, cache=cache, stream=True, on_text=on_text, conversation_id=self.id,
                    parent_id=self.head_id, state=state, **self._kwargs(model, options))):
                yield text
        finally:
            self._advance(state.response)

    def fork(self, message_id: int | None, *, name: str | None = None) -> "Conversation":
        """A new branch whose history ends at `message_id` (None: an empty branch)."""
        if message_id is not None and self.session.log.call(message_id) is None:
            raise KeyError(f"no message {message_id} in the log")
        conv_id = uuid.uuid4().hex
        self.session.log.create_conversation(conv_id, name=name, head_id=message_id,
                                             forked_from=message_id, model=self.model,
                                             system=self.system)
        return Conversation(self.session, conv_id, name=name, head_id=message_id,
                            model=self.model, system=self.system)


class _ConversationStream:
    """A Stream that moves the conversation's head when it ends (even if interrupted)."""

    def __init__(self, conversation: Conversation, session, messages, **kw):
        from .session import Stream

        self._conversation = conversation
        self._stream = Stream(session, messages, **kw)

    def __iter__(self):
        try:
            yield from self._stream
        finally:
            self._conversation._advance(self._stream.response)

    @property
    def response(self):
        return self._stream.response

    @property
    def state(self):
        return self._stream.state

    @property
    def text(self) -> str:
        return self._stream.text
