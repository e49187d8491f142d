"""Suite 12 — bad input, the server extension's side: every route fed malformed parameters and
path ids (wrong types, NaN, empty, huge, binary, unknown names, SQL and FTS syntax) answers a
4xx with a one-line JSON message, never a 500, and the server keeps serving."""

from __future__ import annotations

import collections
import time

from llm_notebook.server import ROUTES

SUITE = "12 bad input"

# Values no parameter accepts whatever it is (a number, a time, a choice or free text).
HOSTILE = ["NaN", "nan", "inf", "-inf", "-1", "1e400", "99999999999999999999999", "0x10",
           "\x00", "a\x00b", "x" * 5000, "' OR 1=1 --", "\"unclosed", "NEAR(", "*", "AND",
           "🙂" * 300, b"\xff\xfe invalid UTF-8"]
PARAMS = {
    "history": ["search", "model", "notebook", "conversation", "limit", "offset", "preview"],
    "usage": ["by", "since", "until", "model", "notebook"],
    "usage/summary": ["day_start", "notebook"],
    "conversations": ["limit"],
    "templates": ["tag"],
    "jobs/ended": ["after", "limit"],
    "facets": [],
    "status": [],
}
BAD_IDS = {"calls": ["abc", "-1", "0", "1.5", "NaN", "9" * 30, "%00", "%FF%FE", "x" * 2000,
                     "999999"],
           "conversations": ["..", "%2e%2e", "a b", "x" * 300, "%00", "%FF", "'--", "nope"]}


def judge(reply) -> str | None:
    """None when the reply is a clean refusal or an answer; else what is wrong with it."""
    if reply.code >= 500:
        return f"{reply.code}: {reply.text[:200]}"
    if reply.code >= 400:
        message = (reply.json or {}).get("message") if isinstance(reply.json, dict) else None
        if not message or "\n" in message or "Traceback" in reply.text:
            return f"{reply.code} without a one-line message: {reply.text[:200]}"
    return None


def test_every_route_refuses_malformed_parameters(api, nb_session, record):
    nb_session.log.insert_call({"ts": time.time(), "model": "loop/x", "status": "ok", "prompt": "seed",
                     "response": "ok"})
    declared = {p.strip("/").split("/(")[0] for p, _ in ROUTES}
    assert set(PARAMS) | set(BAD_IDS) >= declared, declared - set(PARAMS) - set(BAD_IDS)
    problems, codes = [], collections.Counter()

    def judged(label: str, reply, wrong: str | None = None) -> None:
        codes[reply.code // 100] += 1
        wrong = judge(reply) or wrong
        if not record.check(label, wrong is None):
            problems.append(f"{label}: {wrong}")

    for route, names in PARAMS.items():
        for name in names + ["unknown_param"]:
            for value in HOSTILE:
                judged(f"{route}?{name}={value[:20]!r}", api(route, {name: value}))
        for params in ({"limit": ["1", "2"]}, {"": "x"}, {"by": ""}, {"limit": ""}):
            judged(f"{route} {params}", api(route, params))
    for route, ids in BAD_IDS.items():
        for raw in ids:
            reply = api(f"{route}/{raw}")
            judged(f"{route}/{raw[:20]}", reply,
                   "answered 200" if reply.code == 200 and route == "calls" else None)
    alive = api("status")
    record.check("the server still answers", alive.code == 200 and alive.json["calls"] == 1)
    record.note(f"server: {sum(codes.values())} malformed requests answered "
                + ", ".join(f"{n} × {c}xx" for c, n in sorted(codes.items()))
                + f"; {len(problems)} not refused cleanly; afterwards status answers {alive.code}")
    assert alive.code == 200 and alive.json["calls"] == 1
    assert problems == [], "\n".join(problems[:40])
