"""Suite 9 — hostile output in the browser.

One corpus (script tags, event handlers, javascript: and data: links, remote images in markdown
and HTML, CSS background images, a stylesheet, forms, SVG with script, iframes, objects, meta
refresh, a 5,000-character line) answered by the loopback and shown by every surface in a real
JupyterLab in Chromium: the `%%llm` output, Chat, the comparison grid, the TemplateEditor (its
preview and its run), ModelPicker and UsagePanel (hostile alias and model names), and the
sidebar; then a 1 MB answer in `%%llm` and in Chat. Passing: no script runs (no `window.__pwned`
in any frame, no dialog), no request leaves 127.0.0.1, no active element survives, and the
text is there to read.
"""

from __future__ import annotations

import pytest

from browser import helpers

from ..helpers import record_page_safety

SUITE = "9 hostile output in the browser"
pytestmark = pytest.mark.browser

CORPUS = "\n\n".join([
    "CORPUSBEGIN **bold words**",
    "<script>window.__pwned=1</script>",
    '<img src=x onerror="window.__pwned=2">',
    "[js link](javascript:window.__pwned=3)",
    "[data link](data:text/html;base64,PHNjcmlwdD53aW5kb3cuX19wd25lZD00PC9zY3JpcHQ+)",
    "![remote markdown image](http://192.0.2.1/md.png)",
    '<img src="http://192.0.2.1/html.png" alt="remote html image">',
    '<div style="background-image:url(http://192.0.2.1/css.png)">css background</div>',
    "<style>* { background: url(http://192.0.2.1/style.png) }</style>",
    '<form action="http://192.0.2.1/form"><input name="q" value="x"><button>send form</button></form>',
    '<svg xmlns="http://www.w3.org/2000/svg" onload="window.__pwned=5"><script>window.__pwned=6'
    '</script><image href="http://192.0.2.1/svg.png"/></svg>',
    '<iframe src="javascript:window.__pwned=7"></iframe>',
    '<object data="http://192.0.2.1/object"></object><embed src="http://192.0.2.1/embed">',
    '<link rel="stylesheet" href="http://192.0.2.1/x.css">',
    '<meta http-equiv="refresh" content="0;url=http://192.0.2.1/meta">',
    '<a href="http://192.0.2.1/click" onclick="window.__pwned=8">click me</a>',
    '<details open ontoggle="window.__pwned=9">toggle</details>',
    '<math><mtext><table><mglyph><style><img src=x onerror="window.__pwned=10">',
    "L" * 5000 + " longline",
    "CORPUSEND",
])
BIG = "bigword " * 130_000 + "BIGEND"          # ~1 MB
HOSTILE_NAME = 'evil<img src=x onerror="window.__pwned=11">'
HOSTILE_MODEL = 'loop/model<img src=x onerror="window.__pwned=12">'

# What no surface may keep from the corpus (a widget's own chrome may use svg/style elsewhere).
ACTIVE = ("script, iframe, object, embed, form, link[rel=stylesheet], meta, "
          "img[src^='http'], img[src='x'], image, "
          "a[href^='javascript'], a[href^='data'], [onerror], [onload], [onclick], [ontoggle], "
          "[style*='url(']")


def _notebook(root, url: str) -> str:
    helpers.write_notebook(root, "hostile.ipynb", [
        "%load_ext llm_notebook\n"
        "import llm_notebook\n"
        "s = llm_notebook.session()\n"
        f"s.add_endpoint('loop', {url!r})\n"
        f"s.alias({HOSTILE_NAME!r}, 'loop/m')\n"
        f"s.ask('a call under a hostile model name', model={HOSTILE_MODEL!r})\n"
        "s.templates.save('hostile', '{x}')",
        "%%llm loop/m\nGive me the corpus",                                        # 1
        "chat = llm_notebook.Chat(model='loop/m')\nchat",                         # 2
        "chat.ask('corpus please').status",                                       # 3
        "grid = llm_notebook.compare('Say {x}', ['loop/a', 'loop/b'], inputs=[{'x': 'one'}])\n"
        "grid",                                                                   # 4
        "editor = llm_notebook.TemplateEditor('hostile', models=['loop/a'])\neditor",  # 5
        "llm_notebook.ModelPicker()",                                             # 6
        "llm_notebook.UsagePanel()",                                              # 7
        "%%llm loop/m\nNow a very long answer",                                   # 8
        "chat.ask('a very long answer').status",                                  # 9
    ])
    return "hostile.ipynb"


def _visible_text(locator) -> str:
    """The text a user sees: scrolled into view first, then read as rendered (innerText)."""
    locator.first.scroll_into_view_if_needed()
    return locator.first.inner_text()


def _active(locator) -> list[str]:
    return locator.locator(ACTIVE).evaluate_all("els => els.map(e => e.outerHTML.slice(0, 120))")


