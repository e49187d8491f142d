"""Suite 11 — widget flood.

Ten Chat widgets in one notebook stream at once, 200 tokens a second each (2,000 a second in
all), in a real JupyterLab. What the browser receives is counted on its kernel websocket, per
widget (frames carrying the widget's comm id), timed by the kernel's own send dates. Passing: no "IOPub message rate exceeded"
anywhere (outputs, server log), ≤ 20 stream messages a second per widget (≤ 41 in any 2 s:
one message of timestamp jitter), bytes linear in the
answer's length (a twice-as-long answer costs about twice the bytes, not four times), and every
final text complete, in the kernel and on the page.
"""

from __future__ import annotations

import datetime
import json
import re
import time

import pytest

from browser import helpers

SUITE = "11 widget flood"
pytestmark = pytest.mark.browser

CHATS = 10
TOKENS_PER_SECOND = 200
SHORT, LONG = 300, 600              # tokens: chats 0-4 get SHORT answers, 5-9 LONG ones
_DATE = re.compile(rb'"date":\s*"([^"]+)"')


def answer(i: int) -> str:
    n = SHORT if i < CHATS // 2 else LONG
    return " ".join(f"c{i}w{j}" for j in range(n))


class Frames:
    """Every frame the page's websockets receive: (time, bytes)."""

    def __init__(self, page):
        self.frames: list[tuple[float, bytes]] = []
        page.on("websocket", lambda ws: ws.on("framereceived", self._received))

    def _received(self, payload) -> None:
        data = payload if isinstance(payload, (bytes, bytearray)) else str(payload).encode()
        self.frames.append((time.time(), bytes(data)))

    def of(self, comm_id: str, since: float) -> list[tuple[float, bytes]]:
        key = comm_id.encode()
        return [(t, f) for t, f in self.frames if t >= since and key in f]


def sent_at(frame: bytes) -> float:
    """The kernel's send time of a message: its header's date (the first date in the frame).
    Receive times would add the network's jitter to the rate being measured."""
    found = _DATE.search(frame)
    assert found, frame[:300]
    return datetime.datetime.fromisoformat(found.group(1).decode()).timestamp()


def most_in(times: list[float], window: float) -> int:
    """The most of `times` (sorted) in any half-open window of `window` seconds."""
    best, start = 0, 0
    for end in range(len(times)):
        while times[end] - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def test_ten_chats_streaming_at_once(jupyter_lab, lab_page, loopback, shot, record):
    page = lab_page
    frames = Frames(page)
    loopback.configure(tokens_per_second=TOKENS_PER_SECOND)
    asks = ",\n".join(f"    chats[{i}].ask({('Stream ' + str(i) + ' [[reply:' + answer(i) + ']]')!r}, wait=False)"
                      for i in range(CHATS))
    helpers.write_notebook(jupyter_lab.root_dir, "flood.ipynb", [
        "import json\n"
        "import llm_notebook\n"
        "from IPython.display import display\n"
        f"llm_notebook.session().add_endpoint('loop', {loopback.url!r})\n"
        f"chats = [llm_notebook.Chat(model='loop/m') for _ in range({CHATS})]\n"
        "display(*chats)\n"
        "print('COMMS', *[c.model_id for c in chats])",
        f"futures = [\n{asks}\n]",
        "replies = [f.result(timeout=180) for f in futures]\n"
        "print('FINAL', json.dumps([[r.status, len(r.text), r.text == c.turns()[-1]['response']]"
        " for r, c in zip(replies, chats)]))",
    ])
    panel = helpers.open_notebook(page, "flood.ipynb")
    helpers.run_cell(page, panel, 0)
    page.wait_for_function(
        "el => el.querySelectorAll('.llm-chat textarea.llm-chat-input').length === %d" % CHATS,
        arg=helpers.cell_output(panel, 0).element_handle(), timeout=helpers.EXECUTE_TIMEOUT_MS)
    comms = helpers.cell_output_text(panel, 0).split("COMMS", 1)[1].split()
    assert len(comms) == CHATS

    started = time.time()
    helpers.run_cell(page, panel, 1)
    helpers.run_cell(page, panel, 2, timeout=240_000)     # waits for all ten answers
    final = json.loads(helpers.cell_output_text(panel, 2).split("FINAL", 1)[1].strip())
    outputs = " ".join(helpers.cell_output_text(panel, i) for i in range(3))

    # On the page: every chat shows its whole answer, last word included.
    for i in range(CHATS):
        page.wait_for_function(
            "([root, i, last]) => { const c = root.querySelectorAll('.llm-chat')[i];"
            " const b = c && c.querySelector('.llm-chat-turn.llm-status-ok .llm-chat-assistant .llm-chat-body');"
            " return !!b && b.textContent.trim().endsWith(last); }",
            arg=[helpers.cell_output(panel, 0).element_handle(), i, answer(i).split()[-1]],
            timeout=helpers.EXECUTE_TIMEOUT_MS)
    shot("ten-chats")
    time.sleep(0.5)   # frames still in flight

    rates, volume, paces = [], [], []
    for i, comm in enumerate(comms):
        received = frames.of(comm, started)
        stream_times = sorted(sent_at(f) for _, f in received
                              if b"stream.delta" in f or b"stream.batch" in f)
        # The sender spaces its flushes ≥ 50 ms apart; the date is stamped a moment later, by a
        # thread that may wait for the GIL, so two dates can be closer: over 2 s that jitter is
        # one message at most.
        rates.append(most_in(stream_times, 2.0))
        volume.append(sum(len(f) for _, f in received))
        if len(stream_times) > 1:      # the answer's words over the time its stream took
            paces.append(len(answer(i).split()) / (stream_times[-1] - stream_times[0]))
    short = sum(volume[:CHATS // 2]) / (CHATS // 2)
    long = sum(volume[CHATS // 2:]) / (CHATS // 2)
    server_log = jupyter_lab.server_output.read_text(errors="replace")
    overflow = (outputs + server_log).count("IOPub message rate exceeded")

    for i, (status, length, same) in enumerate(final):
        record.check(f"chat {i}: the whole answer in the kernel and on the page, ≤ 41 stream "
                     "messages in any 2 s, every byte counted",
                     status == "ok" and length == len(answer(i)) and same
                     and rates[i] <= 2 * 20 + 1 and volume[i] > len(answer(i)))
    record.check("no IOPub overflow", overflow == 0)
    record.check("bytes linear in the answer's length", 1.5 <= long / short <= 2.6)
    record.note(f"{len(comms)} chats streaming at once at {min(paces, default=0):.0f}-"
                f"{max(paces, default=0):.0f} tok/s each: at most {max(rates)} stream msgs in any "
                f"2 s per widget, bytes ×{long / short:.2f} for ×2 length, {overflow} IOPub "
                f"overflows, {sum(1 for s, _, same in final if s == 'ok' and same)} texts whole")

    assert final == [["ok", len(answer(i)), True] for i in range(CHATS)], final
    assert overflow == 0
    assert all(v > len(answer(i)) for i, v in enumerate(volume)), volume   # it was all counted
    assert max(rates) <= 2 * 20 + 1, f"most stream messages in 2 s, per widget: {rates}"
    assert 1.5 <= long / short <= 2.6, f"bytes: {short:.0f} for {SHORT} tokens, {long:.0f} for {LONG}"
