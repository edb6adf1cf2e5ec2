import dataclasses
import math

import jax
import numpy as np
import pandas as pd
import pytest

from scaling.errors import ScalingError
from scaling.evaluate import (
    budget_rows,
    eval_examples,
    pass_at_k,
    rethink_context_rows,
    rethink_in_context,
    sampling_rows,
    split_generation,
    summarize,
)
from scaling.model import init_params
from scaling.sample import budgets_width, decode, decode_budgets, left_pad
from scaling.settings import EvalConfig
from scaling.specs import ModelConfig
from scaling.tasks import get_task
from scaling.tokenizer import EOS, EOT

CFG = ModelConfig(d_model=32, n_layers=2, n_heads=2, d_ff=64, max_len=96)
PARAMS = init_params(CFG, jax.random.key(0))


def prompts(n=6, seed=0):
    rng = np.random.default_rng(seed)
    toks = rng.integers(4, 40, (n, 10)).astype(np.int32)
    return left_pad(toks, rng.integers(5, 11, n))


def first_eot(row):
    hits = np.flatnonzero(row == EOT)
    return int(hits[0]) if hits.size else len(row)


def test_budget_forcing_inserts_eot_after_b_thinking_tokens():
    p, v = prompts()
    for b in (0, 2, 5):
        out = np.asarray(decode(CFG, PARAMS, p, v, jax.random.key(0), budget=b, max_new=12))
        assert all(first_eot(r) <= b for r in out)
        assert any(first_eot(r) == b for r in out)


def test_min_think_suppresses_early_eot():
    p, v = prompts()
    out = np.asarray(decode(CFG, PARAMS, p, v, jax.random.key(1), 1.0, min_think=8, max_new=12))
    assert all(first_eot(r) >= 8 for r in out)


def test_temperature_is_traced_and_sampling_is_seeded():
    p, v = prompts()
    before = decode._cache_size()
    a = np.asarray(decode(CFG, PARAMS, p, v, jax.random.key(3), 1.0, max_new=10))
    b = np.asarray(decode(CFG, PARAMS, p, v, jax.random.key(3), 1.0, max_new=10))
    c = np.asarray(decode(CFG, PARAMS, p, v, jax.random.key(4), 0.7, max_new=10))
    greedy = np.asarray(decode(CFG, PARAMS, p, v, jax.random.key(4), 0.0, max_new=10))
    assert decode._cache_size() - before == 1  # one program for every temperature
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    greedy2 = np.asarray(decode(CFG, PARAMS, p, v, jax.random.key(9), 0.0, max_new=10))
    np.testing.assert_array_equal(greedy, greedy2)  # temperature 0 ignores the key


def test_top_k_one_is_greedy():
    p, v = prompts()
    greedy = np.asarray(decode(CFG, PARAMS, p, v, jax.random.key(0), max_new=8))
    top1 = np.asarray(decode(CFG, PARAMS, p, v, jax.random.key(5), 1.5, max_new=8, top_k=1))
    np.testing.assert_array_equal(greedy, top1)


@pytest.mark.parametrize("inputs", ["token", "trigram"])
def test_all_budgets_from_one_pass_equal_separate_forced_decodes(inputs):
    cfg = dataclasses.replace(CFG, inputs=inputs)  # trigram: each branch reads its own predecessors
    params = init_params(cfg, jax.random.key(0))
    p, v = prompts(8, seed=2)
    budgets, answer_len = (0, 1, 3, 6, 10), 4
    together = np.asarray(decode_budgets(cfg, params, p, v, budgets=budgets, answer_len=answer_len))
    width = budgets_width(budgets, answer_len)
    for j, b in enumerate(budgets):
        alone = np.asarray(decode(cfg, params, p, v, jax.random.key(0), budget=b, max_new=width))
        n = b + answer_len + 1  # what the fork decodes; the rest of its row is padding
        np.testing.assert_array_equal(together[j][:, :n], alone[:, :n])


def test_pass_at_k_matches_its_definition():
    n = 10
    for c in range(n + 1):
        for k in (1, 3, 10):
            expect = 1 - math.comb(n - c, k) / math.comb(n, k)
            assert pass_at_k(n, np.array([c]), k)[0] == pytest.approx(expect)


def test_split_generation_accounts_tokens():
    ids = np.array([[7, 8, EOT, 5, 6, EOS, 0], [7, 8, 9, 9, 9, 9, 9], [EOT, 5, EOS, 0, 0, 0, 0]])
    thinking, answer, answers = split_generation(ids)
    assert thinking.tolist() == [2, 7, 0]
    assert answer.tolist() == [3, 0, 2]
    assert answers[0] == np.array([5, 6], np.int32).tobytes() and answers[1] == b""


@pytest.fixture(scope="module")
def rows():
    task = get_task("add")
    cfg = ModelConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64, max_len=96)
    params = jax.vmap(lambda k: init_params(cfg, k))(jax.vmap(jax.random.key)(np.arange(2, dtype=np.uint32)))
    ec = EvalConfig(difficulties=(1, 2), n_per_difficulty=4)
    return (
        budget_rows(cfg, params, [0, 1], task, ec, [0, 2, 4]),
        sampling_rows(cfg, params, [0, 1], task, ec, [1, 2, 4], temperature=1.0),
    )


