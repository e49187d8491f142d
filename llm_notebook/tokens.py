"""Token counts known before a call is sent: one estimate for budgets, pacing and batch estimates.

About four characters a token, over every message's content. The provider's real counts replace
it once the call has answered (prices are always computed from those).
"""

from __future__ import annotations


def estimate_prompt(messages: list[dict]) -> int:
    """Estimated prompt tokens of a request (at least 1)."""
    chars = attached = 0
    for message in messages:
        content = message.get("content")
        if type(content) is str:
            chars += len(content)
        elif type(content) is list:     # content parts: text, and attachments by a fixed guess
            from .attachments import estimated_tokens

            attached += estimated_tokens(content)
        else:
            chars += len(str(content or ""))
    return max(1, chars // 4 + attached)
