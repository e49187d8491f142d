"""The result of one call, as a caller holds it: made from the call's log row (`from_row`)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, asdict

from .errors import ResponseFormatError

_FENCE = re.compile(r"^\s*```[\w+-]*\s*\n(.*?)\n?```\s*$", re.S)


@dataclass
class Response:
    text: str
    model: str
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost: float | None = None            # USD; None when the price is unknown (see `unpriced`)
    unpriced: bool = False
    duration_ms: float | None = None
    ttft_ms: float | None = None         # only for streamed calls
    cached: bool = False
    id: int | None = None                # the call's row in the log
    status: str = "ok"                   # ok | interrupted | incomplete
    conversation_id: str | None = None
    error: str | None = None
    replayed: bool = False               # from the notebook's recordings: nothing sent, free
    extra: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_row(cls, row: dict) -> "Response":
        """The Response of a logged call (a `calls` row, or the row a call was logged as)."""
        return cls(
            text=row.get("response") or "", model=row.get("model") or "",
            input_tokens=row.get("input_tokens"), output_tokens=row.get("output_tokens"),
            cost=row.get("cost"), unpriced=bool(row.get("unpriced")),
            duration_ms=row.get("duration_ms"), ttft_ms=row.get("ttft_ms"),
            cached=bool(row.get("cached")), id=row.get("id"), status=row.get("status") or "ok",
            conversation_id=row.get("conversation_id"), error=row.get("error"),
            replayed=bool(row.get("replayed")))

    def __str__(self) -> str:
        return self.text

    def json(self):
        """Parse the text as JSON (a fenced ```json block is unwrapped first)."""
        text = self.text.strip()
        match = _FENCE.match(text)
        if match:
            text = match.group(1)
        try:
            return json.loads(text)
        except ValueError as exc:
            preview = self.text[:80].replace("\n", " ")
            raise ResponseFormatError(
                f"the response is not valid JSON ({exc.msg} at line {exc.lineno}, column "
                f"{exc.colno}): {preview!r}... Ask for JSON with response_format="
                f"{{'type': 'json_object'}} or a schema") from None

    def footer(self) -> str:
        """One line: model · tokens · cost · time."""
        parts = [self.model]
        if self.input_tokens is not None or self.output_tokens is not None:
            parts.append(f"{self.input_tokens or 0}+{self.output_tokens or 0} tokens")
        if self.cached:
            parts.append("cached")
        elif self.replayed:
            parts.append("replayed")
        if self.cost is not None:
            parts.append(f"${self.cost:.4f}" if self.cost >= 0.0001 or self.cost == 0 else f"${self.cost:.2e}")
        elif self.unpriced:
            parts.append("price unknown")
        if self.duration_ms is not None:
            parts.append(f"{self.duration_ms / 1000:.1f} s")
        if self.status != "ok":
            parts.append(self.status)
        return " · ".join(parts)

    def _repr_html_(self) -> str:
        # LLM text is hostile: shown exactly as `%%llm` shows it, through the one sanitizer
        # (llm_notebook.render). No text/markdown: a front end's own markdown renderer would
        # make live links, images, MathJax and mermaid diagrams of it.
        from . import render

        return render.output_block(render.markdown_to_html(self.text)
                                   + render.footer_html([self.footer()]))

    def to_dict(self) -> dict:
        return asdict(self)
