"""The chat widget in a real JupyterLab (headless Chromium), answers from the loopback server:
it streams (text visible while Stop is enabled), stops, regenerates and edits into branches,
comes back from the log after a reload, and hostile answers run and fetch nothing."""

from __future__ import annotations

import sqlite3
import uuid

import pytest
from playwright.sync_api import expect

from . import helpers

pytestmark = pytest.mark.browser


def _set_theme(page, theme: str) -> None:
    """Switch the theme and wait for the splash JupyterLab shows meanwhile to go (screenshots)."""
    helpers.set_theme(page, theme)
    page.wait_for_selector("#jupyterlab-splash", state="detached", timeout=helpers.UI_TIMEOUT_MS)

WORDS = " ".join(f"word{i}" for i in range(40))
HOSTILE = ("<script>window.__pwned=1</script>\n\n<img src=x onerror=\"window.__pwned=2\">\n\n"
           "[click me](javascript:window.__pwned=3)\n\n![beacon](http://192.0.2.1/beacon.png)\n\n**bold**")


def _chat_notebook(root, name: str, url: str, chat_name: str, extra_cells=()) -> str:
    helpers.write_notebook(root, name, [
        "import llm_notebook\n"
        f"llm_notebook.session().add_endpoint('loop', {url!r})\n"
        f"chat = llm_notebook.Chat(model='loop/m', name={chat_name!r})\n"
        "chat",
        *extra_cells,
    ])
    return name


def _widget(panel, index: int = 0):
    return helpers.cell_output(panel, index).locator(".llm-chat")


def _last_call(jupyter_lab) -> tuple[str, str]:
    with sqlite3.connect(str(jupyter_lab.log_path)) as db:
        return db.execute("SELECT status, response FROM calls ORDER BY id DESC LIMIT 1").fetchone()


def test_chat_streams_stops_branches_and_comes_back_after_a_reload(jupyter_lab, lab_page, loopback, shot):
    page = lab_page
    chat_name = f"browser-{uuid.uuid4().hex[:8]}"
    path = _chat_notebook(jupyter_lab.root_dir, "chat.ipynb", loopback.url, chat_name,
                          [f"llm_notebook.Chat(name={chat_name!r})"])
    panel = helpers.open_notebook(page, path)
    helpers.run_cell(page, panel, 0)
    chat = _widget(panel)
    box = chat.locator("textarea.llm-chat-input")
    stop = chat.locator("button.llm-chat-stop")
    box.wait_for()
    assert box.get_attribute("aria-label") == "Message"
    chat.get_by_text("No messages yet").wait_for()  # the (empty) state came from the kernel

    # Shift+Enter adds a line (and neither sends nor runs the cell); Enter sends.
    loopback.configure(tokens_per_second=5)  # 40 words: ~8 s unless stopped
    box.click()
    box.type("Count for me")
    box.press("Shift+Enter")
    box.type(f"[[reply:{WORDS}]]")
    assert box.input_value() == f"Count for me\n[[reply:{WORDS}]]"
    assert chat.locator(".llm-chat-turn").count() == 0
    box.press("Enter")

    live = chat.locator(".llm-chat-live .llm-chat-assistant .llm-chat-body")
    page.wait_for_function(
        """([body, stop]) => body && body.textContent.includes('word2')
                             && !body.textContent.includes('word39') && !stop.disabled""",
        arg=[live.element_handle(timeout=helpers.UI_TIMEOUT_MS), stop.element_handle()],
        timeout=helpers.EXECUTE_TIMEOUT_MS)
    assert box.input_value() == ""
    shot("streaming")

    # Esc stops: the call is cancelled in the kernel and logged as interrupted.
    box.press("Escape")
    first = chat.locator(".llm-chat-turn:not(.llm-chat-live)").first
    first.locator(".llm-chat-footer", has_text="interrupted").wait_for()
    assert stop.is_disabled()
    partial = first.locator(".llm-chat-assistant .llm-chat-body").inner_text()
    assert "word2" in partial and "word39" not in partial
    assert first.get_by_text("Stopped before the end.").count() == 1
    status, response = _last_call(jupyter_lab)
    assert status == "interrupted" and response.startswith("word0 word1 word2") and "word39" not in response

    # Regenerate: a second branch of the first message, answered in full this time.
    loopback.configure(tokens_per_second=0)
    first.get_by_role("button", name="Regenerate answer 1 (a new branch)").click()
    branches = chat.locator(".llm-chat-branches")
    branches.get_by_text("2/2").wait_for()
    assert "word39" in chat.locator(".llm-chat-assistant .llm-chat-body").first.inner_text()
    assert branches.get_attribute("aria-label") == "Branch 2 of 2"
    assert _last_call(jupyter_lab)[0] == "ok"

    # Edit the message: a third branch, with the edited prompt.
    chat.get_by_role("button", name="Edit message 1 and send it again (a new branch)").click()
    editor = chat.locator("textarea.llm-chat-edit")
    expect(editor).to_be_focused()
    editor.fill("Edited [[reply:an edited answer]]")
    editor.press("Enter")
    branches.get_by_text("3/3").wait_for()
    assert chat.locator(".llm-chat-assistant .llm-chat-body").first.inner_text().strip() == "an edited answer"

    # ◀ goes back to the second branch; the focus stays on ◀ for the next press.
    prev = chat.get_by_role("button", name="Previous branch of message 1")
    prev.click()
    branches.get_by_text("2/3").wait_for()
    expect(chat.locator("[data-focus='t0-prev']")).to_be_focused()
    shot("branches")

    # A reload: the widget asks the kernel, which reads the log.
    helpers.save_notebook(page, panel)
    page.reload(wait_until="domcontentloaded")
    helpers.wait_for_lab(page)
    panel = helpers.open_notebook(page, path)
    chat = _widget(panel)
    chat.locator(".llm-chat-branches", has_text="2/3").wait_for(timeout=helpers.KERNEL_TIMEOUT_MS)
    assert "word39" in chat.locator(".llm-chat-assistant .llm-chat-body").first.inner_text()
    assert "Count for me" in chat.locator(".llm-chat-user .llm-chat-body").first.inner_text()

    # A re-created widget (same name) shows the same conversation.
    helpers.run_cell(page, panel, 1)
    again = _widget(panel, 1)
    again.locator(".llm-chat-branches", has_text="2/3").wait_for()

    _set_theme(page, "dark")
    shot("dark")
    _set_theme(page, "light")
    shot("light")
    page.console_monitor.assert_not_pwned()


