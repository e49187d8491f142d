"""Token counts known before a call is sent: one estimate for budgets, pacing and batch estimates.

About four characters a token, over every message's content. The provider's real counts replace
it once the call has answered (prices are always computed from those).
"""

from __future__ import annotations


def estimate_prompt(messages: list[dict]) -> int:
    """Estimated prompt tokens of a request (at least 1)."""
    chars = 0
    for message in messages:
        content = message.get("content")
        chars += len(content) if type(content) is str else len(str(content or ""))
    return max(1, chars // 4)
