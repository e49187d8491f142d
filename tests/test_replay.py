"""Record and replay over real HTTP (the loopback server) and the embedded model: every face
(ask, stream, chats, %%llm, batches, comparisons) records its answers beside the notebook and
replays them with nothing sent; replayed calls are logged as replayed and cost nothing; the
recordings file is bounded, redacted and read as untrusted input."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import warnings

import pandas as pd
import pytest

import llm_notebook
from llm_notebook import recordings as recordings_mod
from llm_notebook.errors import LLMError, NotRecorded, RecordingsUnavailable, UserError
from llm_notebook.recordings import Recordings

from cells import ok, run

CLOSED = "http://127.0.0.1:9/v1"     # nothing listens there: a replay must not need the server


@pytest.fixture
def recordings_file(tmp_path, nb_session):
    path = tmp_path / "notebook" / "llm-recordings.jsonl"
    nb_session.config.recordings = str(path)
    return path


def requests(loopback) -> int:
    return loopback.stats()["requests"]


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def recorded_then_fresh(session, loopback, tmp_path, work):
    """Runs `work(session)` in record mode; then again in replay mode with a fresh log and the
    endpoint pointing where nothing listens. Returns both results."""
    session.config.replay = "record"
    first = work(session)
    sent = requests(loopback)
    session.config.log_path = str(tmp_path / "fresh-log.db")
    session.add_endpoint("loop", CLOSED)
    session.config.replay = "replay"
    second = work(session)
    assert requests(loopback) == sent                    # nothing was sent
    return first, second


def test_ask_and_stream_replay_the_recorded_answer_free_and_marked(
        loop_session, loopback, log_path, tmp_path, recordings_file):
    def work(s):
        r = s.ask("Hi [[reply:one two three four five six seven]]", model="loop/m")
        st = s.stream("Stream [[reply:alpha beta gamma delta epsilon zeta eta theta]]",
                      model="loop/m")
        pieces = list(st)
        return r, st.response, pieces

    (r1, s1, p1), (r2, s2, p2) = recorded_then_fresh(loop_session, loopback, tmp_path, work)
    fresh = loop_session
    assert (r2.text, r2.input_tokens, r2.output_tokens) == \
        (r1.text, r1.input_tokens, r1.output_tokens)
    assert r2.replayed and not r1.replayed and not r2.cached
    assert r2.cost == 0.0 and not r2.unpriced and "replayed" in r2.footer()
    # A stream replays the recorded text in pieces, as a stream brings it.
    assert "".join(p2) == s2.text == s1.text and len(p2) > 1
    rows = fresh.log.read("SELECT replayed, cost, attempts, status, model, cache_key FROM calls")
    assert [tuple(r) for r in rows] == [(1, 0.0, 1, "ok", "loop/m", None)] * 2
    assert fresh.spent == 0.0
    # Nothing replayed is put in the cache: a later call with replay off must not take it.
    assert fresh.log.read("SELECT count(*) FROM cache")[0][0] == 0
    recorded = lines(recordings_file)
    assert [e["answer"]["text"] for e in recorded] == [r1.text, s1.text]
    assert recorded[0]["endpoint"] == "loop" and recorded[0]["model"] == "loop/m"
    assert recorded[0]["answer"]["input_tokens"] == r1.input_tokens


def test_a_chat_replays_turn_by_turn(loop_session, loopback, log_path, tmp_path, recordings_file):
    def work(s):
        chat = s.chat("trip")
        a = chat.ask("Where to? [[reply:Lisbon, by train]]", model="loop/m")
        b = chat.ask("How long? [[reply:Two days]]", model="loop/m")
        return [m["content"] for m in chat.messages()], (a, b)

    (history1, _), (history2, (a, b)) = recorded_then_fresh(loop_session, loopback, tmp_path,
                                                            work)
    # The second turn's request holds the first answer: it matches because the replayed first
    # answer is the recorded one.
    assert history2 == history1 and a.replayed and b.replayed
    assert len(lines(recordings_file)) == 2


def test_batches_and_comparisons_replay_every_row(loop_session, loopback, log_path, tmp_path,
                                                  recordings_file):
    frame = pd.DataFrame({"city": ["Paris", "Lima", "Paris", None]})

    def work(s):
        out = frame.llm.map("Country of {city}? [[reply:the country of {city}]]", model="loop/m",
                            session=s, progress=False)
        listed = s.batch(["a [[reply:A]]", "b [[reply:B]]"], model="loop/m", progress=False)
        grid = llm_notebook.compare("Capital of {c}? [[reply:It is {c}]]", ["loop/a", "loop/b"],
                                    inputs=[{"c": "X"}, {"c": "Y"}],
                                    checks=[llm_notebook.checks.contains(column="c")]).wait()
        return out, listed, grid.to_pandas()

    (out1, list1, grid1), (out2, list2, grid2) = recorded_then_fresh(
        loop_session, loopback, tmp_path, work)
    fresh = loop_session
    assert out2.tolist() == out1.tolist() and pd.isna(out2.iloc[3])
    info = out2.attrs["llm"]
    assert (info["replayed"], info["requests"], info["cached"], info["error"]) == (3, 0, 0, 1)
    assert list(list2) == list(list1) == ["A", "B"]
    assert grid2["output"].tolist() == grid1["output"].tolist()
    assert grid2["checks_passed"].all() and set(grid2["status"]) == {"ok"}
    # Every replayed row is a logged call; the missing cell was an input error, not a call.
    assert tuple(fresh.log.read("SELECT count(*), sum(replayed), sum(cost) FROM calls")[0]) == \
        (9, 9, 0.0)
    # Rows asking the same request were recorded once.
    assert len(lines(recordings_file)) == 2 + 2 + 4


def test_the_second_identical_run_in_replay_mode_sends_nothing_either(
        loop_session, loopback, recordings_file):
    loop_session.config.replay = "record"
    loop_session.batch(["x [[reply:X]]"], model="loop/m", progress=False)
    loop_session.batch(["x [[reply:X]]"], model="loop/m", progress=False)   # a cache hit
    assert requests(loopback) == 1
    loop_session.config.replay = "replay"
    again = loop_session.batch(["x [[reply:X]]"], model="loop/m", progress=False)
    assert again.info["replayed"] == 1 and again.info["requests"] == 0 and requests(loopback) == 1


def test_replay_mode_refuses_what_is_not_recorded_in_one_line(loop_session, loopback,
                                                              recordings_file):
    loop_session.config.replay = "replay"
    with pytest.raises(NotRecorded) as refused:
        loop_session.ask("never asked", model="loop/m")
    message = str(refused.value)
    assert "\n" not in message and "never asked" in message and str(recordings_file) in message
    assert "%llm replay record" in message and "%llm replay auto" in message
    with pytest.raises(NotRecorded, match=r"2 of the 2 rows of this run .* are not recorded"):
        loop_session.batch(["p", "q"], model="loop/m", progress=False)
    with pytest.raises(NotRecorded):
        llm_notebook.compare("Hi {c}", ["loop/a"], inputs=[{"c": 1}])
    # Nothing was sent or logged; an estimate says nothing would be sent.
    assert requests(loopback) == 0 and loop_session.log.count_calls() == 0
    estimate = pd.DataFrame({"c": [1]}).llm.estimate("Hi {c}", model="loop/m")
    assert estimate.to_send == 0 and estimate.replayed == 0


def test_auto_replays_what_is_recorded_and_calls_and_records_the_rest(loop_session, loopback,
                                                                      recordings_file):
    loop_session.config.replay = "record"
    loop_session.ask("one [[reply:first]]", model="loop/m")
    loop_session.config.replay = "auto"
    again = loop_session.ask("one [[reply:first]]", model="loop/m")
    new = loop_session.ask("two [[reply:second]]", model="loop/m")
    assert again.replayed and not new.replayed and requests(loopback) == 2
    out = loop_session.batch(["one [[reply:first]]", "three [[reply:third]]"], model="loop/m",
                             progress=False)
    assert (out.info["replayed"], out.info["requests"]) == (1, 1)
    assert [e["answer"]["text"] for e in lines(recordings_file)] == ["first", "second", "third"]
    estimate = pd.DataFrame({"p": ["one [[reply:first]]", "four"]}).llm.estimate(
        "{p}", model="loop/m")
    assert (estimate.replayed, estimate.to_send) == (1, 1)
    assert "1 to send (1 replayed, 0 cached, 0 bad)" in str(estimate)


def test_cut_short_answers_are_recorded_and_replayed_as_they_were(loop_session, loopback,
                                                                  recordings_file):
    loop_session.config.timeout = 1.0
    loop_session.config.max_retries = 0
    loopback.script([{"kind": "stall", "seconds": 5, "after_tokens": 2}])
    loop_session.config.replay = "record"
    with pytest.raises(LLMError) as cut:
        "".join(loop_session.stream("stalls [[reply:one two three four]]", model="loop/m"))
    assert cut.value.kind == "incomplete"
    [entry] = lines(recordings_file)
    answer = entry["answer"]
    assert answer["status"] == "incomplete" and answer["text"] == cut.value.partial
    loop_session.config.replay = "replay"
    with pytest.raises(LLMError) as replayed:
        loop_session.ask("stalls [[reply:one two three four]]", model="loop/m")
    assert replayed.value.kind == "incomplete" and replayed.value.partial == cut.value.partial
    assert "(as recorded)" in str(replayed.value)
    row = loop_session.log.call(replayed.value.call_id)
    assert (row["status"], row["replayed"], row["response"]) == ("incomplete", 1, cut.value.partial)
    # auto asks again for an answer that was cut short
    loop_session.config.replay = "auto"
    assert not loop_session.ask("stalls [[reply:one two three four]]", model="loop/m").replayed


def test_failures_and_interruptions_are_not_recorded(loop_session, loopback, recordings_file):
    loop_session.config.replay = "record"
    loop_session.config.max_retries = 0
    loopback.script([{"kind": "400"}])
    with pytest.raises(LLMError):
        loop_session.ask("bad", model="loop/m")
    assert not recordings_file.exists()


def test_cache_hits_are_recorded_too(loop_session, loopback, recordings_file):
    loop_session.ask("warm [[reply:warm answer]]", model="loop/m", cache=True)
    loop_session.config.replay = "record"
    hit = loop_session.ask("warm [[reply:warm answer]]", model="loop/m", cache=True)
    assert hit.cached
    [entry] = lines(recordings_file)
    # A colleague's fresh log has no cache: the answer must be in the recordings.
    assert entry["answer"]["text"] == "warm answer" and entry["answer"]["cost"] is None


def test_a_replayed_call_holds_no_budget_and_skips_the_latency_histograms(
        loop_session, loopback, recordings_file):
    loop_session.config.prices = {"loop/*": {"input": 1e6, "output": 1e6}}   # $1 a token
    loop_session.config.replay = "record"
    paid = loop_session.ask("dear [[reply:costly]]", model="loop/m")
    assert paid.cost > 1
    loop_session.config.replay = "replay"
    loop_session.config.budget_session = loop_session.spent + 0.01   # a real call would be refused
    spent = loop_session.spent
    free = loop_session.ask("dear [[reply:costly]]", model="loop/m")
    assert free.replayed and free.cost == 0.0 and loop_session.spent == spent
    calls, cost, buckets = loop_session.log.read(
        "SELECT calls, cost, duration_buckets FROM usage_hourly")[0]
    assert calls == 2 and cost == pytest.approx(paid.cost)
    assert sum(json.loads(buckets).values()) == 1          # the sent call only


def test_the_magic_replays_and_names_its_cell_when_not_recorded(ipshell, loop_session, loopback,
                                                                recordings_file):
    ok(ipshell, "%llm replay record")
    cap = ok(ipshell, "%%llm -m loop/m\nSay hi [[reply:Hi from the magic]]")
    assert "Hi from the magic" in cap.outputs[-1].data["text/plain"]
    ok(ipshell, "%llm replay replay")
    cap = ok(ipshell, "%%llm -m loop/m --new\nSay hi [[reply:Hi from the magic]]")
    bundle = cap.outputs[-1]
    shown = bundle.data["text/plain"]
    assert "Hi from the magic" in shown and " · replayed · " in shown
    assert bundle.metadata["llm_notebook"]["replayed"] is True
    assert requests(loopback) == 1
    result = ipshell.run_cell("%%llm -m loop/m\nSomething new", store_history=True)  # numbered
    assert result.error_in_exec is not None
    line = str(result.error_in_exec)
    assert "\n" not in line and f"in cell In [{result.execution_count}] is not recorded" in line
    cap = ok(ipshell, "%llm replay")
    assert f"Replay: replay · recordings: {recordings_file} (1 answers)" in cap.stdout
    result, _ = run(ipshell, "%llm replay sometimes")
    assert "unknown replay mode 'sometimes'" in str(result.error_in_exec)


def test_the_mode_comes_from_the_environment_and_a_bad_one_is_a_clear_error(
        monkeypatch, nb_session, recordings_file):
    from llm_notebook.config import LLMNotebook

    monkeypatch.setenv("LLM_NOTEBOOK_REPLAY", "Replay")
    assert LLMNotebook().replay_mode() == "replay"
    monkeypatch.setenv("LLM_NOTEBOOK_REPLAY", "bogus")
    with pytest.raises(UserError, match="LLM_NOTEBOOK_REPLAY='bogus' is not a replay mode"):
        LLMNotebook().replay_mode()
    with pytest.raises(Exception, match="replay must be one of off, record, replay, auto"):
        nb_session.config.replay = "maybe"
    monkeypatch.setenv("LLM_NOTEBOOK_RECORDINGS", "~/elsewhere.jsonl")
    assert LLMNotebook().recordings_path() == os.path.expanduser("~/elsewhere.jsonl")


def test_recordings_live_in_the_notebooks_folder(tmp_path, monkeypatch, nb_session):
    from llm_notebook.session import Session

    monkeypatch.delenv("LLM_NOTEBOOK_RECORDINGS", raising=False)
    nb_session.config.recordings = ""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    # nbclient, nbconvert, nbval: a kernel started in the notebook's folder
    s = Session(config=nb_session.config)
    assert s.recordings.path == str(tmp_path / "llm-recordings.jsonl")
    # JupyterLab names the notebook; a later chdir in the notebook does not move them
    monkeypatch.setenv("JPY_SESSION_NAME", str(tmp_path / "work" / "analysis.ipynb"))
    s = Session(config=nb_session.config)
    monkeypatch.chdir("/")
    assert s.recordings.path == str(tmp_path / "work" / "llm-recordings.jsonl")


@pytest.mark.local_model
def test_the_embedded_model_replays_without_loading(nb_session, recordings_file, monkeypatch):
    from llm_notebook import providers

    nb_session.config.replay = "record"
    made = nb_session.ask("Name a colour.", model="local/smollm2", max_tokens=5)
    nb_session.config.replay = "replay"

    async def no_model(route):
        raise AssertionError("a replay must not load the model")

    monkeypatch.setattr(providers, "prepare", no_model)
    again = nb_session.ask("Name a colour.", model="local/smollm2", max_tokens=5)
    assert again.text == made.text and again.replayed
    assert (again.input_tokens, again.output_tokens) == (made.input_tokens, made.output_tokens)


# -- the recordings file ---------------------------------------------------------------------

KEY = "0" * 64


def entry(key=KEY, **answer) -> str:
    body = {"status": "ok", "text": "fine", "input_tokens": 1, "output_tokens": 2, **answer}
    return json.dumps({"key": key, "answer": body})


def test_keys_never_reach_a_recording(loop_session, loopback, recordings_file, monkeypatch):
    secret = "sk-proj-" + "A1b2C3d4" * 5
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    loop_session.config.replay = "record"
    loop_session.ask(f"my key is {secret} [[reply:it was {secret}]]", model="loop/m")
    text = recordings_file.read_text()
    assert secret not in text and "[REDACTED]" in text
    assert loop_session.log.count_calls() == 1


def test_untrusted_lines_are_skipped_with_one_warning(tmp_path):
    path = tmp_path / "llm-recordings.jsonl"
    good = entry("1" * 64, text="kept")
    path.write_text("\n".join([
        "not json", json.dumps([1, 2]), entry("short"), entry(status="error"),
        entry(text=5), entry(input_tokens=-1), entry(output_tokens=True),
        entry(text="x" * (recordings_mod.MAX_TEXT_CHARS + 1)), "[" * 100_000,
        json.dumps({"key": KEY}), good, ""]))
    store = Recordings(str(path))
    with pytest.warns(UserWarning, match=r"skipped 10 line\(s\) of .* \(line 1: not JSON\)"):
        assert len(store) == 1
    found = store.get("1" * 64)
    assert found.text == "kept" and found.input_tokens == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")     # warned once for this file, not on every lookup
        assert store.get(KEY) is None


def test_what_a_recording_says_about_routing_is_never_used(loop_session, loopback,
                                                          recordings_file):
    from llm_notebook.call.replay import Replay

    route = loop_session.resolve("loop/m")
    messages = [{"role": "user", "content": "hi"}]
    key = Replay.key(route, messages, {})
    recordings_file.parent.mkdir(parents=True)
    recordings_file.write_text(json.dumps({
        "key": key, "model": "openai/gpt-4o", "endpoint": "http://evil.example/v1",
        "options": {"api_base": "http://evil.example/v1"},
        "answer": {"status": "ok", "text": "<script>x()</script>**hi**", "model": "evil/x",
                   "cost": "lots", "error": "sk-" + "Z" * 40}}) + "\n")
    loop_session.config.replay = "replay"
    r = loop_session.ask("hi", model="loop/m")
    assert r.model == "loop/m" and r.cost == 0.0 and r.text == "<script>x()</script>**hi**"
    assert "<script>" not in r._repr_html_()          # rendered by the one sanitizer
    assert requests(loopback) == 0


def test_recording_the_same_answer_again_leaves_the_file_as_it_was(tmp_path):
    path = tmp_path / "llm-recordings.jsonl"
    store = Recordings(str(path))
    assert store.add([entry("1" * 64, text="a"), entry("2" * 64, text="b")]) == 2
    before = path.read_bytes()
    assert store.add([entry("1" * 64, text="a")]) == 0 and path.read_bytes() == before
    # A new answer to a recorded request replaces the old line (the file is rewritten).
    assert store.add([entry("1" * 64, text="a2")]) == 1
    assert [json.loads(x)["answer"]["text"] for x in path.read_text().splitlines()] == ["b", "a2"]
    # A file edited by hand without a last newline is appended to on a line of its own.
    path.write_bytes(path.read_bytes().rstrip(b"\n"))
    assert Recordings(str(path)).add([entry("3" * 64, text="c")]) == 1
    assert len(Recordings(str(path))) == 3


def test_kernels_recording_into_one_file_at_once_lose_nothing(tmp_path):
    path = tmp_path / "llm-recordings.jsonl"
    script = (
        "import json, sys\n"
        "from llm_notebook.recordings import Recordings\n"
        "store = Recordings(sys.argv[1])\n"
        "for i in range(60):\n"
        "    key = f'{int(sys.argv[2]):02d}{i:062d}'\n"
        "    store.add([json.dumps({'key': key, 'answer': {'status': 'ok', 'text': str(i)}})])\n"
        "    if i % 20 == 0:  # now and then a new answer, which rewrites the file\n"
        "        again = {'status': 'ok', 'text': 'again'}\n"
        "        store.add([json.dumps({'key': key, 'answer': again})])\n")
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    procs = [subprocess.Popen([sys.executable, "-c", script, str(path), str(n)], env=env)
             for n in range(4)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    stored = Recordings(str(path))
    assert len(stored) == 4 * 60
    assert sum(1 for line in path.read_text().splitlines() if line) == 4 * 60


def test_a_recordings_file_too_large_or_unreadable_is_a_clear_error(tmp_path, monkeypatch,
                                                                    loop_session):
    path = tmp_path / "llm-recordings.jsonl"
    path.write_text(entry() + "\n")
    with monkeypatch.context() as small:
        small.setattr(recordings_mod, "MAX_FILE_BYTES", 10)
        with pytest.raises(RecordingsUnavailable, match="more than the 0 MB a notebook's"):
            Recordings(str(path)).get(KEY)
    folder = tmp_path / "a-folder.jsonl"
    folder.mkdir()
    with pytest.raises(RecordingsUnavailable, match="cannot use the recordings file .*a-folder"):
        Recordings(str(folder)).get(KEY)
    # Recording into it is a warning: the call is answered and logged all the same.
    loop_session.config.recordings = str(folder)
    loop_session.config.replay = "record"
    with pytest.warns(UserWarning, match="not recorded: cannot use the recordings file"):
        r = loop_session.ask("still answered", model="loop/m")
    assert r.text and loop_session.log.call(r.id)["status"] == "ok"


def test_m052_marks_replayed_calls_and_keeps_them_out_of_the_latency_histograms(tmp_path):
    from llm_notebook.log import Log

    log = Log(str(tmp_path / "log.db"))
    log.insert_calls([
        {"model": "m", "status": "ok", "duration_ms": 500.0, "replayed": False},
        {"model": "m", "status": "ok", "duration_ms": 0.1, "replayed": True},
    ])
    db = sqlite3.connect(str(tmp_path / "log.db"))
    assert db.execute("SELECT replayed FROM calls ORDER BY id").fetchall() == [(0,), (1,)]
    calls, buckets = db.execute("SELECT calls, duration_buckets FROM usage_hour_totals").fetchone()
    assert calls == 2 and sum(json.loads(buckets).values()) == 1
    # A row inserted by another tool without the column is not replayed.
    db.execute("INSERT INTO calls (ts, model, status) VALUES (0, 'x', 'ok')")
    assert db.execute("SELECT replayed FROM calls WHERE model = 'x'").fetchone() == (0,)


def test_a_providers_model_replays_without_its_key(ipshell, nb_session, recordings_file,
                                                   monkeypatch):
    """The author called openai/gpt-4o-mini with their key; whoever replays has none."""
    from llm_notebook.call import outcome as outcomes
    from llm_notebook.call.replay import Replay
    from llm_notebook.errors import MissingKeyError

    nb_session.config.replay = "replay"
    route = nb_session.resolve("openai/gpt-4o-mini")        # no key needed to name it
    assert route.missing_key and route.api_key is None
    replay = Replay.of(nb_session)

    def recorded(messages, text):
        key = replay.key(route, messages, {})
        answer = outcomes.Outcome("ok", text, 0.0, 10.0, input_tokens=3, output_tokens=2,
                                  cost=1e-5)
        replay.add([replay.line(key, route, messages, {}, answer)])

    recorded([{"role": "user", "content": "Say hi"}], "Hi from OpenAI")
    recorded([{"role": "user", "content": "Country of Lima?"}], "Peru")
    recorded([{"role": "user", "content": "Tell me more"}], "More from OpenAI")
    r = nb_session.ask("Say hi", model="openai/gpt-4o-mini")
    assert (r.text, r.replayed, r.cost) == ("Hi from OpenAI", True, 0.0)
    out = pd.DataFrame({"city": ["Lima"]}).llm.map("Country of {city}?", model="openai/gpt-4o-mini",
                                                   progress=False)
    assert out.tolist() == ["Peru"]
    cap = ok(ipshell, "%%llm -m openai/gpt-4o-mini --new\nTell me more")
    assert "More from OpenAI" in cap.outputs[-1].data["text/plain"]
    # auto: what is recorded replays; what would be sent needs the key, and says so in one line
    nb_session.config.replay = "auto"
    assert nb_session.ask("Say hi", model="openai/gpt-4o-mini").replayed
    calls = nb_session.log.count_calls()
    with pytest.raises(MissingKeyError, match="no API key for openai: set OPENAI_API_KEY"):
        nb_session.ask("Something new", model="openai/gpt-4o-mini")
    with pytest.raises(MissingKeyError):
        nb_session.batch(["Say hi", "Something new"], model="openai/gpt-4o-mini", progress=False)
    assert nb_session.log.count_calls() == calls             # refused before sending
    # with replay off, naming the model without its key fails at once, as it always did
    nb_session.config.replay = "off"
    with pytest.raises(MissingKeyError):
        nb_session.resolve("openai/gpt-4o-mini")