def test_the_corpus_runs_nothing_and_fetches_nothing_anywhere(jupyter_lab, lab_page, loopback,
                                                              request_monitor, shot, record):
    page = lab_page
    loopback.configure(reply=CORPUS)
    panel = helpers.open_notebook(page, _notebook(jupyter_lab.root_dir, loopback.url))
    for index in range(8):
        helpers.run_cell(page, panel, index)
    problems: dict[str, list] = {}
    surfaces = {
        "%%llm output": helpers.cell_output(panel, 1),
        "chat": helpers.cell_output(panel, 2).locator(".llm-chat"),
        "grid": helpers.cell_output(panel, 4).locator(".llm-grid"),
        "template editor": helpers.cell_output(panel, 5).locator(".llm-te"),
        "model picker": helpers.cell_output(panel, 6),
        "usage panel": helpers.cell_output(panel, 7),
    }
    # Everything is drawn before it is judged.
    helpers.wait_text(surfaces["%%llm output"], "CORPUSEND")
    helpers.wait_text(surfaces["chat"].locator(".llm-chat-turn:not(.llm-chat-live)"), "CORPUSEND")
    page.wait_for_function(
        "el => el.querySelectorAll('.llm-grid-cell[data-status=ok]').length === 2",
        arg=surfaces["grid"].element_handle(timeout=helpers.KERNEL_TIMEOUT_MS),
        timeout=helpers.EXECUTE_TIMEOUT_MS)
    helpers.wait_text(surfaces["grid"], "CORPUSEND")

    # The TemplateEditor: the corpus as a variable (its preview), then a run (its answer).
    editor = surfaces["template editor"]
    editor.locator('.llm-te-var[data-variable="x"] textarea').fill(CORPUS)
    helpers.wait_text(editor.locator(".llm-te-preview-body"), "CORPUSEND")
    editor.locator(".llm-te-prompt .cm-content").click()
    page.keyboard.press("Control+Enter")
    helpers.wait_text(editor.locator(".llm-te-result-body"), "CORPUSEND")

    helpers.wait_text(surfaces["model picker"], "evil<img")
    surfaces["usage panel"].locator(".llm-usage").wait_for(state="attached")

    # The sidebar lists every call, hostile prompts, answers and model names included.
    page.locator('.jp-SideBar.jp-mod-left [data-id="llm-notebook-sidebar"]').click()
    sidebar = page.locator("#llm-notebook-sidebar")
    helpers.wait_text(sidebar, "CORPUSBEGIN")
    surfaces["sidebar"] = sidebar

    for name, surface in surfaces.items():
        found = _active(surface)
        if found:
            problems[name] = found
    text = {name: _visible_text(surface) for name, surface in surfaces.items()}
    for name in ("%%llm output", "chat", "grid", "template editor"):
        for visible in ("CORPUSBEGIN", "bold words", "click me", "css background", "send form",
                        "longline", "CORPUSEND"):
            if visible not in text[name]:
                problems.setdefault(name, []).append(f"text {visible!r} not shown")
    for name, visible in (("model picker", 'evil<img src=x onerror="window.__pwned=11">'),
                          ("usage panel", "model<img src=x"), ("sidebar", "CORPUSBEGIN"),
                          ("sidebar", "<script>window.__pwned=1</script>")):
        if visible not in text[name]:
            problems.setdefault(name, []).append(f"text {visible!r} not shown")
    shot("corpus")

    # A 1 MB answer: shown whole (its last word too), still inert.
    loopback.configure(reply=BIG)
    helpers.run_cell(page, panel, 8)
    helpers.run_cell(page, panel, 9, timeout=120_000)
    helpers.wait_text(helpers.cell_output(panel, 8), "BIGEND")
    helpers.wait_text(surfaces["chat"].locator(".llm-chat-turn:not(.llm-chat-live)").last, "BIGEND")
    big_surfaces = {"%%llm 1 MB": helpers.cell_output(panel, 8), "chat 1 MB": surfaces["chat"]}
    for name, where in big_surfaces.items():
        if _active(where):
            problems[name] = _active(where)
    big_ok = helpers.cell_output_text(panel, 9).strip().endswith("'ok'")
    shot("one-megabyte")

    for name in [*surfaces, *big_surfaces]:
        record.check(f"{name}: nothing active, the text shown", name not in problems)
    pwned, dialogs, external = record_page_safety(record, page, request_monitor)
    record.note(f"a {len(CORPUS.split(chr(10) * 2))}-item corpus in {len(surfaces)} surfaces "
                "(%%llm, Chat, grid, TemplateEditor preview+run, ModelPicker, UsagePanel, sidebar) "
                f"and {len(BIG) / 1e6:.1f} MB answers in {len(big_surfaces)}: "
                f"{len(problems)} surfaces kept something active or hid text; "
                f"__pwned set in {len(pwned)} frames, {len(dialogs)} dialogs, "
                f"{len(external)} requests off 127.0.0.1")

    assert big_ok
    page.console_monitor.assert_not_pwned()
    request_monitor.assert_none_left()
    assert problems == {}, problems
