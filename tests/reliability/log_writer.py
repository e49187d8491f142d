"""One of the processes of suite 5: writes numbered rows to the shared log and acknowledges each
write on stdout once it returned (committed).

    python log_writer.py WRITER KIND COUNT LOOPBACK_URL

Every row's prompt is "w<WRITER> s<SEQ>", so the test can check each (writer, sequence) pair.
It starts writing when a line arrives on stdin.
Lines: "ready W" once set up, "begin W FIRST LAST" before a write, "ack W FIRST LAST" after it; "done W" at the end.
KIND: "bulk" (insert_calls, 1,000 rows a transaction, until killed or COUNT rows),
"ask" (Session.ask through the loopback: one row per call), "batch" (Session.batch, 50 prompts
a run), "rows" (insert_calls of 100 rows with their cache entries).
"""

from __future__ import annotations

import sys
import time


def say(*parts) -> None:
    print(*parts, flush=True)


def main() -> None:
    writer, kind, count, url = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
    import llm_notebook

    session = llm_notebook.session()
    session.add_endpoint("loop", url)
    log = session.log
    say("ready", writer)
    sys.stdin.readline()      # start together: the test says go once every writer is ready
    seq = 0
    while seq < count:
        if kind == "ask":
            first = last = seq
            say("begin", writer, first, last)
            session.ask(f"w{writer} s{seq}", model="loop/loopback-model")
        elif kind == "batch":
            first, last = seq, min(seq + 50, count) - 1
            say("begin", writer, first, last)
            session.batch([f"w{writer} s{i}" for i in range(first, last + 1)],
                          model="loop/loopback-model", concurrency=8, progress=False)
        else:
            size = 1000 if kind == "bulk" else 100
            first, last = seq, min(seq + size, count) - 1
            rows = [{"ts": time.time(), "model": "direct/writer", "prompt": f"w{writer} s{i}",
                     "response": "x" * 200, "status": "ok", "input_tokens": 3,
                     "output_tokens": 5, "kernel_session": f"writer-{writer}"}
                    for i in range(first, last + 1)]
            entries = [(f"w{writer}-k{first + j}", j, "x", 3, 5) for j in range(len(rows))] \
                if kind == "rows" else []
            say("begin", writer, first, last)
            log.insert_calls(rows, cache_entries=entries)
        say("ack", writer, first, last)
        seq = last + 1
        if kind in ("bulk", "rows"):
            # Pauses between writes keep the writers overlapping for seconds: the point is
            # contention, not volume.
            time.sleep(0.1 if kind == "bulk" else 0.03)
    say("done", writer)


if __name__ == "__main__":
    main()
