"""`%%llm` in a real JupyterLab (headless Chromium): the reply streams in, hostile HTML stays text,
and interrupting the kernel keeps the partial reply on screen and in the log."""

from __future__ import annotations

import sqlite3

import pytest

from . import helpers

pytestmark = pytest.mark.browser

WORDS = " ".join(f"word{i}" for i in range(40))
HOSTILE = ("<script>window.__pwned=1</script> <img src=x onerror=\"window.__pwned=2\"> "
           "![beacon](http://192.0.2.1/beacon.png) **bold**")


def _setup_cell(url: str) -> str:
    return ("import llm_notebook\n"
            "%load_ext llm_notebook\n"
            f"llm_notebook.session().add_endpoint('loop', {url!r})")


def _start_cell(page, panel, index: int) -> None:
    """Run cell `index` without waiting for it to finish (run_command would wait)."""
    helpers.select_cell(page, panel, index)
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-cell'); }")


def _streaming_visible(page, panel, index: int, first: str, last: str) -> None:
    """Wait until the output shows `first` while the cell still runs and `last` has not arrived."""
    output = helpers.cell(panel, index)
    page.wait_for_function(
        """([cell, first, last]) => {
            const prompt = (cell.querySelector('.jp-InputArea-prompt')?.textContent || '').trim();
            const out = cell.querySelector('.jp-OutputArea')?.textContent || '';
            return prompt.startsWith('[*]') && out.includes(first) && !out.includes(last);
        }""",
        arg=[output.element_handle(), first, last], timeout=helpers.EXECUTE_TIMEOUT_MS)


def test_magic_streams_and_renders_hostile_html_as_text(jupyter_lab, lab_page, loopback,
                                                        request_monitor, shot):
    loopback.configure(tokens_per_second=8)  # ~6 s for the whole reply
    helpers.write_notebook(jupyter_lab.root_dir, "magic.ipynb", [
        _setup_cell(loopback.url),
        f"%%llm loop/m\nSay it: [[reply:{HOSTILE} {WORDS}]]",
    ])
    panel = helpers.open_notebook(lab_page, "magic.ipynb")
    helpers.run_cell(lab_page, panel, 0)

    _start_cell(lab_page, panel, 1)
    _streaming_visible(lab_page, panel, 1, "word0", "word39")
    shot("streaming")
    helpers._wait_executed(panel, [1], {1: "[*]:"}, helpers.EXECUTE_TIMEOUT_MS)

    output = helpers.cell_output(panel, 1)
    text = output.inner_text()
    assert "<script>window.__pwned=1</script>" in text       # shown as text
    assert '<img src=x onerror="window.__pwned=2">' in text
    assert "[image: beacon — http://192.0.2.1/beacon.png]" in text
    assert "word39" in text and "loop/m ·" in text            # final text and footer
    assert output.locator("strong", has_text="bold").count() == 1  # markdown still renders
    assert output.locator("script, img, iframe").count() == 0
    shot("done")
    lab_page.console_monitor.assert_not_pwned()
    request_monitor.assert_none_left()

    # The saved notebook records which call made the output.
    helpers.save_notebook(lab_page, panel)
    saved = helpers.read_notebook(jupyter_lab.root_dir, "magic.ipynb").cells[1].outputs
    assert len(saved) == 1
    meta = saved[0]["metadata"]["llm_notebook"]
    with sqlite3.connect(str(jupyter_lab.log_path)) as db:
        row = db.execute("SELECT id, model, output_tokens FROM calls WHERE id = ?",
                         (meta["id"],)).fetchone()
    assert row == (meta["id"], "loop/m", meta["output_tokens"]) and "cost" in meta


def test_format_code_adds_a_cell_below(jupyter_lab, lab_page, loopback):
    helpers.write_notebook(jupyter_lab.root_dir, "code.ipynb", [
        _setup_cell(loopback.url),
        "%%llm loop/m -f code\n[[reply:Here:\n```python\nanswer = 6 * 7\n```\ndone]]",
    ])
    panel = helpers.open_notebook(lab_page, "code.ipynb")
    helpers.run_cell(lab_page, panel, 0)
    helpers.run_cell(lab_page, panel, 1)
    lab_page.wait_for_function(
        "(panel) => panel.querySelectorAll('.jp-Notebook .jp-Cell').length === 3",
        arg=panel.element_handle())
    source = lab_page.evaluate(
        """(id) => {
            for (const p of window.jupyterapp.shell.widgets('main')) {
                if (p.id === id) return p.content.model.sharedModel.cells[2].getSource();
            }
        }""", panel.get_attribute("id"))
    assert source == "answer = 6 * 7"


def test_interrupt_keeps_the_partial_reply(jupyter_lab, lab_page, loopback, shot):
    loopback.configure(tokens_per_second=5)  # 40 words: ~8 s if not interrupted
    helpers.write_notebook(jupyter_lab.root_dir, "interrupt.ipynb", [
        _setup_cell(loopback.url),
        f"%%llm loop/m\n[[reply:{WORDS}]]",
        "print('after')",
    ])
    panel = helpers.open_notebook(lab_page, "interrupt.ipynb")
    helpers.run_cell(lab_page, panel, 0)

    _start_cell(lab_page, panel, 1)
    _streaming_visible(lab_page, panel, 1, "word2", "word39")
    helpers.run_command(lab_page, "kernelmenu:interrupt")
    helpers._wait_executed(panel, [1], {1: "[*]:"}, helpers.EXECUTE_TIMEOUT_MS)

    text = helpers.cell_output_text(panel, 1)
    assert "word2" in text and "word39" not in text           # the partial reply stays
    assert "interrupted" in text
    assert "Interrupted: the partial reply is kept" in text   # one line, no traceback
    assert "Traceback" not in text and "KeyboardInterrupt" not in text
    shot()

    with sqlite3.connect(str(jupyter_lab.log_path)) as db:
        status, response = db.execute(
            "SELECT status, response FROM calls ORDER BY id DESC LIMIT 1").fetchone()
    assert status == "interrupted"
    assert response.startswith("word0 word1 word2") and "word39" not in response
    assert response.split()[-1] in text
