"""A notebook executed headless (nbclient), or replayed from its recordings, and exported with
`jupyter nbconvert --to html` shows what every widget showed, in Chromium with JavaScript off and
no network: the chat's messages, the grid's answers, the batch run's numbers, the usage totals.
And nothing hostile in them loads or runs."""

from __future__ import annotations

import nbformat
import pytest
from playwright.sync_api import expect

from . import helpers, showcase

pytestmark = pytest.mark.browser

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@pytest.fixture(params=["executed", "replayed"])
def exported(request, tmp_path, loopback, monkeypatch):
    # Without saved widget state, as notebooks meant to be read are saved: with it, nbconvert
    # emits the widget-views (a script tag each) instead of the static HTML beside them.
    # "replayed": recorded against a server of its own, then run again from its recordings in a
    # copy of its folder, with that server stopped and a fresh log (showcase.record_and_replay).
    if request.param == "executed":
        path = showcase.execute(tmp_path / "travelling.ipynb", loopback.url,
                                store_widget_state=False, monkeypatch=monkeypatch)
    else:
        _, path, _ = showcase.record_and_replay(tmp_path, monkeypatch)
    return path, showcase.nbconvert_html(path)


def test_the_saved_outputs_carry_a_snapshot_beside_each_widget(exported):
    path, _ = exported
    nb = nbformat.read(str(path), as_version=4)
    widgets = [o for c in nb.cells for o in c.outputs if WIDGET_VIEW in o.get("data", {})]
    kinds = sorted(o.data["text/html"].split('data-llmnb-snapshot="')[1].split('"')[0] for o in widgets)
    assert kinds == ["batch", "chat", "grid", "picker", "template", "usage"]
    chat = next(o for o in widgets if 'data-llmnb-snapshot="chat"' in o.data["text/html"])
    # The chat was shown before the question was asked: nbclient applied the update.
    assert showcase.EXPECTED["chat_prompt"] in chat.data["text/plain"]
    assert "<strong>Paris</strong> is the capital." in chat.data["text/html"]
    assert "widgets" not in nb.metadata


def test_the_exported_html_shows_every_widget_without_javascript_or_network(exported, browser, request):
    _, html_path = exported
    context = browser.new_context(java_script_enabled=False, viewport={"width": 1280, "height": 900})
    requested: list[str] = []

    def no_network(route):
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            requested.append(route.request.url)
            route.abort()

    context.route("**/*", no_network)
    page = context.new_page()
    try:
        page.goto(html_path.as_uri(), wait_until="load")
        for key in ("magic", "ask", "chat_prompt", "chat_answer", "batch", "template", "picker"):
            expect(page.get_by_text(showcase.EXPECTED[key]).first).to_be_visible()
        for answer in showcase.EXPECTED["grid_answers"]:
            assert page.get_by_text(answer).count() == 2  # one per model
            expect(page.get_by_text(answer).first).to_be_visible()
        expect(page.locator(".llmnb-snap-usage")).to_contain_text("calls")
        expect(page.locator(".llmnb-snap-chat .llmnb-snap-msg strong", has_text="Paris")).to_be_visible()
        helpers.screenshot(page, request.node.nodeid, "no-js")
        # The hostile answer is text: no image, script or javascript: link came out of it.
        chat = page.locator(".llmnb-snap-chat")
        assert chat.locator("img, script, [onerror], a[href^='javascript']").count() == 0
        expect(chat).to_contain_text("[image: map — http://192.0.2.1/map.png]")
        assert not [u for u in requested if "192.0.2.1" in u], requested
    finally:
        context.close()
