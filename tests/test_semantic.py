"""Semantic DataFrame operators through the loopback server (real HTTP, lean path).

The judge model (`loopback-judge`, llm_notebook/testing/loopback_rules.py) answers from the
prompt by fixed rules, so each operator has a known right answer; the server's own record of
requests counts the calls each operator made.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from llm_notebook.semantic import agg as agg_mod
from llm_notebook.semantic import join as join_mod
from llm_notebook.semantic import topk as topk_mod

JUDGE = "loop/loopback-judge"
EMBED = "loop/loopback-embed"
QUIET = dict(model=JUDGE, progress=False)


def chat_calls(loopback) -> int:
    return sum(1 for r in loopback.requests() if r["path"].endswith("/chat/completions"))


def embedding_calls(loopback) -> int:
    return loopback.stats()["embeddings_requests"]


@pytest.fixture
def tickets():
    return pd.DataFrame({
        "text": ["I want a refund now", "great product", "refund please, it arrived broken",
                 "love it", None, "the box was late"],
        "stars": [1, 5, 1, 5, 3, 2],
    }, index=list("abcdef"))


# -- filter ----------------------------------------------------------------------------------

def test_filter_keeps_the_rows_judged_true_with_one_constrained_call_per_row(loop_session, loopback,
                                                                             tickets):
    out = tickets.llm.filter("the customer asks for a 'refund'", **QUIET)
    assert list(out.index) == ["a", "c"]
    assert chat_calls(loopback) == 6                      # one per row, the empty cell too
    body = loopback.requests()[0]["body"]
    schema = body["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["answer"] == {"type": "boolean"}
    assert out.attrs["llm"]["kept"] == 2 and out.attrs["llm"]["unjudged"] == 0


def test_filter_again_is_all_cache_and_its_estimate_says_so(loop_session, loopback, tickets):
    condition = "the customer asks for a 'refund'"
    before = tickets.llm.filter.estimate(condition, model=JUDGE)
    assert before.calls == 6 and before.first.to_send == 6 and "one per row" in str(before)
    assert chat_calls(loopback) == 0                       # estimating sends nothing
    tickets.llm.filter(condition, **QUIET)
    loopback.reset()
    again = tickets.llm.filter(condition, **QUIET)
    assert list(again.index) == ["a", "c"] and chat_calls(loopback) == 0
    assert tickets.llm.filter.estimate(condition, model=JUDGE).first.cached == 6


def test_filter_mask_is_na_where_a_row_failed(loop_session, loopback, tickets):
    from llm_notebook.semantic import filter_mask

    loopback.script([{"kind": "400", "match": "great product", "times": 1}])
    mask = filter_mask(loop_session, tickets, "the customer asks for a 'refund'", **QUIET)
    assert str(mask.dtype) == "boolean"
    assert mask.isna().tolist() == [False, True, False, False, False, False]
    assert mask.fillna(False).tolist() == [True, False, True, False, False, False]


def test_series_filter_returns_the_values(loop_session, loopback, tickets):
    out = tickets["text"].llm.filter("mentions 'late' delivery", **QUIET)
    assert out.tolist() == ["the box was late"] and out.index.tolist() == ["f"]


def test_filter_refuses_an_empty_condition_before_any_call(loop_session, loopback, tickets):
    with pytest.raises(ValueError, match="condition"):
        tickets.llm.filter("  ", **QUIET)
    assert chat_calls(loopback) == 0


# -- classify and extract --------------------------------------------------------------------

def test_classify_gives_one_label_per_row_or_other(loop_session, loopback, tickets):
    out = tickets.llm.classify(["refund", "love", "late"], columns="text", **QUIET)
    # (row e has nothing to classify: an empty row is not sent, its label is <NA>)
    assert out.astype(object).where(out.notna(), None).tolist() == \
        ["refund", "other", "refund", "love", None, "late"]
    assert list(out.cat.categories) == ["refund", "love", "late", "other"]
    enum = loopback.requests()[0]["body"]["response_format"]["json_schema"]["schema"]
    assert enum["properties"]["label"]["enum"] == ["refund", "love", "late", "other"]
    assert chat_calls(loopback) == 5
    assert tickets.llm.classify.estimate(["refund", "love"], model=JUDGE).calls == 6


def test_classify_refuses_fewer_than_two_labels(loop_session, tickets):
    from llm_notebook.errors import UserError

    with pytest.raises(UserError):           # one line in IPython, not a traceback
        tickets.llm.classify([], **QUIET)
    with pytest.raises(ValueError, match="at least two"):
        tickets.llm.classify(["refund"], **QUIET)
    with pytest.raises(ValueError, match="list"):
        tickets.llm.classify("refund", **QUIET)


def test_extract_fills_columns_from_the_schema(loop_session, loopback):
    orders = pd.DataFrame({"note": ["order: 17, total: 30.5", "order: 18, total: 12"]})
    schema = {"type": "object", "properties": {"order": {"type": "integer"},
                                               "total": {"type": "number"}}}
    out = orders.llm.extract(schema, **QUIET)
    assert out["order"].tolist() == [17, 18] and out["total"].tolist() == [30.5, 12.0]
    assert chat_calls(loopback) == 2
    assert orders.llm.extract.estimate(schema, model=JUDGE).calls == 2


# -- topk ------------------------------------------------------------------------------------

def test_topk_rounds_are_bounded_and_find_the_true_top_k(loop_session, loopback):
    # Row i mentions 'urgent' a number of times that is unique per row: a known order.
    counts = [(i * 7) % 30 for i in range(30)]
    frame = pd.DataFrame({"text": [" ".join(["urgent"] * c + ["note"]) for c in counts]})
    estimate = frame.llm.topk.estimate("how 'urgent' it is", 3, model=JUDGE, group=6)
    assert estimate.calls == topk_mod.calls_bound(30, 3, 6) == 5 + 2 + 1 + 1
    out = frame.llm.topk("how 'urgent' it is", 3, group=6, **QUIET)
    best = sorted(range(30), key=lambda i: -counts[i])[:3]
    assert list(out.index) == best
    assert chat_calls(loopback) == out.attrs["llm"]["calls"] <= estimate.calls
    assert out.attrs["llm"]["rounds"] == topk_mod.rounds(30, 3, 6)


def test_topk_group_is_at_least_twice_k_so_rounds_shrink():
    assert topk_mod.rounds(1000, 5, 20) == [50, 13, 3, 1]
    assert topk_mod.rounds(4, 5, 10) == [1]
    assert topk_mod._check(10, 4, 3) == (4, 8)
    with pytest.raises(ValueError, match="k must"):
        topk_mod._check(10, 0, None)


def test_topk_keeps_a_groups_rows_when_the_model_names_strangers():
    assert topk_mod._winners([4, 5, 6], {"best": [6, 99, 6]}, 2) == [6, 4]
    assert topk_mod._winners([4, 5, 6], None, 2) == [4, 5]


# -- join ------------------------------------------------------------------------------------

def _join_frames(n: int):
    topics = ["refund", "shipping", "warranty", "invoice", "password"]
    left = pd.DataFrame({"ticket": [f"question {i} about {topics[i % 5]} today" for i in range(n)]})
    right = pd.DataFrame({"article": [f"help page {j}: {topics[j % 5]} explained"
                                      for j in range(n)]})
    condition = ("the article answers the ticket: they share a topic such as "
                 + ", ".join(f"'{t}'" for t in topics))
    return left, right, condition


def test_join_with_blocking_makes_fewer_calls_and_finds_the_same_pairs(loop_session, loopback):
    loop_session.add_endpoint("emb", loopback.url)
    left, right, condition = _join_frames(20)
    full = left.llm.join(right, condition, blocking=False, **QUIET)
    full_calls = chat_calls(loopback)
    assert full_calls == 400 and full.attrs["llm"]["pairs_judged"] == 400
    loopback.reset()
    blocked = left.llm.join(right, condition, blocking=True, candidates=4, cache=False,
                            embedding_model=EMBED, **QUIET)
    calls = chat_calls(loopback)
    assert calls == blocked.attrs["llm"]["pairs_judged"] < 400
    assert calls <= join_mod.pairs_bound(20, 20, 4, True) == 160
    assert embedding_calls(loopback) == 1                  # 40 texts in one request
    assert sorted(blocked.index) == sorted(full.index)
    assert len(full) == 80                                  # each ticket: its 4 articles
    assert list(blocked.columns) == ["ticket", "article"]


def test_join_estimate_bounds_calls_without_sending(loop_session, loopback):
    left, right, condition = _join_frames(20)
    est = left.llm.join.estimate(right, condition, model=JUDGE, embedding_model=EMBED)
    assert est.calls == 200 and "blocking" in str(est) and est.embeddings == 40   # (20+20)×5
    assert left.llm.join.estimate(right, condition, model=JUDGE, blocking=False).calls == 400
    assert chat_calls(loopback) == 0 and embedding_calls(loopback) == 0


def test_join_plans_blocking_only_when_it_is_cheaper():
    assert not join_mod.blocks(3, 3, 5, None)
    assert join_mod.blocks(200, 200, 5, None)
    assert join_mod.pairs_bound(200, 200, 5, None) == 2000
    assert join_mod.pairs_bound(3, 3, 5, None) == 9


def test_join_suffixes_shared_column_names(loop_session, loopback):
    left = pd.DataFrame({"name": ["a 'refund' case", "other"]})
    right = pd.DataFrame({"name": ["'refund' policy"]})
    out = left.llm.join(right, "both are about a 'refund'", blocking=False, **QUIET)
    assert list(out.columns) == ["name_left", "name_right"] and len(out) == 1


# -- agg -------------------------------------------------------------------------------------

def test_agg_folds_parts_level_by_level_to_the_right_total(loop_session, loopback):
    frame = pd.DataFrame({"amount": list(range(1, 41))})
    est = frame.llm.agg.estimate("add up the amounts", model=JUDGE, part_tokens=40, max_tokens=8)
    answer = frame.llm.agg("add up the amounts", part_tokens=40, max_tokens=8, **QUIET)
    assert answer == str(sum(range(1, 41)))
    assert len(answer.levels) >= 2 and answer.levels[-1] == 1
    assert chat_calls(loopback) == answer.calls <= est.calls


def test_agg_in_one_call_when_the_rows_fit(loop_session, loopback):
    frame = pd.DataFrame({"amount": [1, 2, 3]})
    answer = frame.llm.agg("add up the amounts", **QUIET)
    assert answer == "6" and answer.levels == [1] and chat_calls(loopback) == 1


def test_agg_fails_in_one_line_when_a_part_failed(loop_session, loopback):
    from llm_notebook.errors import LLMError

    loopback.script([{"kind": "400", "times": 1}])
    with pytest.raises(LLMError, match="no answer covers every row"):
        pd.DataFrame({"amount": [1, 2]}).llm.agg("add up", **QUIET)


def test_agg_pack_takes_two_per_part_when_folding():
    entries = [(i, "x" * 400) for i in range(5)]
    assert len(agg_mod.pack(entries, 10)) == 5
    assert [len(p) for p in agg_mod.pack(entries, 10, 2)] == [2, 2, 1]
    assert agg_mod.levels_bound([100] * 5, 10, 100) == [5, 3, 2, 1]


# -- embeddings and search -------------------------------------------------------------------

def test_embed_is_cached_in_the_log(loop_session, loopback, tickets):
    from llm_notebook.embeddings import store

    before = tickets.llm.embed.estimate("text", model=EMBED)
    assert before.calls == 1 and before.embeddings == 5 and embedding_calls(loopback) == 0
    vectors = tickets.llm.embed("text", model=EMBED)
    assert len(vectors) == 6 and vectors.iloc[0].dtype == np.float32
    assert tickets.llm.search.estimate("new words", columns="text", model=EMBED).embeddings == 1
    assert embedding_calls(loopback) == 1
    assert store.count(loop_session.log, EMBED) == 5
    assert not vectors["e"].any()                # an empty cell: a zero vector, never sent
    again = tickets.llm.embed("text", model=EMBED)
    assert embedding_calls(loopback) == 1
    assert np.array_equal(np.stack(again.tolist()), np.stack(vectors.tolist()))


def test_search_returns_the_nearest_rows(loop_session, loopback, tickets):
    out = tickets.llm.search("refund refund", 2, columns="text", model=EMBED)
    assert set(out.index) == {"a", "c"}
    assert out["similarity"].is_monotonic_decreasing and out["similarity"].iloc[0] > 0.3


def test_embeddings_errors_are_one_line_llm_errors(loop_session, loopback, tickets):
    from llm_notebook.errors import LLMError

    loop_session.add_endpoint("nowhere", "http://127.0.0.1:9/v1")
    with pytest.raises(LLMError, match="connection"):
        tickets.llm.embed("text", model="nowhere/x")


def test_embeddings_in_replay_mode_need_a_cache_or_the_embedded_model(loop_session, loopback,
                                                                      tickets, tmp_path):
    from llm_notebook.errors import EmbeddingsNotRecorded

    loop_session.config.recordings = str(tmp_path / "rec.jsonl")
    loop_session.config.replay = "replay"
    with pytest.raises(EmbeddingsNotRecorded, match="local/smollm2"):
        tickets.llm.search("refund", 2, columns="text", model=EMBED)
    assert embedding_calls(loopback) == 0


def test_embeddings_through_litellm_reach_the_server(loop_session, loopback):
    loop_session.add_endpoint("viallm", loopback.url, via="litellm", api_key="sk-loop-test")
    vectors = pd.Series(["refund", "refund please"]).llm.embed(model="viallm/loopback-embed")
    assert embedding_calls(loopback) == 1 and vectors.iloc[0].shape == (256,)
    a, b = vectors
    assert float(a @ b) > 0.5


@pytest.mark.local_model
def test_the_embedded_model_embeds_offline_and_caches(nb_session):
    from llm_notebook.embeddings import embed, store

    texts = ["the cat sat on the mat", "a cat was sitting on a mat", "quarterly tax invoice"]
    vectors = embed(nb_session, texts, "local/smollm2")
    assert vectors.shape == (3, 576) and vectors.dtype == np.float32
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    assert unit[0] @ unit[1] > unit[0] @ unit[2]            # near texts are nearer
    assert store.count(nb_session.log, "local/smollm2") == 3
    assert np.array_equal(embed(nb_session, texts[:1], "local/smollm2")[0], vectors[0])


@pytest.mark.local_model
def test_filter_with_the_embedded_model_is_constrained_to_a_boolean(nb_session):
    from llm_notebook.semantic import filter_mask

    frame = pd.DataFrame({"text": ["I want my money back", "Lovely weather today"]})
    mask = filter_mask(nb_session, frame, "the text is about money", model="local/smollm2",
                       max_tokens=16, progress=False)
    assert str(mask.dtype) == "boolean" and mask.notna().all()   # words vary; the shape does not


def test_operators_keep_the_callers_system_prompt_and_refuse_a_schema(loop_session, loopback,
                                                                      tickets):
    tickets.llm.filter("asks for a 'refund'", system="You are strict.", **QUIET)
    system = loopback.requests()[0]["body"]["messages"][0]["content"]
    assert system.startswith("You are strict.\n\nDecide whether the condition")
    with pytest.raises(ValueError, match="their own schema"):
        tickets.llm.filter("asks for a 'refund'", schema={"type": "object"}, **QUIET)
    with pytest.raises(ValueError, match="runs in stages"):
        tickets.llm.topk("most 'urgent'", 2, background=True, **QUIET)


def test_empty_frames_cost_nothing(loop_session, loopback):
    empty = pd.DataFrame({"text": []})
    assert len(empty.llm.filter("asks for a 'refund'", **QUIET)) == 0
    assert len(empty.llm.topk("most 'urgent'", 2, **QUIET)) == 0
    assert len(empty.llm.join(pd.DataFrame({"x": ["a"]}), "same 'a'", **QUIET)) == 0
    with pytest.raises(ValueError, match="at least one row"):
        empty.llm.agg("sum", **QUIET)
    assert chat_calls(loopback) == 0


def test_each_embeddings_request_is_a_logged_call(loop_session, loopback, tickets):
    from llm_notebook.errors import LLMError

    tickets.llm.embed("text", model=EMBED)
    calls = loop_session.history()
    assert len(calls) == 1
    row = calls.iloc[0]
    # (5 texts: row e's empty cell is a zero vector, not sent)
    assert row["status"] == "ok" and row["prompt"] == "[embeddings of 5 texts]"
    assert row["input_tokens"] > 0
    loopback.script([{"kind": "500", "times": 1}])
    with pytest.raises(LLMError):
        pd.Series(["never embedded"]).llm.embed(model=EMBED)
    assert loop_session.history()["status"].tolist().count("error") == 1


def test_embeddings_respect_the_session_budget(loop_session, loopback, tickets):
    from llm_notebook.errors import BudgetExceeded

    loop_session.config.prices = {"loop/*": {"input": 1000.0, "output": 1000.0}}  # $0.001/token
    loop_session.config.budget_session = 0.001
    with pytest.raises(BudgetExceeded):
        tickets.llm.embed("text", model=EMBED)
    assert embedding_calls(loopback) == 0


def test_one_stage_operators_run_in_the_background(loop_session, loopback, tickets):
    from llm_notebook.semantic.plan import OperatorJob

    job = tickets.llm.filter("the customer asks for a 'refund'", background=True, **QUIET)
    assert isinstance(job, OperatorJob)
    kept = job.result(timeout=30)
    assert list(kept.index) == ["a", "c"] and job.status == "done"
    labels = tickets["text"].llm.classify(["refund", "love"], background=True, **QUIET)
    assert labels.result(timeout=30).astype(object).tolist()[:4] == ["refund", "other", "refund",
                                                                     "love"]
    values = tickets["text"].llm.filter("mentions 'late' delivery", background=True, **QUIET)
    assert values.result(timeout=30).tolist() == ["the box was late"]
    left = pd.DataFrame({"name": ["a 'refund' case", "other"]})
    pairs = left.llm.join(pd.DataFrame({"name": ["'refund' policy"]}), "both are about a 'refund'",
                          blocking=False, background=True, **QUIET)
    assert len(pairs.result(timeout=30)) == 1
    fields = tickets.llm.extract({"type": "object", "properties": {"stars": {"type": "integer"}}},
                                 background=True, **QUIET)
    assert fields.result(timeout=30)["stars"].tolist()[:2] == [1, 5]


def test_a_missing_column_is_named_before_anything_is_sent(loop_session, loopback, tickets):
    from llm_notebook.errors import OperatorArgumentError

    with pytest.raises(OperatorArgumentError, match="no column 'txt'"):
        tickets.llm.filter("asks for a 'refund'", columns="txt", **QUIET)
    assert chat_calls(loopback) == 0
