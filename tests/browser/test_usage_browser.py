"""The usage panel in a real JupyterLab (headless Chromium): it shows the totals of a seeded
log, a new call updates it live, filters change the numbers, and the CSV downloads."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from llm_notebook.log import Log

from . import helpers

pytestmark = pytest.mark.browser

DAY0 = dt.datetime(2024, 3, 1, tzinfo=dt.timezone.utc).timestamp()
PRICES = {"loop/*": {"input": 1000.0, "output": 2000.0}}


def seed(path) -> list[dict]:
    """Three days of calls on two models (one unpriced), in their own log file."""
    rng = random.Random(8)
    rows = []
    for i in range(300):
        model = "seed/priced" if i % 3 else "seed/unpriced"
        cost = None if model == "seed/unpriced" else round(0.001 * (1 + i % 7), 6)
        rows.append({"ts": DAY0 + rng.uniform(0, 3 * 86400), "model": model, "prompt": f"q{i}",
                     "response": "a", "input_tokens": 10, "output_tokens": 5, "cost": cost,
                     "unpriced": cost is None, "duration_ms": rng.lognormvariate(6, 0.5),
                     "status": "ok" if i % 25 else "error", "cached": i % 10 == 0,
                     "notebook": "seeded.ipynb"})
    Log(str(path)).insert_calls(rows)
    return rows


def total(widget, key: str):
    return widget.locator(f'[data-total="{key}"] .llm-usage-total-value')


def wait_total(page, widget, key: str, text: str) -> None:
    # The panel redraws its totals on every update: look the element up each time.
    page.wait_for_function(
        """([root, key, text]) => {
            const el = root.querySelector(`[data-total="${key}"] .llm-usage-total-value`);
            return !!el && el.textContent === text;
        }""",
        arg=[widget.element_handle(timeout=helpers.KERNEL_TIMEOUT_MS), key, text],
        timeout=helpers.EXECUTE_TIMEOUT_MS)


def usd(amount: float) -> str:
    return f"${amount:.2f}" if amount >= 0.01 else f"${float(f'{amount:.2g}')}"


def test_usage_panel_totals_live_update_filters_and_csv(jupyter_lab, lab_page, loopback, tmp_path,
                                                         request_monitor, shot):
    page = lab_page
    log_file = tmp_path / "usage-log.db"
    rows = seed(log_file)
    n = len(rows)
    cost = sum(r["cost"] or 0 for r in rows)
    helpers.write_notebook(jupyter_lab.root_dir, "usage.ipynb", [
        "import llm_notebook\n"
        "s = llm_notebook.session()\n"
        f"s.config.log_path = {str(log_file)!r}\n"
        f"s.add_endpoint('loop', {loopback.url!r})\n"
        f"s.config.prices = {PRICES!r}\n"
        "panel = llm_notebook.UsagePanel()\n"
        "panel",
        "r = s.ask('one live call please', model='loop/live', max_tokens=5)\nprint(r.cost)",
        "print(len(panel.to_pandas()), panel.model)",
    ])
    panel = helpers.open_notebook(page, "usage.ipynb")
    helpers.run_cell(page, panel, 0)
    widget = helpers.cell_output(panel, 0).locator(".llm-usage")

    # The seeded log's totals.
    wait_total(page, widget, "calls", f"{n:,}")
    assert total(widget, "cost").inner_text() == usd(cost)
    assert widget.locator('[data-total="cost"] .llm-usage-total-note').inner_text() == \
        f"+ {sum(r['unpriced'] for r in rows)} unpriced"
    assert total(widget, "errors").inner_text() == str(sum(r["status"] != "ok" for r in rows))
    assert total(widget, "cached").inner_text() == str(sum(r["cached"] for r in rows))
    figures = widget.locator("figure.llm-usage-chart")
    assert figures.count() == 4
    for i in range(4):
        label = figures.nth(i).locator("svg[role=img]").get_attribute("aria-label")
        assert label and len(label) > 20
    cost_chart = widget.locator(".llm-usage-cost-time svg").get_attribute("aria-label")
    assert cost_chart.startswith("Cost per day over 3 days from 2024-03-01 to 2024-03-03 (UTC)")
    assert widget.locator(".llm-usage-table tbody tr").count() == 2       # two models
    shot("seeded")

    # A call made in the notebook shows up without touching the panel.
    out = helpers.run_cell(page, panel, 1).inner_text().strip()
    live_cost = float(out)
    wait_total(page, widget, "calls", f"{n + 1:,}")
    assert total(widget, "cost").inner_text() == usd(cost + live_cost)
    assert "loop/live" in widget.locator(".llm-usage-by-model").inner_text()
    shot("live")

    # Filters: one model, then one day.
    widget.get_by_label("Model", exact=True).select_option("seed/priced")
    priced = [r for r in rows if r["model"] == "seed/priced"]
    wait_total(page, widget, "calls", f"{len(priced):,}")
    assert total(widget, "cost").inner_text() == usd(cost)
    assert helpers.run_cell(page, panel, 2).inner_text().strip() == "1 seed/priced"
    widget.get_by_label("From (UTC day)").fill("2024-03-02")
    widget.get_by_label("To (UTC day, included)").fill("2024-03-02")
    day2 = [r for r in priced if DAY0 + 86400 <= r["ts"] < DAY0 + 2 * 86400]
    wait_total(page, widget, "calls", f"{len(day2):,}")
    # One day: the time charts switch to hours.
    assert widget.locator(".llm-usage-cost-time figcaption").inner_text() == "Cost per hour"
    shot("filtered")

    # The table as a CSV download.
    with page.expect_download(timeout=helpers.UI_TIMEOUT_MS) as download:
        widget.get_by_role("button", name="Export CSV").click()
    path = download.value.path()
    text = open(path, encoding="utf-8").read()
    assert download.value.suggested_filename == "llm-usage-by-model-2024-03-02-2024-03-02.csv"
    header, line = text.strip().splitlines()
    assert header.startswith("model,calls,") and line.startswith(f"seed/priced,{len(day2)},")

    # The dark theme: the charts follow JupyterLab's colours.
    helpers.set_theme(page, "dark")
    page.wait_for_selector("#jupyterlab-splash", state="detached", timeout=helpers.UI_TIMEOUT_MS)
    fill = page.evaluate(
        "el => getComputedStyle(el).fill",
        widget.locator(".llm-usage-fill-cost").first.element_handle())
    brand = page.evaluate(
        "() => getComputedStyle(document.body).getPropertyValue('--jp-brand-color1').trim()")
    assert fill and brand
    shot("dark")
    helpers.set_theme(page, "light")

    page.console_monitor.assert_not_pwned()
    request_monitor.assert_none_left()
