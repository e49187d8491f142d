"""UsagePanel, kernel side: the summary it sends, filters, live updates (throttled), exports."""

from __future__ import annotations

import csv
import io
import time

import pytest

from llm_notebook.widgets.usage_panel import MIN_REFRESH_INTERVAL, TABLE_ROWS, UsagePanel

from test_usage import DAY0, brute_force, generated_calls


def wait_for(condition, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)  # polling a condition, not waiting for a fixed time
    return condition()


@pytest.fixture
def seeded(nb_session):
    rows = generated_calls(800, seed=21)
    nb_session.log.insert_calls(rows)
    return nb_session, rows


def test_summary_of_a_seeded_log(seeded):
    session, rows = seeded
    panel = UsagePanel(session)
    s = panel.summary
    want = brute_force(rows, "model")
    assert s["totals"]["calls"] == len(rows)
    assert s["totals"]["cost"] == pytest.approx(sum(g["cost"] for g in want.values()))
    assert s["totals"]["unpriced"] == sum(g["unpriced"] for g in want.values())
    assert s["totals"]["error_rate"] == pytest.approx(sum(g["errors"] for g in want.values()) / len(rows))
    # Four days of calls: one point per day, summing to the totals.
    assert s["series"]["unit"] == "day" and len(s["series"]["points"]) == 4
    assert sum(p[1] for p in s["series"]["points"]) == len(rows)
    assert sum(p[2] for p in s["series"]["points"]) == pytest.approx(s["totals"]["cost"])
    assert {m[0] for m in s["models"]} == set(want)
    assert s["models"][0][2] == pytest.approx(max(g["cost"] for g in want.values()))
    durations = sum(len(g["durations"]) for g in want.values())
    assert sum(n for _, _, n in s["latency"]) == durations
    assert s["table"]["by"] == "model" and s["table"]["total_rows"] == len(want)
    assert s["facets"]["notebooks"] == ["a.ipynb", "sub/b.ipynb"]
    assert s["error"] is None
    panel.close()


def test_filters_change_the_numbers(seeded):
    session, rows = seeded
    panel = UsagePanel(session)
    panel.model = "openai/gpt-4o-mini"
    want = brute_force(rows, "model", model="openai/gpt-4o-mini")["openai/gpt-4o-mini"]
    assert panel.summary["totals"]["calls"] == want["calls"] < len(rows)
    panel.notebook = ""
    want = brute_force(rows, "model", model="openai/gpt-4o-mini", notebook="")
    assert panel.summary["totals"]["calls"] == want["openai/gpt-4o-mini"]["calls"]
    panel.model, panel.notebook = "", None
    panel.since, panel.until = "2024-03-02", "2024-03-02"
    day = brute_force(rows, "day", since=DAY0 + 86400, until=DAY0 + 2 * 86400)
    assert panel.summary["totals"]["calls"] == sum(g["calls"] for g in day.values())
    # One day: the time charts switch to hours.
    assert panel.summary["series"]["unit"] == "hour" and len(panel.summary["series"]["points"]) == 24
    panel.group_by = "hour"
    assert panel.summary["table"]["by"] == "hour" and panel.summary["table"]["rows"][0][0] == "2024-03-02 00:00"
    panel.close()


def test_a_bad_filter_keeps_the_numbers_and_says_why(seeded):
    session, _ = seeded
    panel = UsagePanel(session)
    calls = panel.summary["totals"]["calls"]
    with panel.hold_trait_notifications():
        panel.since, panel.until = "2024-03-04", "2024-03-01"
    assert panel.summary["error"] == "'since' is after 'until'"
    assert panel.summary["totals"]["calls"] == calls
    panel.since = "not a date"
    assert "is not a date" in panel.summary["error"]
    with pytest.raises(ValueError, match="by must be one of"):
        UsagePanel(session, by="week")
    panel.close()


def test_live_update_after_a_real_call(loop_session, loopback):
    loop_session.config.prices = {"loop/*": {"input": 1.0, "output": 2.0}}
    panel = UsagePanel(loop_session)
    assert panel.summary["totals"]["calls"] == 0
    r = loop_session.ask("live numbers please", model="loop/m")
    assert wait_for(lambda: panel.summary["totals"]["calls"] == 1)
    assert panel.summary["totals"]["cost"] == pytest.approx(r.cost)
    assert panel.summary["models"][0][0] == "loop/m"
    panel.close()
    assert panel._listener not in loop_session._listeners
    loop_session.ask("after close", model="loop/m")
    time.sleep(MIN_REFRESH_INTERVAL * 2)  # nothing may refresh a closed panel: give it time to
    assert panel.summary["totals"]["calls"] == 1


def test_live_updates_are_throttled(seeded):
    session, _ = seeded
    panel = UsagePanel(session)
    before = panel.refreshes
    started = time.monotonic()
    for i in range(50):                          # a burst of logged calls
        session.log.insert_call({"ts": time.time(), "model": "burst/m", "status": "ok"})
        session._notify({"id": i})
    assert wait_for(lambda: panel.summary["totals"]["calls"] == 800 + 50)
    elapsed = time.monotonic() - started
    # At most one refresh per MIN_REFRESH_INTERVAL (plus the one a burst starts with).
    assert panel.refreshes - before <= elapsed / MIN_REFRESH_INTERVAL + 2
    assert panel.refreshes - before <= 3
    panel.live = False
    session._notify({"id": 99})
    time.sleep(MIN_REFRESH_INTERVAL * 2)  # a refresh would have happened by now
    assert panel._timer is None
    panel.close()


def test_exports(seeded, tmp_path):
    session, rows = seeded
    panel = UsagePanel(session, by="notebook", model="loop/m")
    frame = panel.to_pandas()
    assert frame.equals(session.usage(by="notebook", model="loop/m"))
    text = panel.to_csv(str(tmp_path / "usage.csv"))
    assert (tmp_path / "usage.csv").read_text() == text
    records = list(csv.DictReader(io.StringIO(text)))
    want = brute_force(rows, "notebook", model="loop/m")
    assert {r["notebook"] for r in records} == {"", "a.ipynb", "sub/b.ipynb"}
    assert sum(int(r["calls"]) for r in records) == sum(g["calls"] for g in want.values())
    assert panel.to_pandas(by="day")["calls"].sum() == sum(g["calls"] for g in want.values())

    sent = []
    panel.send = lambda msg, buffers=None: sent.append(msg)
    panel._handle_request({"type": "request", "id": "r1", "method": "export_csv", "params": {}})
    assert sent[-1]["ok"] and sent[-1]["result"]["text"] == text
    assert sent[-1]["result"]["filename"] == "llm-usage-by-notebook.csv"
    panel._handle_request({"type": "request", "id": "r2", "method": "refresh", "params": {}})
    assert sent[-1] == {"type": "response", "id": "r2", "ok": True, "result": True}
    panel.close()


def test_the_table_is_capped_and_the_csv_is_not(nb_session):
    nb_session.log.insert_calls([{"ts": DAY0 + i, "model": "m/x", "status": "ok",
                                  "conversation_id": f"c{i}"} for i in range(TABLE_ROWS + 30)])
    panel = UsagePanel(nb_session, by="conversation")
    table = panel.summary["table"]
    assert len(table["rows"]) == TABLE_ROWS and table["total_rows"] == TABLE_ROWS + 30
    assert len(panel.to_pandas()) == TABLE_ROWS + 30
    panel.close()


def test_llm_usage_panel_magic(ipshell):
    panel = ipshell.run_line_magic("llm", "usage --panel")
    assert isinstance(panel, UsagePanel)
    panel.close()
