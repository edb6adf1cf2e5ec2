"""The RL loop: prompts chosen at the edge of competence, chunks of jitted RL steps, and an
evaluation ladder at log-spaced RL data volumes (distinct prompts seen), so one run yields the axis."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd

from scaling.config import EvalConfig, RLConfig
from scaling.evaluate import accuracy_table, max_new_tokens
from scaling.model import ModelConfig
from scaling.rl import band_weights, rl_chunk
from scaling.sample import left_pad
from scaling.tasks import Task, generate


@dataclass
class RLResult:
    params_S: object
    ladder: pd.DataFrame  # one row per (prompts seen, seed, difficulty, strategy greedy|sampled): accuracy
    metrics: pd.DataFrame  # one row per (step, seed): reward, kept groups, loss, kl, entropy, clip fraction


def rl_train(
    cfg: ModelConfig,
    params_S,
    task: Task,
    rc: RLConfig,
    seeds,
    difficulties: tuple[int, int],
    ec: EvalConfig,
    seed: int = 0,
    on_chunk=None,
) -> RLResult:
    """RL from ``params_S`` (one model per seed; its buffers are donated) for ``rc.steps`` steps of
    ``rc.prompts_per_step`` prompts on ``difficulties`` (``rc.difficulties`` wins when set), evaluating
    held-out accuracy when the ``rc.ladder_volumes()`` prompt counts are reached."""
    rc.validate()
    lo, hi = rc.difficulties or difficulties
    chunk, steps = rc.chunk_steps, rc.steps
    levels = np.arange(lo, hi + 1)
    pass_rate = np.full(len(levels), 0.5)  # optimistic start: every level is sampled
    max_new = max_new_tokens(task, levels)
    ref_S = jax.tree.map(jnp.copy, params_S)  # frozen reference; params_S buffers get donated
    opt_S = jax.vmap(optax.adam(1.0).init)(params_S)
    hp = {
        "lr": jnp.float32(rc.lr),
        "temperature": jnp.float32(rc.temperature),
        "kl_coef": jnp.float32(rc.kl_coef),
        "reward_flip": jnp.float32(rc.reward_flip),
    }
    rng = np.random.default_rng(seed)
    rows, ladder_rows = [], []
    seen = 0
    pending = rc.ladder_volumes()

    def evaluate(params_S, seen):
        greedy = accuracy_table(cfg, params_S, list(seeds), task, ec)
        ladder_rows.append(greedy.assign(prompts_seen=seen))
        if ec.samples:
            sampled = accuracy_table(
                cfg, params_S, list(seeds), task, ec, samples=ec.samples, temperature=ec.temperature
            )
            ladder_rows.append(sampled.assign(prompts_seen=seen))

    if pending and pending[0] == 0:
        evaluate(params_S, 0)
        pending.pop(0)
    for c in range(int(np.ceil(steps / chunk))):
        K, P = chunk, rc.prompts_per_step
        d = rng.choice(levels, size=(K, P), p=band_weights(pass_rate, rc.band))
        ex = generate(task, d.ravel(), rng, split="train")
        prompts, valid = left_pad(ex.tokens, ex.prompt_len)
        L = prompts.shape[1]
        keys = jax.vmap(lambda s, c=c, K=K: jax.random.split(jax.random.fold_in(jax.random.key(s), c), K))(
            jnp.asarray(seeds, jnp.uint32)
        )
        params_S, opt_S, m = rl_chunk(
            cfg,
            params_S,
            opt_S,
            ref_S,
            prompts.reshape(K, P, L),
            valid.reshape(K, P, L),
            ex.answer.reshape(K, P, -1),
            ex.answer_len.reshape(K, P),
            keys,
            hp,
            group_size=rc.group_size,
            max_new=max_new,
            advantage=rc.advantage,
            clip=rc.clip,
            inner_epochs=rc.inner_epochs,
        )
        m = jax.tree.map(np.asarray, m)  # one host fetch per chunk
        rates = m.pop("pass_rate_P").mean(0)  # (K, P), averaged over seeds
        for j, level in enumerate(levels):  # update the pass-rate estimates from the rollouts themselves
            hit = d == level
            if hit.any():
                pass_rate[j] = 0.5 * pass_rate[j] + 0.5 * rates[hit].mean()
        for si, s in enumerate(seeds):
            for k in range(K):
                rows.append({"step": c * K + k, "seed": s, **{key: float(v[si, k]) for key, v in m.items()}})
        seen += K * P
        if on_chunk is not None:
            on_chunk(c + 1, steps // chunk, float(rates.mean()))
        while pending and seen >= pending[0]:
            evaluate(params_S, seen)
            pending.pop(0)
    return RLResult(
        params_S, pd.concat(ladder_rows, ignore_index=True) if ladder_rows else pd.DataFrame(), pd.DataFrame(rows)
    )
