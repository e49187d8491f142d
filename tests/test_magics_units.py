"""The magic's helpers on their own: interpolation of values, code extraction, throttle, -f html."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from llm_notebook.interpolate import describe_value, frame_summary, interpolate
from llm_notebook.magics.output import Throttle, extract_code, final_bundle
from llm_notebook.magics.safe_html import sanitize_html
from llm_notebook.placeholders import MissingVariableError, PlaceholderLookupError

pd = pytest.importorskip("pandas")


# -- interpolation ----------------------------------------------------------------------------------

def test_interpolate_strings_lists_and_literal_braces():
    ns = {"name": "Ada", "items": ["a", "b"], "d": {"k": 3}}
    assert interpolate("{name} {items[1]} {d['k']} {{x}}", ns) == "Ada b 3 {x}"
    assert interpolate("no placeholders {{}}", {}) == "no placeholders {}"


def test_unknown_name_suggests_visible_names_only():
    with pytest.raises(MissingVariableError) as err:
        interpolate("{nme}", {"name": 1, "get_ipython": 2, "_private": 3}, hidden={"get_ipython"})
    message = str(err.value)
    assert "'nme'" in message and "did you mean 'name'" in message and "{{" in message
    assert "get_ipython" not in message and "_private" not in message


def test_missing_out_entry_is_a_clear_error():
    with pytest.raises(PlaceholderLookupError, match="no key 7"):
        interpolate("{Out[7]}", {"Out": {3: "x"}})


def test_frame_summary_caps_rows_and_chars():
    df = pd.DataFrame({"city": [f"c{i}" for i in range(100)], "n": range(100)})
    text = frame_summary(df, "df", max_rows=5, max_chars=4000)
    lines = text.splitlines()
    assert lines[0] == "DataFrame `df`: 100 rows × 2 columns"
    assert lines[1].startswith("Columns: city (") and "n (int64)" in lines[1]
    assert "First 5 of 100 rows:" in text
    assert sum(line.startswith("| c") and not line.startswith("| city") for line in lines) == 5
    small = frame_summary(df, "df", max_rows=50, max_chars=400)
    assert len(small) <= 400 and "First " in small


def test_frame_summary_cells_are_one_line_and_clipped():
    df = pd.DataFrame({"text": ["line one\nline two | pipe", "x" * 500]})
    text = frame_summary(df, "df")
    assert "line one line two \\| pipe" in text
    assert "x" * 79 + "…" in text and "x" * 81 not in text
    assert "All rows:" in text


def test_frame_summary_shows_a_meaningful_index_and_handles_empty():
    df = pd.DataFrame({"v": [1, 2]}, index=pd.Index(["a", "b"], name="key"))
    text = frame_summary(df, "df")
    assert "| key | v |" in text and "| a | 1 |" in text
    assert frame_summary(pd.DataFrame({"v": []}), "e").startswith("DataFrame `e`: 0 rows × 1 columns")


def test_series_and_other_values():
    s = pd.Series([1.5, 2.5], name="price")
    assert "| price |" in describe_value("s", s) and "Series" not in describe_value("s", s)[:9]
    assert describe_value("x", 42) == "42" and describe_value("x", "raw") == "raw"


def test_interpolation_does_not_import_pandas():
    import llm_notebook

    root = os.path.dirname(os.path.dirname(os.path.abspath(llm_notebook.__file__)))
    code = ("import sys; from llm_notebook.interpolate import interpolate; "
            "print(interpolate('{a} {b[0]}', {'a': 1, 'b': [2]}), 'pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/tmp",
                         env=dict(os.environ, PYTHONPATH=root), check=True).stdout
    assert out.split() == ["1", "2", "False"]


# -- -f code ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("reply, code", [
    ("```python\nx = 1\n```", "x = 1"),
    ("Sure:\n```bash\npip install x\n```\nthen\n```py\nimport x\n```", "import x"),
    ("```js\nlet a\n```", "let a"),
    ("~~~\nplain = True\n~~~", "plain = True"),
    ("x = 2\n", "x = 2"),
    ("```python\nprint('```')\n```", "print('```')"),
])
def test_extract_code(reply, code):
    assert extract_code(reply) == code


# -- throttle --------------------------------------------------------------------------------------

def test_throttle_allows_at_most_n_per_second():
    now = [0.0]
    throttle = Throttle(20, clock=lambda: now[0])
    fired = 0
    for _ in range(1000):  # 1000 deltas over one simulated second
        if throttle.ready():
            throttle.done()
            fired += 1
        now[0] += 0.001
    assert fired == 20
    throttle.done(extra_wait=0.5)  # a slow render pushes the next update further out
    now[0] += 0.1
    assert not throttle.ready()


# -- -f html ----------------------------------------------------------------------------------------

def test_sanitize_html_keeps_structure_and_drops_everything_active():
    dirty = ('<h2 onclick="x()">T</h2><script>alert(1)</script><style>p{color:red}</style>'
             '<img src="http://evil/p.png"><a href="javascript:alert(1)">bad</a>'
             '<a href="https://example.com" onmouseover="y()">good</a><iframe src="x"></iframe>'
             '<table><tr><td colspan="2" style="background:url(http://evil)">c</td></tr></table>'
             '<form action="http://evil"><input name="q"></form><svg><circle/></svg>')
    clean = sanitize_html(dirty)
    assert "<h2>T</h2>" in clean and '<td colspan="2">c</td>' in clean
    assert '<a href="https://example.com" target="_blank" rel="noopener noreferrer">good</a>' in clean
    for bad in ("script", "alert", "style", "color:red", "img", "evil", "javascript", "iframe",
                "onclick", "onmouseover", "form", "input", "svg"):
        assert bad not in clean, (bad, clean)


def test_final_bundles_escape_plain_text():
    bundle = final_bundle("<b>x</b>", "text", "m · 1 s")
    assert bundle["text/plain"] == "<b>x</b>\n\nm · 1 s"
    assert "&lt;b&gt;x&lt;/b&gt;" in bundle["text/html"] and "<b>" not in bundle["text/html"]
    bundle = final_bundle('{"a": "<x>"}', "json", "f", value={"a": "<x>"})
    assert '"a": "&lt;x&gt;"' in bundle["text/html"] or "&quot;a&quot;: &quot;&lt;x&gt;&quot;" in bundle["text/html"]


def test_live_display_is_linear_in_the_reply_and_throttled(ipshell):
    import time

    from IPython.utils.capture import capture_output

    from llm_notebook.magics.output import LiveDisplay

    with capture_output() as cap:
        live = LiveDisplay("m", "text", max_per_second=20)
        started = time.perf_counter()
        for _ in range(50_000):  # a 500 kB reply in 10-character deltas
            live.add("0123456789")
        elapsed = time.perf_counter() - started
        live.finish(live.text, "footer")
    assert len(live.text) == 500_000
    assert elapsed < 3.0, elapsed  # `text += delta` would copy ~12 GB here
    partial = sum(1 for o in cap._outputs if o["update"]) - 1
    assert 1 <= partial <= 20 * elapsed + 1
