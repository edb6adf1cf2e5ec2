"""On-policy RL with verifiable rewards: group sampling, group-relative advantages, one jitted step.

For each prompt, Q completions are sampled from the current policy and scored by the task's checker:
inside the compiled step where the checker runs over jax.numpy (``rl_chunk``), else on the host between
a sampling and an update program (``rl_chunk_host``, for checkers over text).
Advantages are relative to the group:
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
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from scaling.model import token_logprobs
from scaling.optim import OptimizerHP, TrainState, optimizer
from scaling.sample import decode
from scaling.settings import ADVANTAGES
from scaling.specs import ModelConfig
from scaling.tasks import exact_answer, written_tokens
from scaling.tokenizer import EOS
from scaling.train import over_seeds

B2 = 0.999  # Adam's second-moment decay for the policy update


class PromptBatch(NamedTuple):
    """The prompts of one RL step (P prompts, left-padded to L tokens) and the keys their completions are
    checked against (``Task.check``)."""

    prompts_PxL: jax.Array
    valid_PxL: jax.Array
    key_PxY: jax.Array


class Rollout(NamedTuple):
    """Q completions of every prompt (N = P Q rows), as scored and as the loss sees them."""

    tokens_NxT: jax.Array  # prompt + completion
    valid_NxT: jax.Array  # False on left padding
    mask_NxT1: jax.Array  # 1 on completion tokens (through the first <eos>) of groups with signal
    reward_N: jax.Array  # as the learner sees it (flipped at rate reward_flip)
    correct_N: jax.Array  # the checker's verdict
    adv_N: jax.Array
    keep_P: jax.Array  # groups whose rewards are not all equal


class RLHyper(NamedTuple):
    """Traced RL settings: one program serves every value of a sweep."""

    optim: OptimizerHP
    temperature: jax.Array
    kl_coef: jax.Array
    reward_flip: jax.Array  # share of rewards flipped (noisy environment feedback)


@dataclass(frozen=True)
class RLSpec:
    """Static RL settings: each value compiles its own program."""

    group_size: int  # Q
    max_new: int  # G
    advantage: str = "dr_grpo"
    clip: float | None = None
    inner_epochs: int = 1
    check: Callable = exact_answer  # (gen_NxG, key_NxY, xp) -> reward_N


def group_advantages(rewards_PxQ: jax.Array, kind: str = "dr_grpo", eps: float = 1e-6):
    """Advantages (P, Q) and the (P,) mask of groups that carry signal (rewards not all equal)."""
    Q = rewards_PxQ.shape[1]
    mean_Px1 = rewards_PxQ.mean(axis=1, keepdims=True)
    keep_P = jnp.any(rewards_PxQ != rewards_PxQ[:, :1], axis=1)
    if kind == "dr_grpo":
        adv_PxQ = rewards_PxQ - mean_Px1
    elif kind == "grpo":
        adv_PxQ = (rewards_PxQ - mean_Px1) / (rewards_PxQ.std(axis=1, keepdims=True) + eps)
    elif kind == "rloo":
        adv_PxQ = rewards_PxQ - (rewards_PxQ.sum(axis=1, keepdims=True) - rewards_PxQ) / (Q - 1)
    else:
        raise ValueError(f"unknown advantage {kind!r}; choose one of {ADVANTAGES}")
    return jnp.where(keep_P[:, None], adv_PxQ, 0.0), keep_P


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


def completion_mask(gen_NxG):
    """1 on generated tokens up to and including the first <eos> (all of them if there is none)."""
    is_eos = gen_NxG == EOS
    seen_before = jnp.cumsum(is_eos, axis=1) - is_eos
    return (seen_before == 0).astype(jnp.float32)


def sample_group(cfg: ModelConfig, params, batch: PromptBatch, key, hp: RLHyper, spec: RLSpec) -> jax.Array:
    """(N, G) completions: Q samples of every prompt (rows p Q .. p Q + Q - 1 answer prompt p)."""
    Q = spec.group_size
    prompts_NxL = jnp.repeat(batch.prompts_PxL, Q, axis=0)
    valid_NxL = jnp.repeat(batch.valid_PxL, Q, axis=0)
    return decode(cfg, params, prompts_NxL, valid_NxL, key, hp.temperature, max_new=spec.max_new)


def score_group(batch: PromptBatch, gen_NxG, correct_N, key, hp: RLHyper, spec: RLSpec) -> Rollout:
    """The rollout of checked completions: rewards flipped at rate ``reward_flip``, group-relative
    advantages, and the loss mask of the groups that carry signal."""
    P, L = batch.prompts_PxL.shape
    Q = spec.group_size
    flip_N = jax.random.uniform(key, (P * Q,)) < hp.reward_flip
    reward_N = jnp.where(flip_N, 1.0 - correct_N, correct_N)
    adv_PxQ, keep_P = group_advantages(reward_N.reshape(P, Q), spec.advantage)
    mask_NxT1 = jnp.concatenate([jnp.zeros((P * Q, L - 1)), completion_mask(gen_NxG)], axis=1)
    mask_NxT1 = mask_NxT1 * jnp.repeat(keep_P, Q)[:, None]
    tokens_NxT = jnp.concatenate([jnp.repeat(batch.prompts_PxL, Q, axis=0), gen_NxG], axis=1)
    valid_NxT = jnp.concatenate([jnp.repeat(batch.valid_PxL, Q, axis=0), jnp.ones_like(gen_NxG, bool)], axis=1)
    return Rollout(tokens_NxT, valid_NxT, mask_NxT1, reward_N, correct_N, adv_PxQ.reshape(P * Q), keep_P)


def policy_update(cfg: ModelConfig, state: TrainState, ref_params, r: Rollout, hp: RLHyper, spec: RLSpec):
    """``inner_epochs`` optimiser steps on the clipped objective of one rollout: the new state, the first
    epoch's loss and the last epoch's diagnostics (kl, clip fraction, entropy)."""
    old_logp = jax.lax.stop_gradient(token_logprobs(cfg, state.params, r.tokens_NxT, r.valid_NxT))
    ref_logp = jax.lax.stop_gradient(token_logprobs(cfg, ref_params, r.tokens_NxT, r.valid_NxT))
    tx = optimizer(hp.optim, b2=B2)

    def loss_fn(p):
        logp, entropy = token_logprobs(cfg, p, r.tokens_NxT, r.valid_NxT, entropy=True)
        loss, aux = policy_loss(logp, old_logp, ref_logp, r.adv_N, r.mask_NxT1, spec.clip, hp.kl_coef)
        aux["entropy"] = jnp.sum(jax.lax.stop_gradient(entropy) * r.mask_NxT1) / jnp.maximum(r.mask_NxT1.sum(), 1.0)
        return loss, aux

    def epoch(s: TrainState, _):
        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(s.params)
        updates, opt_state = tx.update(grads, s.opt_state, s.params)
        return TrainState(s.step + 1, optax.apply_updates(s.params, updates), opt_state), (loss, aux)

    state, (losses, aux) = jax.lax.scan(epoch, state, None, length=spec.inner_epochs)
    return state, losses[0], {k: v[-1] for k, v in aux.items()}


def learn(cfg: ModelConfig, state: TrainState, ref_params, batch: PromptBatch, gen_NxG, correct_N, *, key, hp, spec):
    """Score checked completions and update the policy on them; the new state and the step's metrics
    (reward as the learner saw it, pass rate as the checker judged it, per-prompt reward, kept groups,
    loss, kl, entropy, clip fraction, mean thinking and answer tokens written)."""
    r = score_group(batch, gen_NxG, correct_N, key, hp, spec)
    state, loss, aux = policy_update(cfg, state, ref_params, r, hp, spec)
    thinking_N, answer_N = written_tokens(gen_NxG, jnp)
    metrics = {
        "reward": r.reward_N.mean(),
        "pass_rate": r.correct_N.mean(),
        "thinking_tokens": thinking_N.mean(),
        "answer_tokens": answer_N.mean(),
        "pass_rate_P": r.reward_N.reshape(batch.prompts_PxL.shape[0], spec.group_size).mean(1),
        "kept_groups": r.keep_P.mean(),
        "loss": loss,
        **aux,
    }
    return state, metrics


@functools.partial(jax.jit, static_argnames=("cfg", "spec"))
def rl_step(cfg: ModelConfig, state: TrainState, ref_params, batch: PromptBatch, key, hp: RLHyper, *, spec: RLSpec):
    """One fused RL iteration: sample Q completions per prompt, check them in the graph (``spec.check``
    over jax.numpy), update. Returns the new state, ``learn``'s metrics and the completions."""
    k_sample, k_flip = jax.random.split(key)
    gen_NxG = sample_group(cfg, state.params, batch, k_sample, hp, spec)
    correct_N = spec.check(gen_NxG, jnp.repeat(batch.key_PxY, spec.group_size, 0), jnp)
    state, metrics = learn(cfg, state, ref_params, batch, gen_NxG, correct_N, key=k_flip, hp=hp, spec=spec)
    return state, metrics | {"completions": gen_NxG}


