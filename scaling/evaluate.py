"""Accuracy of trained models on held-out problems, per difficulty, from their own greedy generations."""

from __future__ import annotations

import functools

import jax
import numpy as np
import pandas as pd

from scaling.config import EvalConfig
from scaling.model import ModelConfig
from scaling.sample import greedy, left_pad
from scaling.tasks import Examples, Task, generate, verify


def eval_examples(task: Task, ec: EvalConfig) -> Examples:
    """The fixed held-out evaluation set: ``n_per_difficulty`` problems at each eval difficulty."""
    lo, hi = ec.difficulties
    d = np.repeat(np.arange(lo, hi + 1), ec.n_per_difficulty)
    return generate(task, d, np.random.default_rng(ec.seed), split="eval")


def max_new_tokens(task: Task, difficulties) -> int:
    """Room for the full trace, <eot>, the answer and <eos> at the hardest difficulty."""
    return max(sum(task.widths(int(d))[1:]) + 2 for d in difficulties)


@functools.partial(jax.jit, static_argnames=("cfg", "max_new"))
def _greedy_seeds(cfg, params_S, prompts, valid, *, max_new):
    return jax.vmap(lambda p: greedy(cfg, p, prompts, valid, max_new=max_new))(params_S)


def accuracy_table(cfg: ModelConfig, params_S, seeds, task: Task, ec: EvalConfig, batch: int = 512) -> pd.DataFrame:
    """One row per (seed, difficulty): accuracy and n, from greedy decoding of every seed at once."""
    ex = eval_examples(task, ec)
    max_new = max_new_tokens(task, range(ec.difficulties[0], ec.difficulties[1] + 1))
    prompts, valid = left_pad(ex.tokens, ex.prompt_len)
    rewards = []
    for start in range(0, len(ex), batch):
        sl = slice(start, start + batch)
        p, v = prompts[sl], valid[sl]
        pad = batch - len(p)  # keep one compiled shape: pad the last block
        if pad:
            p, v = np.concatenate([p, np.repeat(p[:1], pad, 0)]), np.concatenate([v, np.repeat(v[:1], pad, 0)])
        gen_SxBxG = np.asarray(_greedy_seeds(cfg, params_S, p, v, max_new=max_new))[:, : batch - pad]
        rewards.append(np.stack([verify(g, ex.answer[sl], ex.answer_len[sl]) for g in gen_SxBxG]))
    reward_SxN = np.concatenate(rewards, axis=1)
    rows = []
    for i, seed in enumerate(seeds):
        for d in np.unique(ex.difficulty):
            r = reward_SxN[i, ex.difficulty == d]
            rows.append({"seed": seed, "difficulty": int(d), "accuracy": float(r.mean()), "n": int(r.size)})
    return pd.DataFrame(rows)
