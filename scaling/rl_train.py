"""The RL loop: prompts chosen at the edge of competence, chunks of jitted RL steps, and an
evaluation ladder at log-spaced RL data volumes (distinct prompts seen), so one run yields the axis."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from scaling.evaluate import accuracy_table, task_loss_table
from scaling.optim import TrainState, constant, optimizer
from scaling.rl import B2, PromptBatch, RLHyper, RLSpec, band_weights, rl_chunk, rl_chunk_host
from scaling.sample import left_pad
from scaling.settings import EvalConfig, RLConfig
from scaling.specs import ModelConfig
from scaling.tasks import Task, generate
from scaling.tokenizer import PAD
from scaling.train import replicated


@dataclass
class RLResult:
    params_R: object
    ladder: pd.DataFrame  # one row per (prompts seen, seed, difficulty, strategy greedy|sampled): accuracy
    metrics: pd.DataFrame  # one row per (step, seed): reward, kept groups, loss, kl, entropy, clip fraction


def rl_hyper(rc: RLConfig) -> RLHyper:
    f32 = jnp.float32
    return RLHyper(constant(rc.lr), f32(rc.temperature), f32(rc.kl_coef), f32(rc.reward_flip))


def chunk_prompts(task: Task, rc: RLConfig, levels: np.ndarray, pass_rate: np.ndarray, rng) -> tuple:
    """The prompts of one chunk of one seed (C steps of P prompts, difficulties drawn by
    ``band_weights``): a PromptBatch with a leading C axis, padded to the widest prompt and checker key
    of ``levels`` (one shape for every chunk and seed), and the (C, P) difficulties."""
    C, P = rc.chunk_steps, rc.prompts_per_step
    d_CxP = rng.choice(levels, size=(C, P), p=band_weights(pass_rate, rc.band))
    ex = generate(task, d_CxP.ravel(), rng, split="train")
    L = max(task.widths(int(d))[0] + 1 for d in levels)  # + the <bos> token
    Y = max(task.key_width(int(d)) for d in levels)
    prompts, valid = left_pad(ex.tokens, ex.prompt_len, width=L)
    key = np.pad(ex.key, ((0, 0), (0, Y - ex.key.shape[1])), constant_values=PAD)
    batch = PromptBatch(prompts.reshape(C, P, L), valid.reshape(C, P, L), key.reshape(C, P, Y))
    return batch, d_CxP


def update_pass_rates(pass_rate: np.ndarray, levels: np.ndarray, d_CxP: np.ndarray, rates_CxP: np.ndarray) -> None:
    """Exponential average (weight 1/2) of each difficulty's pass rate from the chunk's own rollouts."""
    for j, level in enumerate(levels):
        hit = d_CxP == level
        if hit.any():
            pass_rate[j] = 0.5 * pass_rate[j] + 0.5 * rates_CxP[hit].mean()


def ladder_point(cfg: ModelConfig, params_R, seeds, task: Task, ec: EvalConfig, seen: int) -> list[pd.DataFrame]:
    """Held-out accuracy after ``seen`` RL prompts (greedy, and pass@1 sampled when ``ec.samples``), each
    row with the model's task loss."""
    tables = [accuracy_table(cfg, params_R, list(seeds), task, ec)]
    if ec.samples:
        tables.append(
            accuracy_table(cfg, params_R, list(seeds), task, ec, samples=ec.samples, temperature=ec.temperature)
        )
    loss = task_loss_table(cfg, params_R, list(seeds), task, ec)
    return [t.merge(loss, on=["seed", "difficulty"]).assign(prompts_seen=seen) for t in tables]


def _start(params_R, hp, n_seeds: int) -> tuple[TrainState, Any]:
    """The RL state of every seed and the frozen reference parameters (a copy: the state's buffers are
    donated). Both sit where the compiled chunk's outputs will (replicated over the devices), so the
    second chunk reuses the first one's program."""
    everywhere = replicated()
    ref_R = jax.device_put(jax.tree.map(jnp.copy, params_R), everywhere)
    opt_R = jax.vmap(lambda p: optimizer(hp.optim, b2=B2).init(p))(params_R)
    return jax.device_put(TrainState(jnp.zeros((n_seeds,), jnp.int32), params_R, opt_R), everywhere), ref_R


