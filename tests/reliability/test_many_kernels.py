"""Suite 5 — many kernels, one log.

Four processes write to one log at once, each in its own way (big transactions, single calls
through the loopback, batch runs, rows with cache entries) while this process reads it as the
sidebar would; the big-transaction writer is killed with SIGKILL in the middle of a write.
Each (writer, sequence) row must be unique, rows must equal acknowledgements (the killed
writer's last, unacknowledged transaction is there whole or not at all), no "database is
locked" may reach anyone, and `PRAGMA integrity_check` must say ok.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time

from .helpers import REPO_ROOT, wait_until

SUITE = "5 many kernels one log"
WRITER = os.path.join(os.path.dirname(__file__), "log_writer.py")
PLAN = [(0, "bulk", 1_000_000), (1, "ask", 200), (2, "batch", 400), (3, "rows", 5_000)]


class Writer:
    def __init__(self, number: int, kind: str, count: int, url: str, env: dict):
        self.number, self.kind, self.count = number, kind, count
        self.lines: list[str] = []
        self.proc = subprocess.Popen([sys.executable, WRITER, str(number), kind, str(count), url],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.stderr = ""

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.strip())

    def finish(self, timeout: float) -> int:
        try:
            self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)
        self.stderr = self.proc.stderr.read()
        return self.proc.returncode

    def ranges(self, word: str) -> list[range]:
        out = []
        for line in list(self.lines):
            parts = line.split()
            if parts[:1] == [word]:
                out.append(range(int(parts[2]), int(parts[3]) + 1))
        return out

    def acked(self) -> set[int]:
        return {seq for r in self.ranges("ack") for seq in r}


def read_while_writing(path: str, stop: threading.Event, errors: list, reads: list) -> None:
    from llm_notebook.log import Log

    log = Log(path)
    try:
        while not stop.is_set():
            try:
                log.history_rows(limit=50)
                log.usage_rows(by="model")
                reads.append(1)
            except Exception as exc:  # noqa: BLE001 - any failure is what we are counting
                errors.append(repr(exc))
            time.sleep(0.01)
    finally:
        log.close()


def test_four_writers_one_killed_mid_write(loopback, tmp_path, record):
    path = str(tmp_path / "shared.db")
    env = dict(os.environ, LLM_NOTEBOOK_LOG=path,
               PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    from llm_notebook.log import Log

    Log(path).close()   # created (and migrated) once, as the first kernel would
    writers = [Writer(n, kind, count, loopback.url, env) for n, kind, count in PLAN]
    stop, read_errors, reads = threading.Event(), [], []
    reader = threading.Thread(target=read_while_writing, args=(path, stop, read_errors, reads))
    reader.start()
    try:
        wait_until(lambda: all(f"ready {w.number}" in w.lines for w in writers), 60,
                   what="the writers to start")
        for w in writers:
            w.proc.stdin.write("go\n")
            w.proc.stdin.flush()
        victim = writers[0]
        # Kill it inside a transaction (right after a "begin") while the others write too.
        def in_a_write():
            begun, acked = victim.ranges("begin"), victim.ranges("ack")
            others_writing = all(w.ranges("ack") for w in writers[1:])
            return others_writing and len(acked) >= 1 and len(begun) == len(acked) + 1
        wait_until(in_a_write, 90, interval=0.002, what="writer 0 to be inside a write")
        victim.proc.send_signal(signal.SIGKILL)
        killed_during = victim.ranges("begin")[-1]
        still_running = sum("done " + str(w.number) not in w.lines for w in writers[1:])
        codes = [w.finish(timeout=120) for w in writers]
    finally:
        stop.set()
        reader.join(10)
        for w in writers:
            if w.proc.poll() is None:
                w.proc.kill()

    db = sqlite3.connect(path)
    try:
        integrity = db.execute("PRAGMA integrity_check").fetchall()
        pairs = db.execute("SELECT prompt, count(*) FROM calls WHERE prompt LIKE 'w% s%' "
                           "GROUP BY prompt").fetchall()
    finally:
        db.close()
    duplicates = [p for p, n in pairs if n > 1]
    logged: dict[int, set[int]] = {n: set() for n, _, _ in PLAN}
    for prompt, _ in pairs:
        m = re.fullmatch(r"w(\d) s(\d+)", prompt)
        logged[int(m.group(1))].add(int(m.group(2)))
    acked = victim.acked()
    unacked = logged[0] - acked
    if set(killed_during) <= acked:
        fate = "landed after its commit"
    elif unacked == set(killed_during):
        fate = "committed whole, unacknowledged"
    elif not unacked:
        fate = "rolled back whole"
    else:
        fate = f"cut: {len(unacked)} of its {len(killed_during)} rows stored"
    locked = sum(w.stderr.count("locked") for w in writers) + sum("locked" in e for e in read_errors)

    # Tried: every acknowledged row (a promise that it is stored); kept: those found, once.
    twice = {(int(p[1]), int(p.split(" s")[1])) for p in duplicates}
    record.count(tried=sum(len(w.acked()) for w in writers),
                 kept=sum(len({s for s in w.acked() & logged[w.number]
                               if (w.number, s) not in twice}) for w in writers),
                 what="acknowledged rows found once in the log")
    record.note(f"{len(writers)} writers, one SIGKILLed inside a {len(killed_during)}-row "
                f"transaction ({fate}); {len(reads)} reads alongside, {len(read_errors)} failed; "
                f"{locked} 'database is locked', {len(duplicates)} rows written twice, "
                f"integrity_check {integrity[0][0] if len(integrity) == 1 else integrity}")

    assert codes[0] == -signal.SIGKILL
    assert still_running == 3, "a writer had finished before the kill: they did not overlap"
    for w, code in zip(writers[1:], codes[1:]):
        assert code == 0, (w.kind, w.stderr[-2000:])
    for w in writers:
        assert "locked" not in w.stderr and "Traceback" not in w.stderr, (w.kind, w.stderr[-2000:])
    assert read_errors == [] and len(reads) > 0
    assert integrity == [("ok",)]
    assert duplicates == [], f"{len(duplicates)} (writer, sequence) rows written twice"
    for w in writers[1:]:
        assert logged[w.number] == w.acked() == set(range(w.count)), w.kind
    assert acked <= logged[0], "an acknowledged write of the killed writer is missing"
    assert unacked in (set(), set(killed_during)), "the killed transaction was cut in half"
