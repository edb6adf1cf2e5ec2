import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from scaling.errors import ScalingError
from scaling.model import (
    Transformer,
    apply,
    apply_cached,
    attention,
    empty_cache,
    init_params,
    token_logprobs,
    tokens_before,
)
from scaling.sample import greedy, left_pad
from scaling.specs import PRESETS, ModelConfig, flops_per_token, get_preset, param_counts

TINY = ModelConfig(d_model=32, n_layers=2, n_heads=2, d_ff=64, max_len=32)


def tree_size(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("name", list(PRESETS))
def test_param_counts_match_the_parameter_tree(name):
    cfg = PRESETS[name]
    abstract = nnx.eval_shape(lambda: Transformer(cfg, rngs=nnx.Rngs(0)))  # no memory for big presets
    params = nnx.state(abstract, nnx.Param)
    counts = param_counts(cfg)
    assert tree_size(params) == counts["total"]
    embedding = int(np.prod(abstract.embed.shape)) + tree_size(nnx.state(abstract.head, nnx.Param))
    assert counts["total"] - counts["non_embedding"] == embedding
    trigram = dataclasses.replace(cfg, inputs="trigram")  # and a table per predecessor
    abstract = nnx.eval_shape(lambda: Transformer(trigram, rngs=nnx.Rngs(0)))
    assert tree_size(nnx.state(abstract, nnx.Param)) == param_counts(trigram)["total"] == counts["total"] + embedding


def test_ladder_spans_three_decades_with_depth_and_width_growing_together():
    sizes = [param_counts(c)["non_embedding"] for c in PRESETS.values()]
    assert sizes == sorted(sizes) and sizes[-1] / sizes[0] > 1e4
    depths = [c.n_layers for c in PRESETS.values()]
    assert depths == sorted(depths) and depths[-1] > 10 * depths[0]


def test_flops_per_token_follow_the_convention():
    cfg = get_preset("d64")
    f = flops_per_token(cfg, seq_len=40)
    D, L, V = 64, 2, cfg.vocab_size
    assert f["forward"] == 2 * (L * 12 * D * D + D * V) + 4 * L * 40 * D
    assert f["train"] == 3 * f["forward"]


def test_causality_no_gradient_from_future_tokens():
    params = init_params(TINY, jax.random.key(0))
    tokens = jnp.asarray(np.random.default_rng(0).integers(4, 40, (2, 16)))
    t = 7

    def logit_at_t(p):
        return apply(TINY, p, tokens)[:, t].sum()

    grad_embed = jax.grad(logit_at_t)(params)["embed"][...]
    future = np.unique(np.asarray(tokens[:, t + 1 :]))
    past = np.unique(np.asarray(tokens[:, : t + 1]))
    only_future = np.setdiff1d(future, past)
    assert only_future.size > 0
    np.testing.assert_array_equal(np.asarray(grad_embed)[only_future], 0.0)
    assert np.abs(np.asarray(grad_embed)[past]).sum() > 0
    # and changing future tokens leaves earlier logits bit-identical
    changed = tokens.at[:, t + 1 :].set(5)
    np.testing.assert_array_equal(apply(TINY, params, tokens)[:, : t + 1], apply(TINY, params, changed)[:, : t + 1])


def test_attention_backward_matches_autodiff_of_the_forward():
    rng = np.random.default_rng(0)
    q, k, v = (jnp.asarray(rng.standard_normal((2, 3, 7, 8)), jnp.float32) for _ in range(3))
    mask = np.tril(np.ones((7, 7), bool))[None].repeat(2, 0)
    mask[1, :, :2] = False  # left padding: queries 0 and 1 of the second row see no valid key
    dout = jnp.asarray(rng.standard_normal(q.shape), jnp.float32)

    def reference(q, k, v):
        scores = jnp.einsum("bhtk,bhsk->bhts", q, k) / jnp.sqrt(8.0)
        probs = jax.nn.softmax(jnp.where(mask[:, None], scores, -1e30), axis=-1)
        return jnp.einsum("bhts,bhsk->bhtk", probs, v)

    out, vjp = jax.vjp(lambda q, k, v: attention(q, k, v, jnp.asarray(mask)), q, k, v)
    ref_out, ref_vjp = jax.vjp(reference, q, k, v)
    np.testing.assert_allclose(out, ref_out, atol=1e-5)
    for got, want in zip(vjp(dout), ref_vjp(dout), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_log_likelihood_batched_over_seeds_matches_each_seed_alone():
    # Seeds are batched with vmap (evaluation, and training on accelerators). sum(one_hot * logits) -
    # logsumexp compiled wrongly for 3+ seeds on XLA's CPU backend, off by several nats per token.
    cfg = ModelConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64, max_len=57)
    params_R = jax.vmap(lambda k: init_params(cfg, k))(jax.random.split(jax.random.key(0), 4))
    tokens = jax.random.randint(jax.random.key(1), (256, 57), 0, cfg.vocab_size)
    fn = jax.jit(lambda p: token_logprobs(cfg, p, tokens, entropy=True))
    batched = jax.jit(jax.vmap(fn))(params_R)
    for r in range(4):
        alone = fn(jax.tree.map(lambda x, r=r: x[r], params_R))
        for b, a in zip(batched, alone, strict=True):
            np.testing.assert_allclose(b[r], a, rtol=1e-5, atol=1e-5)
    logits = apply(cfg, jax.tree.map(lambda x: x[0], params_R), tokens[:, :-1])
    expect = jnp.take_along_axis(jax.nn.log_softmax(logits), tokens[:, 1:, None], axis=-1)[..., 0]
    np.testing.assert_allclose(batched[0][0], expect, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("positions,inputs", [("rope", "token"), ("none", "token"), ("rope", "trigram")])
def test_kv_cache_decoding_matches_the_full_forward_pass(positions, inputs):
    cfg = dataclasses.replace(TINY, positions=positions, inputs=inputs)
    params = init_params(cfg, jax.random.key(1))
    tokens = jnp.asarray(np.random.default_rng(1).integers(4, 40, (3, 20)))
    full = apply(cfg, params, tokens)
    prevs = tokens_before(tokens, jnp.arange(tokens.shape[1]), cfg.predecessors)
    first = [p[:, :9] for p in prevs]
    logits, cache = apply_cached(cfg, params, tokens[:, :9], empty_cache(cfg, 3), pos=0, prevs=first)
    steps = [logits]
    for t in range(9, 20):
        logits, cache = apply_cached(
            cfg, params, tokens[:, t : t + 1], cache, pos=t, prevs=[p[:, t : t + 1] for p in prevs]
        )
        steps.append(logits)
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=2e-5)
    if inputs == "trigram":  # both predecessors are read: either one wrong changes the logits
        np.testing.assert_array_equal(np.stack([p[:, 5] for p in prevs], 1), tokens[:, [4, 3]])
        for back in range(2):
            wrong = [tokens[:, :9] if b == back else p for b, p in enumerate(first)]
            changed, _ = apply_cached(cfg, params, tokens[:, :9], empty_cache(cfg, 3), pos=0, prevs=wrong)
            assert float(jnp.abs(changed - steps[0]).max()) > 1e-3
        return
    # Without positions, one layer of causal attention is blind to the order of the tokens before the last
    # (it sums over them); rotary positions are not.
    one = dataclasses.replace(cfg, n_layers=1)
    params = jax.tree.map(lambda w: 3 * w, init_params(one, jax.random.key(1)))  # sharper attention
    swapped = tokens.at[:, [3, 5]].set(tokens[:, [5, 3]])
    change = float(jnp.abs(apply(one, params, swapped)[:, -1] - apply(one, params, tokens)[:, -1]).max())
    assert change < 1e-5 if positions == "none" else change > 1e-3  # rounding only / a real difference


@pytest.mark.parametrize("inputs", ["token", "trigram"])
def test_left_padding_does_not_change_greedy_continuations(inputs):
    cfg = dataclasses.replace(TINY, inputs=inputs)
    params = init_params(cfg, jax.random.key(2))
    rng = np.random.default_rng(3)
    rows = [rng.integers(4, 40, n) for n in (5, 9, 7)]
    tokens = np.zeros((3, 12), np.int32)
    for i, r in enumerate(rows):
        tokens[i, : len(r)] = r
    prompts, valid = left_pad(tokens, np.array([len(r) for r in rows]))
    together = np.asarray(greedy(cfg, params, prompts, valid, max_new=6))
    for i, r in enumerate(rows):
        alone = np.asarray(greedy(cfg, params, r[None].astype(np.int32), np.ones((1, len(r)), bool), max_new=6))
        np.testing.assert_array_equal(together[i], alone[0])


def test_bad_model_configs_are_clear_errors():
    with pytest.raises(ScalingError, match="unknown model preset 'd7'; choose one of"):
        get_preset("d7")
    with pytest.raises(ScalingError, match=r"model\.d_model must be positive"):
        ModelConfig(d_model=-8)
    with pytest.raises(ScalingError, match="heads"):
        ModelConfig(d_model=30, n_heads=4)
    with pytest.raises(ScalingError, match=r"positions: expected one of \['rope', 'none'\], got 'alibi'"):
        ModelConfig(positions="alibi")
    with pytest.raises(ScalingError, match=r"init: expected one of \['normal', 'fan_in'\], got 'xavier'"):
        ModelConfig(init="xavier")


@pytest.mark.parametrize("init", ["normal", "fan_in"])
def test_initial_weights_have_the_configured_scale(init):
    """N(0, 0.02^2), or N(0, 1/fan_in); the residual outputs scaled by 1/sqrt(2 L); the embedding N(0, 1)."""
    cfg = get_preset("d64", init=init)
    params = init_params(cfg, jax.random.key(0))
    block = params["blocks"][0]
    L, D, F = cfg.n_layers, cfg.d_model, cfg.d_ff
    want = {
        "qkv": 0.02 if init == "normal" else D**-0.5,
        "up": 0.02 if init == "normal" else D**-0.5,
        "attn_out": (0.02 if init == "normal" else D**-0.5) / (2 * L) ** 0.5,
        "down": (0.02 if init == "normal" else F**-0.5) / (2 * L) ** 0.5,
    }
    for name, std in want.items():
        np.testing.assert_allclose(np.std(np.asarray(block[name]["kernel"][...])), std, rtol=0.05, err_msg=name)
    np.testing.assert_allclose(np.std(np.asarray(params["embed"][...])), 1.0, rtol=0.05)
