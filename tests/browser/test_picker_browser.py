"""The model picker in a real JupyterLab (headless Chromium): it lists local/smollm2, is driven
by the keyboard, tests a connection while the kernel stays free, and sets the session default."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from . import helpers

pytestmark = pytest.mark.browser


def _set_theme(page, theme: str) -> None:
    """Switch the theme and wait for the splash JupyterLab shows meanwhile to go (screenshots)."""
    helpers.set_theme(page, theme)
    page.wait_for_selector("#jupyterlab-splash", state="detached", timeout=helpers.UI_TIMEOUT_MS)


def test_picker_lists_models_and_is_keyboard_driven(jupyter_lab, lab_page, loopback, request_monitor, shot):
    page = lab_page
    helpers.write_notebook(jupyter_lab.root_dir, "picker.ipynb", [
        "import llm_notebook\n"
        f"llm_notebook.session().add_endpoint('loop', {loopback.url!r})\n"
        "picker = llm_notebook.ModelPicker()\n"
        "picker",
        "print(picker.value)",
        "print(llm_notebook.session().default_model())",
    ])
    panel = helpers.open_notebook(page, "picker.ipynb")
    helpers.run_cell(page, panel, 0)
    picker = helpers.cell_output(panel, 0).locator(".llm-picker-widget")

    # The embedded model comes first, chosen (no key anywhere: it is the default), in a group.
    smol = picker.locator('[role="option"][data-model="local/smollm2"]')
    smol.wait_for(timeout=helpers.KERNEL_TIMEOUT_MS)
    assert smol.get_attribute("aria-selected") == "true"
    assert "no key needed" in smol.inner_text() and "2k ctx" in smol.inner_text()
    first_group = picker.locator('[role="listbox"] [role="group"]').first
    title_id = first_group.get_attribute("aria-labelledby")
    assert picker.locator(f'[id="{title_id}"]').inner_text() == "Embedded model (no key needed)"
    # The endpoint's models as its server lists them.
    assert picker.locator('[role="option"][data-model="loop/loopback-model"]').count() == 1
    more = picker.locator(".llm-picker-more").inner_text()
    assert more.endswith("more: type to narrow the list")  # thousands, drawn a page at a time
    shot("light")

    # Keyboard: type to filter, arrows move the active option, Enter chooses.
    search = picker.get_by_role("combobox", name="Search models")
    search.click()
    search.type("gpt-4o-mini")
    # The lab's kernels get no provider keys (see helpers.LabServer.environment).
    mini = picker.locator('[role="option"][data-model="openai/gpt-4o-mini"]').inner_text()
    assert "no key" in mini and "128k ctx" in mini and "per 1M" in mini
    first = picker.locator('[role="option"]').first
    assert search.get_attribute("aria-activedescendant") == first.get_attribute("id")
    search.press("ArrowDown")
    second = picker.locator('[role="option"]').nth(1)
    assert search.get_attribute("aria-activedescendant") == second.get_attribute("id")
    search.press("ArrowUp")
    chosen_id = first.get_attribute("data-model")
    search.press("Enter")
    picker.locator(".llm-picker-value", has_text=chosen_id).wait_for()
    assert "gpt-4o-mini" in chosen_id
    assert helpers.run_cell(page, panel, 1).inner_text().strip() == chosen_id

    # A model id of one's own, on the loopback endpoint.
    search.fill("loop/my-model")
    option = picker.locator('[role="option"]').first
    assert option.inner_text().startswith("Use “loop/my-model”")
    search.press("Enter")
    picker.locator(".llm-picker-value", has_text="loop/my-model").wait_for()

    # Test connection runs off the kernel's thread: a cell runs while the test is still waiting.
    loopback.configure(latency=6)
    picker.get_by_role("button", name="Test connection: send a tiny prompt to the chosen model").click()
    result = picker.locator(".llm-picker-result")
    result.get_by_text("Testing loop/my-model").wait_for()
    assert helpers.run_cell(page, panel, 1).inner_text().strip() == "loop/my-model"
    assert "Testing" in result.inner_text()  # the cell finished first
    result.get_by_text("loop/my-model answered in").wait_for(timeout=helpers.EXECUTE_TIMEOUT_MS)

    # Use as default sets the session's default model.
    picker.get_by_role("button", name="Use the chosen model as the session's default").click()
    result.get_by_text("loop/my-model is now the session's default model.").wait_for()
    assert helpers.run_cell(page, panel, 2).inner_text().strip() == "loop/my-model"
    assert picker.locator(".llm-badge", has_text="default").count() == 1

    _set_theme(page, "dark")
    shot("dark")
    _set_theme(page, "light")
    page.console_monitor.assert_not_pwned()
    request_monitor.assert_none_left()


def test_the_chat_embeds_the_picker_to_switch_models(jupyter_lab, lab_page, loopback):
    page = lab_page
    helpers.write_notebook(jupyter_lab.root_dir, "chat-picker.ipynb", [
        "import llm_notebook\n"
        f"llm_notebook.session().add_endpoint('loop', {loopback.url!r})\n"
        "chat = llm_notebook.Chat(model='loop/first')\n"
        "chat",
        "print(chat.model)",
    ])
    panel = helpers.open_notebook(page, "chat-picker.ipynb")
    helpers.run_cell(page, panel, 0)
    chat = helpers.cell_output(panel, 0).locator(".llm-chat")
    toggle = chat.locator(".llm-picker-toggle")
    toggle.wait_for()
    assert toggle.get_attribute("aria-expanded") == "false"
    assert toggle.inner_text().startswith("loop/first")

    toggle.click()
    search = chat.get_by_role("combobox", name="Search models")
    expect(search).to_be_focused()
    chat.locator('[role="option"][data-model="local/smollm2"]').wait_for()
    search.press("Escape")
    assert toggle.get_attribute("aria-expanded") == "false"
    expect(toggle).to_be_focused()

    toggle.press("Enter")
    search.type("loop/second")
    search.press("Enter")
    expect(toggle).to_be_focused()
    assert toggle.inner_text().startswith("loop/second")
    assert helpers.run_cell(page, panel, 1).inner_text().strip() == "loop/second"

    box = chat.locator("textarea.llm-chat-input")
    box.fill("which model?")
    box.press("Enter")
    chat.locator(".llm-chat-footer", has_text="loop/second ·").wait_for()