@functools.partial(jax.jit, static_argnames=("cfg", "spec"), donate_argnames=("state_R",))
def rl_chunk(cfg, state_R: TrainState, ref_R, batches_RxC: PromptBatch, keys_RxC, hp: RLHyper, *, spec: RLSpec):
    """C fused RL steps for every seed: scan over steps inside, ``over_seeds`` outside (each seed its own
    prompts). Returns the states and per-step metrics (R, C, ...) without the completions."""

    def one_seed(state, ref, batches_C, keys_C):
        def body(s, xs):
            batch, key = xs
            s, m = rl_step(cfg, s, ref, batch, key, hp, spec=spec)
            m.pop("completions")
            return s, m

        return jax.lax.scan(body, state, (batches_C, keys_C))

    return over_seeds(one_seed, state_R, ref_R, batches_RxC, keys_RxC)


@functools.partial(jax.jit, static_argnames=("cfg", "spec"))
def _sample_seeds(cfg, params_R, batch_R: PromptBatch, keys_R, hp: RLHyper, *, spec: RLSpec):
    def one_seed(params, batch, key):
        return sample_group(cfg, params, batch, jax.random.split(key)[0], hp, spec)

    return over_seeds(one_seed, params_R, batch_R, keys_R)


@functools.partial(jax.jit, static_argnames=("cfg", "spec"), donate_argnames=("state_R",))
def _learn_seeds(cfg, state_R: TrainState, ref_R, batch_R: PromptBatch, gen_R, correct_R, keys_R, hp, *, spec):
    def one_seed(state, ref, batch, gen, correct, key):
        return learn(cfg, state, ref, batch, gen, correct, key=jax.random.split(key)[1], hp=hp, spec=spec)

    return over_seeds(one_seed, state_R, ref_R, batch_R, gen_R, correct_R, keys_R)