def test_hostile_messages_run_nothing_and_fetch_nothing(jupyter_lab, lab_page, loopback, request_monitor, shot):
    page = lab_page
    path = _chat_notebook(jupyter_lab.root_dir, "hostile-chat.ipynb", loopback.url,
                          f"hostile-{uuid.uuid4().hex[:8]}")
    panel = helpers.open_notebook(page, path)
    helpers.run_cell(page, panel, 0)
    chat = _widget(panel)
    box = chat.locator("textarea.llm-chat-input")
    box.wait_for()

    # The prompt is hostile too: both sides of the conversation are rendered.
    box.fill(f"{HOSTILE}\n\n[[reply:{HOSTILE}]]")
    box.press("Enter")
    turn = chat.locator(".llm-chat-turn:not(.llm-chat-live)").first
    turn.locator(".llm-chat-footer", has_text="loop/m ·").wait_for()

    for side in ("user", "assistant"):
        body = turn.locator(f".llm-chat-{side} .llm-chat-body")
        assert body.locator("strong", has_text="bold").count() >= 1  # markdown still renders
        assert body.locator("script, img, iframe, object, embed").count() == 0
        assert body.locator("[onerror]").count() == 0
        links = body.locator("a", has_text="click me")
        assert links.count() >= 1
        for i in range(links.count()):
            assert links.nth(i).get_attribute("href") is None
        links.first.click()
        assert "http://192.0.2.1/beacon.png" in body.inner_text()  # the blocked image, as text
    assert chat.locator("script, img").count() == 0
    shot()

    # Searching and exporting the hostile text keeps it text.
    chat.get_by_role("button", name="Search this conversation").click()
    chat.get_by_role("searchbox").fill("beacon")
    assert chat.locator("mark.llm-chat-hit").count() >= 2
    with page.expect_download() as download:
        chat.get_by_role("button", name="Export the conversation as markdown").click()
    exported = download.value.path().read_text()
    assert "<script>window.__pwned=1</script>" in exported

    page.console_monitor.assert_not_pwned()
    request_monitor.assert_none_left()


def test_attach_button_uploads_a_picture_with_the_next_message(jupyter_lab, lab_page, loopback, tmp_path, shot):
    import base64

    picture = base64.b64decode(  # a 1×1 PNG
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")
    upload = tmp_path / "dot.png"
    upload.write_bytes(picture)
    page = lab_page
    path = _chat_notebook(jupyter_lab.root_dir, "attach.ipynb", loopback.url,
                          f"attach-{uuid.uuid4().hex[:8]}")
    panel = helpers.open_notebook(page, path)
    helpers.run_cell(page, panel, 0)
    chat = _widget(panel)
    chat.get_by_text("No messages yet").wait_for()
    with page.expect_file_chooser() as chooser:
        chat.get_by_role("button", name="Attach").click()
    chooser.value.set_files(str(upload))
    chat.locator(".llm-chat-attached", has_text="Attached: dot.png").wait_for()
    box = chat.locator("textarea.llm-chat-input")
    box.click()
    box.type("What is this?")
    box.press("Enter")
    chat.locator(".llm-chat-turn:not(.llm-chat-live) .llm-chat-footer").first.wait_for(
        timeout=helpers.EXECUTE_TIMEOUT_MS)
    assert chat.locator(".llm-chat-attached").inner_text() == ""      # sent with that message only
    sent = [r for r in loopback.requests() if r["path"].endswith("/chat/completions")][-1]
    parts = sent["body"]["messages"][-1]["content"]
    assert parts[0] == {"type": "text", "text": "What is this?"}
    assert parts[1]["image_url"]["url"] == "data:image/png;base64," + base64.b64encode(picture).decode()
    shown = chat.locator(".llm-chat-user").first.inner_text()
    assert "[attached: dot.png (image/png" in shown
    shot("attached")
