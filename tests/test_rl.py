import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from scaling.config import ConfigError, RLConfig, validate_rl
from scaling.model import init_params, token_logprobs
from scaling.optim import TrainState, constant, optimizer
from scaling.rl import (
    B2,
    PromptBatch,
    RLHyper,
    RLSpec,
    completion_mask,
    group_advantages,
    policy_loss,
    rl_step,
    sample_group,
    score_group,
)
from scaling.sample import left_pad
from scaling.specs import ModelConfig
from scaling.tasks import exact_answer, generate, get_task
from scaling.tokenizer import EOS, VOCAB_SIZE


def test_advantages_against_hand_computed_values():
    r = jnp.array([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 1.0]])
    adv, keep = group_advantages(r, "dr_grpo")
    np.testing.assert_allclose(adv, [[0.5, -0.5, -0.5, 0.5], [0, 0, 0, 0], [-0.25, -0.25, -0.25, 0.75]])
    assert keep.tolist() == [True, False, True]  # the all-equal group is dropped
    adv, _ = group_advantages(r, "grpo")
    np.testing.assert_allclose(adv[0], [1, -1, -1, 1], atol=1e-5)
    np.testing.assert_allclose(adv[1], 0.0)
    adv, _ = group_advantages(r, "rloo")
    np.testing.assert_allclose(adv[0], [2 / 3, -2 / 3, -2 / 3, 2 / 3], atol=1e-6)
    np.testing.assert_allclose(adv[2], [-1 / 3, -1 / 3, -1 / 3, 1.0], atol=1e-6)


def test_clipped_objective_has_no_gradient_outside_the_clip_range():
    old = jnp.zeros((4, 1))
    ref = jnp.zeros((4, 1))
    mask = jnp.ones((4, 1))
    adv = jnp.array([1.0, -1.0, 1.0, -1.0])
    # ratios 1.5 (A>0, above 1+eps), 0.5 (A<0, below 1-eps): clipped; 1.05 and 0.95: inside.
    logp = jnp.log(jnp.array([[1.5], [0.5], [1.05], [0.95]]))
    grad = jax.grad(lambda lp: policy_loss(lp, old, ref, adv, mask, 0.2, 0.0)[0])(logp)
    assert grad[0, 0] == 0.0 and grad[1, 0] == 0.0
    assert grad[2, 0] != 0.0 and grad[3, 0] != 0.0
    _, aux = policy_loss(logp, old, ref, adv, mask, 0.2, 0.0)
    assert float(aux["clip_frac"]) == 0.5
    # plain on-policy step: gradient is -A / n_tokens per token
    g = jax.grad(lambda lp: policy_loss(lp, lp * 0 + jax.lax.stop_gradient(lp), ref, adv, mask, None, 0.0)[0])(logp)
    np.testing.assert_allclose(g[:, 0], -adv / 4, rtol=1e-6)


def test_k3_kl_is_zero_at_the_reference_and_positive_elsewhere():
    lp = jnp.log(jnp.array([[0.3, 0.5]]))
    mask = jnp.ones((1, 2))
    _, aux = policy_loss(lp, lp, lp, jnp.zeros(1), mask, None, 1.0)
    assert float(aux["kl"]) == 0.0
    _, aux = policy_loss(lp, lp, lp - 0.3, jnp.zeros(1), mask, None, 1.0)
    assert float(aux["kl"]) > 0


def test_checker_agrees_in_numpy_and_jax_numpy_including_garbage():
    ex = generate(get_task("add"), np.repeat([1, 2, 3], 20), np.random.default_rng(0))
    rng = np.random.default_rng(1)
    perfect = np.stack([np.pad(r[p:], (0, 3)) for r, p in zip(ex.tokens, ex.prompt_len)])
    garbage = rng.integers(-3, VOCAB_SIZE + 5, perfect.shape)
    in_jit = jax.jit(lambda g, k: exact_answer(g, k, jnp))
    for gen in (perfect, garbage, np.where(rng.random(perfect.shape) < 0.05, 7, perfect)):
        np.testing.assert_array_equal(np.asarray(in_jit(jnp.asarray(gen), ex.key)), exact_answer(gen, ex.key))
    assert exact_answer(perfect, ex.key).mean() == 1.0


def test_completion_mask_stops_after_eos():
    gen = jnp.array([[5, 6, EOS, 7, 8], [5, 6, 7, 8, 9]])
    np.testing.assert_array_equal(completion_mask(gen), [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])


