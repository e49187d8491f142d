"""Inputs built to make parsers slow or huge, shared by the reliability suites and benchmarks.

- `ALIAS_BOMB`: a 407-byte llm template whose defaults are nine levels of nine YAML aliases
  (9^9 = 387,420,489 values once expanded).
- `FENCE_SHAPES`: line patterns that, repeated to 1 MB, made a backtracking fence matcher (the
  old `-f code` extractor) take minutes or hours; `fence_reply(shape, size)` builds one.
"""

from __future__ import annotations

ALIAS_BOMB = "\n".join(
    ['prompt: "$a $b $c $d $e $f $g $h $i"', "defaults:",
     '  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [f"  {c}: &{c} [{','.join(['*' + p] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi")]
    + [""])

FENCE_SHAPES = {
    "unclosed fences with info": "```x\n",
    "tilde openers, backtick lines": "~~~\n```x\n",
    "tiny non-Python blocks": "```j\n```\n",
    "indented openers": " ```py\n",
    "info strings with backticks": "```a`\n",
    "one opener, long body": "```\n" + "x" * 999 + "\n",
}


def fence_reply(shape: str, size: int = 1_000_000) -> str:
    """The shape's line pattern repeated to about `size` characters."""
    unit = FENCE_SHAPES.get(shape, shape)
    return unit * (size // len(unit))