def test_strategy_tables_are_tidy_and_account_tokens(rows):
    budgets, sampled = rows
    assert len(budgets) == 2 * 3 * 8 * 2  # seeds x budgets x problems x (budget, oracle)
    assert (budgets["thinking_tokens"] <= budgets["budget"]).all()
    oracle = budgets[budgets["strategy"] == "oracle"]  # addition traces have 4d - 1 tokens
    np.testing.assert_array_equal(oracle["correct"], (4 * oracle["difficulty"] - 1 <= oracle["budget"]).astype(float))
    np.testing.assert_array_equal(oracle["thinking_tokens"], np.minimum(4 * oracle["difficulty"] - 1, oracle["budget"]))
    assert set(sampled["strategy"]) == {"majority", "pass@k", "best_of_n", "rethink"}
    for strategy, g in sampled.groupby("strategy"):
        spent = g.groupby("k")["total_tokens"].mean()
        assert spent.is_monotonic_increasing, strategy
    pk = sampled[sampled.strategy == "pass@k"].groupby("k")["correct"].mean()
    assert pk.is_monotonic_increasing
    s = summarize(budgets)
    assert {"accuracy", "lo", "hi", "mean_total_tokens"} <= set(s.columns)
    assert (s["lo"] <= s["accuracy"]).all() and (s["accuracy"] <= s["hi"]).all()


def test_bad_test_time_settings_are_clear_errors():
    task, ec = get_task("add"), EvalConfig(difficulties=(1, 1), n_per_difficulty=2)
    params = jax.vmap(lambda k: init_params(CFG, k))(jax.vmap(jax.random.key)(np.arange(1, dtype=np.uint32)))
    with pytest.raises(ScalingError, match="budgets must be >= 0"):
        budget_rows(CFG, params, [0], task, ec, [-1, 4])
    with pytest.raises(ScalingError, match="k must be >= 1"):
        sampling_rows(CFG, params, [0], task, ec, [0, 2])
    with pytest.raises(ScalingError, match="temperature > 0"):
        sampling_rows(CFG, params, [0], task, ec, [2], temperature=0.0)
    p, v = prompts()
    with pytest.raises(ScalingError, match="exceed the model's max_len"):
        decode(CFG, PARAMS, p, v, jax.random.key(0), max_new=200)


def test_rethinking_in_context_continues_the_earlier_rounds():
    """Round 2 is the model continuing prompt + round 1 (through its <eos>); capping the loop at k rounds
    spends more tokens as k grows, and at k = 1 it is the first round's verdict."""
    task, ec, rounds = get_task("add"), EvalConfig(difficulties=(1, 2), n_per_difficulty=6), 2
    ex = eval_examples(task, ec)
    G = task.max_new_tokens(range(1, 3))
    cfg = ModelConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64, max_len=int(ex.prompt_len.max()) + rounds * G)
    params = jax.vmap(lambda k: init_params(cfg, k))(jax.vmap(jax.random.key)(np.arange(2, dtype=np.uint32)))
    gen = rethink_in_context(cfg, params, [0, 1], task, ex, rounds, 1.0)
    assert gen.shape == (rounds, 2, len(ex), G)
    seed, width = 1, int(ex.prompt_len.max()) + (rounds - 1) * G
    contexts = []
    for n, first in enumerate(gen[0, seed]):  # each prompt, then its first round through the first <eos>
        ends = np.flatnonzero(first == EOS)
        contexts.append(np.concatenate([ex.tokens[n, : ex.prompt_len[n]], first[: ends[0] + 1 if ends.size else G]]))
    lengths = np.array([len(c) for c in contexts])
    prompts, valid = left_pad(np.stack([np.pad(c, (0, width - len(c))) for c in contexts]), lengths, width=width)
    key = jax.random.fold_in(jax.random.key(seed + 104729), 1)
    one = jax.tree.map(lambda x: x[seed], params)
    again = np.asarray(decode(cfg, one, prompts, valid, key, 1.0, max_new=G))
    np.testing.assert_array_equal(gen[1, seed], again)
    rows = rethink_context_rows(cfg, params, [0, 1], task, ec, rounds, temperature=1.0)
    assert set(rows["k"]) == {1, 2} and set(rows["strategy"]) == {"rethink_context"}
    spent = rows.pivot_table(index=["seed", "problem"], columns="k", values="total_tokens")
    assert (spent[1] <= spent[2]).all() and (spent[2] > spent[1]).any()
    k1 = rows[(rows["k"] == 1) & (rows["seed"] == 0)]
    np.testing.assert_array_equal(k1["correct"], task.check(gen[0, 0], ex.key))


def test_rows_split_into_blocks_within_the_attention_memory_give_the_same_greedy_results(monkeypatch):
    """Long traces are decoded in blocks of rows whose attention scores fit ``SCORE_BYTES`` (greedy accuracy
    and sampling through the same ``in_blocks``): task loss and every budget come out as from one block,
    the last block padded."""
    import scaling.evaluate as ev

    task, ec = get_task("add"), EvalConfig(difficulties=(1, 2), n_per_difficulty=5)
    cfg = ModelConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64, max_len=64)
    params = jax.vmap(lambda k: init_params(cfg, k))(jax.vmap(jax.random.key)(np.arange(2, dtype=np.uint32)))
    L = int(eval_examples(task, ec).prompt_len.max())

    def tables():
        return (
            ev.task_loss_table(cfg, params, [0, 1], task, ec, batch=10),
            budget_rows(cfg, params, [0, 1], task, ec, [0, 2, 8]),
        )

    whole = tables()
    monkeypatch.setattr(ev, "SCORE_BYTES", 4 * 2 * cfg.n_heads * L * cfg.max_len * 3)  # 3 of 10 rows a block
    assert ev.block_rows(cfg, 2, L, cfg.max_len, 10) == 3 and ev.block_rows(cfg, 2, L, cfg.max_len, 10, 512) == 3
    for a, b in zip(whole, tables(), strict=True):
        pd.testing.assert_frame_equal(a, b)
