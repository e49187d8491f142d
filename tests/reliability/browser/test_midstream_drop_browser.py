"""Suite 3 — mid-stream drop.

The loopback drops the connection in the middle of an answer (after 5 tokens of a stream, or
before the body of a batch call) for a `%%llm` cell, a Chat message and a comparison-grid cell,
in a real JupyterLab. Passing: the widget shows an error state with the partial text; the log
row is `incomplete` with exactly that partial text (an `error` for the grid's non-streamed
call); nothing unfinished is cached; and a re-run (the cell again, Regenerate, `grid.rerun()`)
completes the answer.
"""

from __future__ import annotations

import sqlite3

import pytest

from browser import helpers

SUITE = "3 mid-stream drop"
pytestmark = pytest.mark.browser

STORY = " ".join(f"s{i}" for i in range(40))
PARTIAL = "s0 s1 s2 s3 s4 "          # the 5 tokens sent before the drop


def _rows(jupyter_lab, where: str) -> list[dict]:
    with sqlite3.connect(str(jupyter_lab.log_path)) as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute(
            "SELECT calls.id, prompt, status, error_kind, calls.response, cache.key AS cached_as "
            "FROM calls LEFT JOIN cache ON cache.call_id = calls.id "
            f"WHERE {where} ORDER BY calls.id")]


def _text(locator) -> str:
    return locator.evaluate("el => el.textContent")


