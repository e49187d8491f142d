"""The harness itself works: a real lab opens a notebook, runs a cell, shows its output."""

import pytest

from . import helpers

pytestmark = pytest.mark.browser


def test_run_cell_shows_output(jupyter_lab, lab_page, request_monitor, shot):
    helpers.write_notebook(jupyter_lab.root_dir, "smoke.ipynb", ["print(1+1)"])
    panel = helpers.open_notebook(lab_page, "smoke.ipynb")

    output = helpers.run_cell(lab_page, panel, 0)

    assert output.inner_text().strip() == "2"
    shot()
    request_monitor.assert_none_left()
    lab_page.console_monitor.assert_not_pwned()


def test_kernels_use_this_checkout_and_the_test_log(jupyter_lab, lab_page):
    helpers.write_notebook(jupyter_lab.root_dir, "env.ipynb", [
        "import os, llm_notebook",
        "print(os.environ['LLM_NOTEBOOK_LOG'])",
        "print(llm_notebook.__file__)",
    ])
    panel = helpers.open_notebook(lab_page, "env.ipynb")

    helpers.run_all(lab_page, panel)

    assert helpers.cell_output_text(panel, 1).strip() == str(jupyter_lab.log_path)
    assert helpers.cell_output_text(panel, 2).strip() == str(
        helpers.REPO_ROOT / "llm_notebook" / "__init__.py")


def test_extensions_of_the_python_prefix_still_load(lab_page):
    # JUPYTER_CONFIG_DIR/JUPYTER_DATA_DIR are isolated per run; the extensions installed in the
    # Python prefix (ipywidgets' manager, used by every widget) must still be there.
    plugins = lab_page.evaluate("() => window.jupyterapp.listPlugins()")
    assert "@jupyter-widgets/jupyterlab-manager:plugin" in plugins


def test_monitors_catch_dialogs_and_external_requests(jupyter_lab, lab_page, request_monitor):
    # The detectors the hostile-output suites rely on must themselves detect: an alert, a
    # __pwned flag and a request to another host are all reported.
    lab_page.evaluate("() => { window.__pwned = 1; alert('x'); }")
    lab_page.evaluate("() => { const i = new Image(); i.src = 'http://192.0.2.1/beacon.png'; "
                      "document.body.appendChild(i); }")
    lab_page.wait_for_function(
        "() => performance.getEntriesByType('resource').some(e => e.name.includes('192.0.2.1'))")

    monitor = lab_page.console_monitor
    assert monitor.dialogs == [("alert", "x")]
    assert monitor.pwned_frames() == [lab_page.url]
    assert request_monitor.external == ["http://192.0.2.1/beacon.png"]
    with pytest.raises(AssertionError):
        monitor.assert_not_pwned()
    with pytest.raises(AssertionError):
        request_monitor.assert_none_left()


def test_theme_switch(lab_page):
    helpers.set_theme(lab_page, "dark")
    assert lab_page.evaluate("document.body.dataset.jpThemeLight") == "false"
    helpers.set_theme(lab_page, "light")
    assert lab_page.evaluate("document.body.dataset.jpThemeLight") == "true"