def _metric_rows(m: dict, seeds, first_step: int, chunk_steps: int) -> list[dict]:
    """One metrics row per (step, seed) of a chunk: the step's values from the (R, C) arrays of ``m``."""
    return [
        {"step": first_step + k, "seed": s, **{key: float(v[r, k]) for key, v in m.items()}}
        for r, s in enumerate(seeds)
        for k in range(chunk_steps)
    ]


def rl_train(
    cfg: ModelConfig,
    params_R,
    task: Task,
    rc: RLConfig,
    seeds,
    difficulties: tuple[int, int],
    ec: EvalConfig,
    *,
    seed: int = 0,
    on_chunk: Callable[[int, int, float, list[dict]], None] | None = None,
    host_check: bool | None = None,
) -> RLResult:
    """RL from ``params_R`` (one model per seed; its buffers are donated) for ``rc.steps`` steps of
    ``rc.prompts_per_step`` prompts on ``difficulties`` (``rc.difficulties`` wins when set), evaluating
    held-out accuracy when the ``rc.ladder_volumes()`` prompt counts are reached. Rewards are checked in
    the compiled step where the task's checker runs over jax.numpy (``task.in_graph``), else on the host
    between a sampling and an update program; ``host_check`` forces either path."""
    lo, hi = rc.difficulties or difficulties
    levels = np.arange(lo, hi + 1)
    pass_rate = np.full(len(levels), 0.5)  # optimistic start: every level is sampled
    host = not task.in_graph if host_check is None else host_check
    spec = RLSpec(rc.group_size, task.max_new_tokens(levels), rc.advantage, rc.clip, rc.inner_epochs, task.check)
    hp = rl_hyper(rc)
    state_R, ref_R = _start(params_R, hp, len(seeds))
    # Every seed draws its own prompts and keeps its own pass rates, so a seed's run does not depend on
    # which other seeds share the program.
    rngs = [np.random.default_rng([seed, s]) for s in seeds]
    pass_rate_R = [pass_rate.copy() for _ in seeds]
    rows, ladder_rows = [], []
    pending = rc.ladder_volumes()
    if pending and pending[0] == 0:
        ladder_rows += ladder_point(cfg, state_R.params, seeds, task, ec, pending.pop(0))
    n_chunks, seen = int(np.ceil(rc.steps / rc.chunk_steps)), 0
    seeds_R = jnp.asarray(seeds, jnp.uint32)
    for c in range(n_chunks):
        drawn = [chunk_prompts(task, rc, levels, p, r) for p, r in zip(pass_rate_R, rngs)]
        batch_R = jax.tree.map(lambda *x: np.stack(x), *[b for b, _ in drawn])
        keys_RxC = jax.vmap(lambda s, c=c: jax.random.split(jax.random.fold_in(jax.random.key(s), c), rc.chunk_steps))(
            seeds_R
        )
        if host:
            state_R, m = rl_chunk_host(cfg, state_R, ref_R, batch_R, keys_RxC, hp, spec=spec)
        else:
            state_R, m = rl_chunk(cfg, state_R, ref_R, batch_R, keys_RxC, hp, spec=spec)
        m = jax.tree.map(np.asarray, m)  # one host fetch per chunk
        rates_RxCxP = m.pop("pass_rate_P")
        for r, (_, d_CxP) in enumerate(drawn):
            update_pass_rates(pass_rate_R[r], levels, d_CxP, rates_RxCxP[r])
        chunk_rows = _metric_rows(m, seeds, c * rc.chunk_steps, rc.chunk_steps)
        rows += chunk_rows
        seen += rc.chunk_steps * rc.prompts_per_step
        if on_chunk is not None:  # with the prompts and completions seen by the end of each step
            P, Q = rc.prompts_per_step, rc.group_size
            seen_rows = [
                row | {"prompts_seen": (row["step"] + 1) * P, "completions_seen": (row["step"] + 1) * P * Q}
                for row in chunk_rows
            ]
            on_chunk(c + 1, n_chunks, float(rates_RxCxP.mean()), seen_rows)
        while pending and seen >= pending[0]:
            pending.pop(0)
            ladder_rows += ladder_point(cfg, state_R.params, seeds, task, ec, seen)
    ladder = pd.concat(ladder_rows, ignore_index=True) if ladder_rows else pd.DataFrame()
    return RLResult(state_R.params, ladder, pd.DataFrame(rows))