def rl_chunk_host(cfg, state_R: TrainState, ref_R, batches_RxC: PromptBatch, keys_RxC, hp: RLHyper, *, spec):
    """``rl_chunk`` for a checker that runs on the host, ``spec.check(gen_NxG, key_NxY) -> reward_N`` (numpy):
    per step, one compiled program samples every seed's completions, the host scores them, and another
    program updates. With the same keys it takes the fused chunk's steps."""
    Q, steps = spec.group_size, batches_RxC.prompts_PxL.shape[1]
    rows = []
    for c in range(steps):
        batch_R = jax.tree.map(lambda x, c=c: x[:, c], batches_RxC)
        gen_R = _sample_seeds(cfg, state_R.params, batch_R, keys_RxC[:, c], hp, spec=spec)
        keys_NxY = np.repeat(np.asarray(batch_R.key_PxY), Q, axis=1)
        correct_R = np.stack([spec.check(g, k) for g, k in zip(np.asarray(gen_R), keys_NxY)]).astype(np.float32)
        state_R, m = _learn_seeds(cfg, state_R, ref_R, batch_R, gen_R, correct_R, keys_RxC[:, c], hp, spec=spec)
        rows.append(m)
    return state_R, jax.tree.map(lambda *x: jnp.stack(x, axis=1), *rows)


def band_weights(pass_rate_X: np.ndarray, band, floor: float = 0.05) -> np.ndarray:
    """Sampling weight per difficulty: 1 inside the pass-rate band (the edge of competence),
    ``floor`` outside, so that estimates outside the band keep being refreshed."""
    lo, hi = band
    w = np.where((pass_rate_X >= lo) & (pass_rate_X <= hi), 1.0, floor)
    return w / w.sum()
