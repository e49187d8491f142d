"""The comparison grid in a real JupyterLab (headless Chromium), answers from the loopback server:
a 3 inputs × 2 models grid fills in, a rating click is saved and comes back after a reload and in
a re-created grid, two picked cells show their word diff, the failed-checks filter hides passing
rows, and a hostile output neither runs nor fetches anything."""

from __future__ import annotations

import sqlite3

import pytest

from . import helpers

pytestmark = pytest.mark.browser

HOSTILE = ' <img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
INPUTS = [{"country": "France", "capital": "Paris", "extra": ""},
          {"country": "Japan", "capital": "Tokyo", "extra": ""},
          {"country": "Peru", "capital": "Lima", "extra": HOSTILE}]
COMPARE = ("llm_notebook.compare('Capital of {country}? [[reply:The capital is **{capital}**.{extra}]]',\n"
           "                     ['loop/a', 'loop/b'], inputs=INPUTS,\n"
           "                     checks=[checks.regex('Paris|Lima')])")


def _grid(panel, index: int):
    return helpers.cell_output(panel, index).locator(".llm-grid")


def _wait_filled(page, grid, n: int) -> None:
    page.wait_for_function(
        "([el, n]) => el.querySelectorAll('.llm-grid-cell[data-status=ok]').length === n"
        " && el.dataset.running === 'false'",
        arg=[grid.element_handle(timeout=helpers.KERNEL_TIMEOUT_MS), n],
        timeout=helpers.EXECUTE_TIMEOUT_MS)


def _pressed(grid, index: int, action: str) -> str | None:
    return grid.locator(f'.llm-grid-cell[data-index="{index}"] [data-action="{action}"]').get_attribute("aria-pressed")


def test_grid_fills_rates_diffs_and_filters(jupyter_lab, lab_page, loopback, request_monitor, shot):
    page = lab_page
    loopback.configure(latency=0.5)
    path = "grid.ipynb"
    helpers.write_notebook(jupyter_lab.root_dir, path, [
        "import llm_notebook\n"
        "from llm_notebook import checks\n"
        f"llm_notebook.session().add_endpoint('loop', {loopback.url!r})\n"
        f"INPUTS = {INPUTS!r}\n"
        f"grid = {COMPARE}\n"
        "grid",
        f"again = {COMPARE}\nagain",
    ])
    panel = helpers.open_notebook(page, path)
    helpers.run_cell(page, panel, 0)
    grid = _grid(panel, 0)

    # It fills in: 6 cells, outputs rendered as markdown, checks marked, summaries per column.
    _wait_filled(page, grid, 6)
    assert grid.locator(".llm-grid-body .llm-grid-row").count() == 3
    assert grid.locator(".llm-grid-colhead").count() == 2
    first = grid.locator('.llm-grid-cell[data-index="0"]')
    assert first.locator("strong").inner_text() == "Paris"
    assert first.locator(".llm-grid-mark.llm-grid-pass").count() == 1
    assert grid.locator('.llm-grid-cell[data-index="2"] .llm-grid-mark.llm-grid-fail').count() == 1
    assert "pass 67% (2/3)" in grid.locator(".llm-grid-summary").first.inner_text()
    assert "6/6 done" in grid.locator(".llm-grid-status").inner_text()
    peru = grid.locator('.llm-grid-cell[data-index="4"]')
    assert "[image: no description]" in peru.inner_text()   # the sanitizer's placeholder
    assert grid.locator(".llm-grid-body img, .llm-grid-body script").count() == 0
    shot("filled")

    # A thumbs-up is saved in the log under the cell's request.
    grid.locator('.llm-grid-cell[data-index="0"] [data-action="up"]').click()
    # (the cell is redrawn when the kernel confirms: wait on a selector, not on the old button)
    grid.locator('.llm-grid-cell[data-index="0"] [data-action="up"][aria-pressed="true"]').wait_for()
    with sqlite3.connect(str(jupyter_lab.log_path)) as db:
        saved = db.execute("SELECT thumb, model, output FROM ratings").fetchall()
    assert saved == [(1, "loop/a", "The capital is **Paris**.")]

    # Two picked cells: the word diff of their outputs.
    grid.locator('.llm-grid-cell[data-index="0"] [data-action="pick"]').click()
    grid.locator('.llm-grid-cell[data-index="2"] [data-action="pick"]').click()
    diff = grid.locator(".llm-grid-diff")
    diff.wait_for()
    assert diff.locator("del").all_inner_texts() == ["**Paris**."]
    assert diff.locator("ins").all_inner_texts() == ["**Tokyo**."]
    assert "1 word(s) removed, 1 added" in grid.locator(".llm-grid-diffstats").inner_text()
    shot("diff")

    # The failed-checks filter hides the rows whose cells all pass (France, Peru).
    grid.locator('select[aria-label="Filter rows"]').select_option("failed")
    page.wait_for_function(
        "el => el.querySelectorAll('.llm-grid-body .llm-grid-row').length === 1",
        arg=grid.element_handle(), timeout=helpers.UI_TIMEOUT_MS)
    assert "Japan" in grid.locator(".llm-grid-body .llm-grid-rowlabel").inner_text()
    assert grid.locator('.llm-grid-cell[data-index="0"]').count() == 0
    shot("failed-filter")
    grid.locator('select[aria-label="Filter rows"]').select_option("all")

    # After a reload the widget asks the kernel again: the rating is still there.
    helpers.save_notebook(page, panel)
    page.reload(wait_until="domcontentloaded")
    helpers.wait_for_lab(page)
    panel = helpers.open_notebook(page, path)
    grid = _grid(panel, 0)
    _wait_filled(page, grid, 6)
    assert _pressed(grid, 0, "up") == "true"

    # A grid re-created over the same prompts, models and inputs finds it in the log, and its
    # cells come from the cache.
    requests_before = loopback.stats()["requests"]
    helpers.run_cell(page, panel, 1)
    again = _grid(panel, 1)
    _wait_filled(page, again, 6)
    assert _pressed(again, 0, "up") == "true" and _pressed(again, 1, "up") == "false"
    assert "6 cached" in again.locator(".llm-grid-status").inner_text()
    assert loopback.stats()["requests"] == requests_before
    again.scroll_into_view_if_needed()
    shot("reloaded")

    page.console_monitor.assert_not_pwned()
    request_monitor.assert_none_left()