def test_one_rl_step_lowers_the_loss_on_its_batch():
    cfg = ModelConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64, max_len=96)
    params = init_params(cfg, jax.random.key(0))
    ex = generate(get_task("add"), np.full(4, 1), np.random.default_rng(0))
    prompts, valid = left_pad(ex.tokens, ex.prompt_len)
    batch = PromptBatch(prompts, valid, ex.key)
    hp = RLHyper(constant(3e-3), jnp.float32(1.0), jnp.float32(0.0), jnp.float32(0.5))  # noisy: every group informs
    spec = RLSpec(group_size=4, max_new=12)
    state = TrainState(jnp.int32(0), params, optimizer(hp.optim, b2=B2).init(params))
    new, m = rl_step(cfg, state, params, batch, jax.random.key(1), hp, spec=spec)
    assert m["pass_rate_P"].shape == (4,) and 0 < float(m["kept_groups"]) <= 1

    # Rebuild exactly the rollout the step used (rewards checked, then flipped), and score it before and after.
    k_sample, k_flip = jax.random.split(jax.random.key(1))
    gen = sample_group(cfg, params, batch, k_sample, hp, spec)
    np.testing.assert_array_equal(gen, m["completions"])
    checked = exact_answer(np.asarray(gen), np.repeat(ex.key, 4, 0))
    r = score_group(batch, gen, jnp.asarray(checked), k_flip, hp, spec)
    flip = np.asarray(jax.random.uniform(k_flip, (16,)) < 0.5)
    np.testing.assert_array_equal(r.reward_N, np.where(flip, 1.0 - checked, checked))
    np.testing.assert_allclose(r.reward_N.mean(), m["reward"])
    old_logp = token_logprobs(cfg, params, r.tokens_NxT, r.valid_NxT)

    def loss(p):
        logp = token_logprobs(cfg, p, r.tokens_NxT, r.valid_NxT)
        return float(policy_loss(logp, old_logp, old_logp, r.adv_N, r.mask_NxT1, None, 0.0)[0])

    assert loss(params) == pytest.approx(float(m["loss"]), abs=1e-6)
    assert loss(new.params) < loss(params)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"group_size": 1}, r"rl.group_size: expected an integer >= 2"),
        ({"band": (0.8, 0.2)}, r"rl.band: expected \[lo, hi\] with 0 <= lo <= hi <= 1"),
        ({"band": (-0.1, 0.5)}, r"rl.band"),
        ({"reward_flip": 1.5}, r"rl.reward_flip: expected a fraction in \[0, 1\]"),
        ({"advantage": "ppo"}, r"rl.advantage: expected one of"),
    ],
)
def test_bad_rl_configs_are_clear_errors(kw, message):
    with pytest.raises(ConfigError, match=message):
        validate_rl(RLConfig(**kw), "exp.yaml")


def test_rl_loop_runs_chunks_and_evaluates_a_data_ladder():
    from scaling.rl import band_weights
    from scaling.rl_train import rl_train
    from scaling.settings import EvalConfig

    cfg = ModelConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64, max_len=96)
    params = jax.vmap(lambda k: init_params(cfg, k))(jax.vmap(jax.random.key)(jnp.arange(2, dtype=jnp.uint32)))
    rc = RLConfig(group_size=2, prompts_per_step=4, reward_flip=0.3, prompts=16, ladder=(0, 8, 16), chunk_steps=2)
    ec = EvalConfig(difficulties=(1, 3), n_per_difficulty=4)
    res = rl_train(cfg, jax.tree.map(jnp.copy, params), get_task("add"), rc, [0, 1], (1, 2), ec)
    # The host path (sample, score on the host, update) takes the fused path's steps.
    host = rl_train(cfg, params, get_task("add"), rc, [0, 1], (1, 2), ec, host_check=True)
    np.testing.assert_array_equal(host.metrics["pass_rate"], res.metrics["pass_rate"])
    np.testing.assert_allclose(host.metrics["loss"], res.metrics["loss"], rtol=1e-4, atol=1e-6)
    pd.testing.assert_frame_equal(host.ladder, res.ladder, atol=1e-4)
    assert sorted(res.ladder["prompts_seen"].unique()) == [0, 8, 16]
    assert len(res.ladder) == 3 * 2 * 3  # ladder points x seeds x difficulties
    assert len(res.metrics) == 4 * 2 and {"reward", "kept_groups", "kl", "entropy", "clip_frac"} <= set(
        res.metrics.columns
    )
    assert RLConfig(prompts=1000, prompts_per_step=16, chunk_steps=8).ladder_volumes() == [0, 128, 256, 384, 640, 1024]
    w = band_weights(np.array([0.0, 0.5, 1.0]), (0.2, 0.8))
    assert w[1] > w[0] and w[1] > w[2] and w.sum() == pytest.approx(1.0)


def test_bench_rl_sections_report_throughput_sampling_share_and_the_host_path_cost():
    """The bench's RL sections on the smallest preset, one repeat (the README's figures come from the full
    ``scaling bench``)."""
    from scaling.bench import bench_rl, bench_rl_host

    rl = bench_rl(preset="d32", prompts=4, group_size=4, repeats=1)
    assert rl["completions_per_s"] > 0 and rl["completions_per_step"] == 4 * 4
    assert 0 < rl["sampling_share"] < 1  # sampling is part of the step, not all of it
    host = bench_rl_host(preset="d32", prompts=4, group_size=4, chunk=2, repeats=1)
    assert 0.5 < host["host_path_cost"] < 10 and host["host_check_ms"] > 0  # the same steps, scored on the host