def test_dropped_answers_show_an_error_keep_their_part_and_complete_on_rerun(
        jupyter_lab, lab_page, loopback, shot, record):
    page = lab_page
    loopback.script([
        {"kind": "drop_mid_stream", "match": "magic story", "after_tokens": 5, "times": 1},
        {"kind": "drop_mid_stream", "match": "chat story", "after_tokens": 5, "times": 1},
        {"kind": "drop_mid_stream", "match": "grid story 2", "times": 1},
    ])
    helpers.write_notebook(jupyter_lab.root_dir, "drop.ipynb", [
        "%load_ext llm_notebook\n"
        "import llm_notebook\n"
        "s = llm_notebook.session()\n"
        f"s.add_endpoint('loop', {loopback.url!r})\n"
        "s.config.max_retries = 0",
        f"%%llm loop/m\nTell me the magic story [[reply:{STORY}]]",
        "chat = llm_notebook.Chat(model='loop/m')\nchat",
        f"grid = llm_notebook.compare('Tell me grid story {{n}} [[reply:{STORY}]]', ['loop/a'],\n"
        "                            inputs=[{'n': 1}, {'n': 2}])\ngrid",
        "grid.rerun().wait(60)\nprint(sorted(c['status'] for c in grid.state()['cells']))",
    ])
    panel = helpers.open_notebook(page, "drop.ipynb")
    helpers.run_cell(page, panel, 0)

    # %%llm: the partial answer stays on screen, marked; the cell says what happened.
    with record.trial("%%llm: error state with its part, row incomplete, re-run completes"):
        helpers.run_cell(page, panel, 1)
        out = helpers.cell_output(panel, 1)
        page.wait_for_function("el => el.textContent.includes('UsageError')",
                               arg=out.element_handle(), timeout=helpers.EXECUTE_TIMEOUT_MS)
        shown = _text(out)
        assert "s4" in shown and "s39" not in shown and "incomplete" in shown, shown[:500]
        magic = _rows(jupyter_lab, "prompt LIKE '%magic story%'")
        assert [(r["status"], r["error_kind"], r["response"]) for r in magic] == \
            [("incomplete", "incomplete", PARTIAL)]
        # Run again: the answer is completed.
        helpers.run_cell(page, panel, 1)
        page.wait_for_function("el => el.textContent.includes('s39')", arg=out.element_handle(),
                               timeout=helpers.EXECUTE_TIMEOUT_MS)
        assert [r["status"] for r in _rows(jupyter_lab, "prompt LIKE '%magic story%'")] == \
            ["incomplete", "ok"]

    # Chat: the cut answer is a turn with its part and an error note; Regenerate completes it.
    with record.trial("Chat: a cut turn with its part and an error note, Regenerate completes"):
        helpers.run_cell(page, panel, 2)
        chat = helpers.cell_output(panel, 2).locator(".llm-chat")
        box = chat.locator("textarea.llm-chat-input")
        box.fill(f"Tell me the chat story [[reply:{STORY}]]")
        box.press("Enter")
        cut = chat.locator(".llm-chat-turn.llm-status-incomplete")
        cut.wait_for(timeout=helpers.EXECUTE_TIMEOUT_MS)
        body = _text(cut.locator(".llm-chat-assistant .llm-chat-body"))
        assert body.strip() == PARTIAL.strip(), body
        assert cut.locator(".llm-chat-note.llm-error").count() == 1
        shot("chat-cut")
        cut.get_by_role("button", name="Regenerate answer 1 (a new branch)").click()
        chat.locator(".llm-chat-branches", has_text="2/2").wait_for(timeout=helpers.EXECUTE_TIMEOUT_MS)
        done = chat.locator(".llm-chat-turn.llm-status-ok .llm-chat-assistant .llm-chat-body")
        assert _text(done).strip() == STORY
        chats = _rows(jupyter_lab, "prompt LIKE '%chat story%'")
        assert [(r["status"], r["response"]) for r in chats] == [("incomplete", PARTIAL), ("ok", STORY)]

    # The grid: the dropped cell is an error cell; rerun() (failed cells only) fills it.
    with record.trial("grid: an error cell, row error, rerun() completes"):
        helpers.run_cell(page, panel, 3)
        grid = helpers.cell_output(panel, 3).locator(".llm-grid")
        page.wait_for_function(
            "el => el.querySelectorAll('.llm-grid-cell[data-status=ok]').length === 1"
            " && el.querySelectorAll('.llm-grid-cell[data-status=error]').length === 1",
            arg=grid.element_handle(timeout=helpers.KERNEL_TIMEOUT_MS),
            timeout=helpers.EXECUTE_TIMEOUT_MS)
        shot("grid-cut")
        helpers.run_cell(page, panel, 4)
        assert helpers.cell_output_text(panel, 4).strip().endswith("['ok', 'ok']")
        page.wait_for_function(
            "el => el.querySelectorAll('.llm-grid-cell[data-status=ok]').length === 2",
            arg=grid.element_handle(), timeout=helpers.EXECUTE_TIMEOUT_MS)
        grids = _rows(jupyter_lab, "prompt LIKE '%grid story 2%'")
        assert [r["status"] for r in grids] == ["error", "ok"]

    # Nothing unfinished was cached, anywhere.
    unfinished = _rows(jupyter_lab, "status != 'ok' AND cache.key IS NOT NULL")
    twice = sent_twice(loopback)
    statuses = [r["status"] for r in _rows(jupyter_lab, "prompt LIKE '%story%'")]
    record.check("nothing unfinished cached", unfinished == [])
    record.check("each cut answer sent again by its re-run", twice == {"magic", "chat", "grid"})
    record.note(f"%%llm, Chat and grid cut mid-answer: rows logged {', '.join(statuses)}; "
                f"{len(unfinished)} unfinished rows cached; re-sent: {', '.join(sorted(twice))}")
    assert unfinished == [], unfinished
    assert twice == {"magic", "chat", "grid"}


def sent_twice(loopback) -> set[str]:
    """Which of the three answers went to the provider twice (the cut one and its re-run)."""
    seen: dict[str, int] = {}
    for r in loopback.requests():
        content = r["body"]["messages"][-1]["content"]
        for word in ("magic", "chat", "grid story 2"):
            if word in content:
                seen[word] = seen.get(word, 0) + 1
    return {w.split()[0] for w, n in seen.items() if n == 2}
