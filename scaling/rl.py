"""On-policy RL with verifiable rewards: group sampling, group-relative advantages, one jitted step.

For each prompt, G completions are sampled from the current policy and scored by the exact
verifier. Advantages are relative to the group:
    dr_grpo  A_i = r_i - mean(r)                     (Dr. GRPO, the default)
    grpo     A_i = (r_i - mean(r)) / (std(r) + eps)  (GRPO's std normalisation)
    rloo     A_i = r_i - mean_{j != i} r_j           (leave-one-out)
Groups whose rewards are all equal carry no signal and are dropped. The loss is normalised per
token over the whole batch (not per sequence):
    L = -sum_t m_t [min(rho_t A, clip(rho_t, 1 - eps, 1 + eps) A) - beta k3_t] / sum_t m_t
with rho_t = pi(y_t) / pi_old(y_t) (1 with a plain on-policy step, where only the gradient
A * grad log pi remains) and k3_t = exp(q_t) - q_t - 1, q_t = log pi_ref(y_t) - log pi(y_t)
(the k3 estimator of KL(pi || pi_ref)).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from scaling.model import ModelConfig, apply
from scaling.sample import _decode
from scaling.tasks.tokenizer import EOS, EOT, PAD
from scaling.train import over_seeds

ADVANTAGES = ("dr_grpo", "grpo", "rloo")


def group_advantages(rewards_PxG: jax.Array, kind: str = "dr_grpo", eps: float = 1e-6):
    """Advantages (P, G) and the (P,) mask of groups that carry signal (rewards not all equal)."""
    G = rewards_PxG.shape[1]
    mean_Px1 = rewards_PxG.mean(axis=1, keepdims=True)
    keep_P = jnp.any(rewards_PxG != rewards_PxG[:, :1], axis=1)
    if kind == "dr_grpo":
        adv = rewards_PxG - mean_Px1
    elif kind == "grpo":
        adv = (rewards_PxG - mean_Px1) / (rewards_PxG.std(axis=1, keepdims=True) + eps)
    elif kind == "rloo":
        adv = rewards_PxG - (rewards_PxG.sum(axis=1, keepdims=True) - rewards_PxG) / (G - 1)
    else:
        raise ValueError(f"unknown advantage {kind!r}; choose one of {ADVANTAGES}")
    return jnp.where(keep_P[:, None], adv, 0.0), keep_P


def policy_loss(logp_NxT, old_logp_NxT, ref_logp_NxT, adv_N, mask_NxT, clip: float | None, kl_coef):
    """Token-normalised clipped policy-gradient loss with a k3 KL penalty; and its diagnostics."""
    ratio = jnp.exp(logp_NxT - old_logp_NxT)
    unclipped = ratio * adv_N[:, None]
    if clip is None:
        objective = unclipped
        clipped_frac = jnp.zeros(())
    else:
        clipped = jnp.clip(ratio, 1.0 - clip, 1.0 + clip) * adv_N[:, None]
        objective = jnp.minimum(unclipped, clipped)
        clipped_frac = jnp.sum((clipped != unclipped) * mask_NxT) / jnp.maximum(mask_NxT.sum(), 1.0)
    q = ref_logp_NxT - logp_NxT
    k3 = jnp.exp(q) - q - 1.0
    denom = jnp.maximum(mask_NxT.sum(), 1.0)
    loss = -jnp.sum((objective - kl_coef * k3) * mask_NxT) / denom
    return loss, {"kl": jnp.sum(k3 * mask_NxT) / denom, "clip_frac": clipped_frac}


def token_logprobs(cfg: ModelConfig, params, tokens_NxT, valid_NxT):
    """log pi(token_t | tokens_<t) for t >= 1, shape (N, T-1), and the entropy of each prediction."""
    logits = apply(cfg, params, tokens_NxT[:, :-1], key_valid_BxS=valid_NxT[:, :-1])
    logz = jax.nn.logsumexp(logits, axis=-1)
    onehot = jax.nn.one_hot(tokens_NxT[:, 1:], cfg.vocab_size, dtype=logits.dtype)
    logp = jnp.sum(onehot * logits, axis=-1) - logz
    probs = jax.nn.softmax(logits, axis=-1)
    entropy = logz - jnp.sum(probs * logits, axis=-1)
    return logp, entropy


def verify_jnp(gen_NxG, answer_NxA, answer_len_N):
    """The exact 0/1 verifier of ``scaling.tasks.verify`` in jax.numpy (for use inside jit)."""
    N, G = gen_NxG.shape
    A = answer_NxA.shape[1]
    is_eot = gen_NxG == EOT
    has_eot = is_eot.any(axis=1)
    first = jnp.where(has_eot, jnp.argmax(is_eot, axis=1), G)
    want = jnp.concatenate([answer_NxA, jnp.full((N, 1), PAD, answer_NxA.dtype)], axis=1)
    want = jnp.where(jnp.arange(A + 1)[None, :] == answer_len_N[:, None], EOS, want)
    idx = first[:, None] + 1 + jnp.arange(A + 1)[None, :]
    got = jnp.take_along_axis(gen_NxG, jnp.minimum(idx, G - 1), axis=1)
    got = jnp.where(idx < G, got, -1)
    used = jnp.arange(A + 1)[None, :] <= answer_len_N[:, None]
    return (has_eot & jnp.all((got == want) | ~used, axis=1)).astype(jnp.float32)


def completion_mask(gen_NxG):
    """1 on generated tokens up to and including the first <eos> (all of them if there is none)."""
    is_eos = gen_NxG == EOS
    seen_before = jnp.cumsum(is_eos, axis=1) - is_eos
    return (seen_before == 0).astype(jnp.float32)


@functools.partial(jax.jit, static_argnames=("cfg", "group_size", "max_new", "advantage", "clip", "inner_epochs"))
def rl_step(
    cfg: ModelConfig,
    params,
    opt_state,
    ref_params,
    prompts_PxL,
    valid_PxL,
    answer_PxA,
    answer_len_P,
    key,
    hp,
    *,
    group_size: int,
    max_new: int,
    advantage: str = "dr_grpo",
    clip: float | None = None,
    inner_epochs: int = 1,
):
    """One RL iteration: sample G completions per prompt, verify, compute advantages, update.

    ``hp`` holds traced scalars: lr, temperature, kl_coef, reward_flip. Returns new params,
    optimiser state and metrics (reward, pass rate, kept groups, loss, kl, entropy, clip fraction).
    """
    P, L = prompts_PxL.shape
    N = P * group_size
    prompts = jnp.repeat(prompts_PxL, group_size, axis=0)
    valid = jnp.repeat(valid_PxL, group_size, axis=0)
    k_sample, k_flip = jax.random.split(key)
    gen_NxG, _, _ = _decode(cfg, params, prompts, valid, k_sample, hp["temperature"], 1 << 30, 0, max_new, 0)
    reward = verify_jnp(gen_NxG, jnp.repeat(answer_PxA, group_size, 0), jnp.repeat(answer_len_P, group_size))
    flip = jax.random.uniform(k_flip, (N,)) < hp["reward_flip"]  # noisy environment feedback
    reward = jnp.where(flip, 1.0 - reward, reward)
    adv_PxG, keep_P = group_advantages(reward.reshape(P, group_size), advantage)

    tokens = jnp.concatenate([prompts, gen_NxG], axis=1)
    seq_valid = jnp.concatenate([valid, jnp.ones_like(gen_NxG, bool)], axis=1)
    mask = jnp.concatenate([jnp.zeros((N, L - 1)), completion_mask(gen_NxG)], axis=1)
    mask = mask * jnp.repeat(keep_P, group_size)[:, None]
    adv_N = adv_PxG.reshape(N)
    old_logp, _ = token_logprobs(cfg, params, tokens, seq_valid)
    ref_logp, _ = token_logprobs(cfg, ref_params, tokens, seq_valid)
    old_logp, ref_logp = jax.lax.stop_gradient(old_logp), jax.lax.stop_gradient(ref_logp)
    tx = optax.adam(hp["lr"])

    def loss_fn(p):
        logp, entropy = token_logprobs(cfg, p, tokens, seq_valid)
        loss, aux = policy_loss(logp, old_logp, ref_logp, adv_N, mask, clip, hp["kl_coef"])
        aux["entropy"] = jnp.sum(jax.lax.stop_gradient(entropy) * mask) / jnp.maximum(mask.sum(), 1.0)
        return loss, aux

    def epoch(carry, _):
        p, o = carry
        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(p)
        updates, o = tx.update(grads, o, p)
        return (optax.apply_updates(p, updates), o), (loss, aux)

    (params, opt_state), (losses, aux) = jax.lax.scan(epoch, (params, opt_state), None, length=inner_epochs)
    metrics = {
        "completions": gen_NxG,
        "reward": reward.mean(),
        "pass_rate_P": reward.reshape(P, group_size).mean(1),
        "kept_groups": keep_P.mean(),
        "loss": losses[0],
        **{k: v[-1] for k, v in aux.items()},
    }
    return params, opt_state, metrics


@functools.partial(
    jax.jit,
    static_argnames=("cfg", "group_size", "max_new", "advantage", "clip", "inner_epochs"),
    donate_argnames=("params_S", "opt_S"),
)
def rl_chunk(
    cfg,
    params_S,
    opt_S,
    ref_S,
    prompts_KxPxL,
    valid_KxPxL,
    answer_KxPxA,
    answer_len_KxP,
    keys_SxK,
    hp,
    *,
    group_size,
    max_new,
    advantage="dr_grpo",
    clip=None,
    inner_epochs=1,
):
    """K RL steps for every seed: scan over steps inside, ``over_seeds`` outside (prompts shared).

    Returns params, optimiser states and per-step metrics (S, K, ...) without the completions."""

    def one_seed(params, opt, ref, keys_K):
        def body(carry, xs):
            p, o = carry
            prompts, valid, answer, answer_len, key = xs
            p, o, m = rl_step(
                cfg,
                p,
                o,
                ref,
                prompts,
                valid,
                answer,
                answer_len,
                key,
                hp,
                group_size=group_size,
                max_new=max_new,
                advantage=advantage,
                clip=clip,
                inner_epochs=inner_epochs,
            )
            m.pop("completions")
            return (p, o), m

        xs = (prompts_KxPxL, valid_KxPxL, answer_KxPxA, answer_len_KxP, keys_K)
        return jax.lax.scan(body, (params, opt), xs)

    (params_S, opt_S), metrics = over_seeds(one_seed, params_S, opt_S, ref_S, keys_SxK)
    return params_S, opt_S, metrics


def band_weights(pass_rate_D, band, floor: float = 0.05):
    """Sampling weight per difficulty: 1 inside the pass-rate band (the edge of competence),
    ``floor`` outside, so that estimates outside the band keep being refreshed."""
    import numpy as np

    lo, hi = band
    w = np.where((pass_rate_D >= lo) & (pass_rate_D <= hi), 1.0, floor)
    return w / w.sum()
