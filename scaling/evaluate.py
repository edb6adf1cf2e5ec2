"""Held-out evaluation from the models' own generations: accuracy per difficulty, and test-time
strategies (thinking budgets, majority vote, pass@k, best-of-n, re-thinking) with token accounting."""

from __future__ import annotations

import functools
from dataclasses import astuple, dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from scaling.errors import ScalingError
from scaling.model import token_logprobs
from scaling.sample import decode, decode_budgets, left_pad
from scaling.settings import EvalConfig
from scaling.specs import ModelConfig
from scaling.tasks import Examples, Task, answer_span, first_eot, generate, written_tokens
from scaling.tokenizer import PAD


@functools.lru_cache(maxsize=16)
def eval_examples(task: Task, ec: EvalConfig) -> Examples:
    """The fixed held-out evaluation set: ``n_per_difficulty`` problems at each eval difficulty. Built once
    per (task, settings) in a process, since every strategy of an eval stage scores the same problems;
    its arrays are read-only."""
    lo, hi = ec.difficulties
    d = np.repeat(np.arange(lo, hi + 1), ec.n_per_difficulty)
    ex = generate(task, d, np.random.default_rng(ec.seed), split="eval")
    for array in astuple(ex):
        array.setflags(write=False)
    return ex


SCORE_BYTES = 2**31  # attention scores one block of rows may hold: long traces are decoded in smaller blocks


def block_rows(cfg: ModelConfig, n_seeds: int, queries: int, keys: int, n: int, cap: int | None = None) -> int:
    """Rows per block for ``n`` rows: ``cap`` (default n; one compiled shape for every call) where the
    attention scores of that many rows' widest pass (seeds x rows x heads x queries x keys float32: a
    prefill of ``queries`` prompt tokens over a cache of ``keys`` slots) stay within SCORE_BYTES, else as
    many as fit, and no more than n."""
    cap = n if cap is None else cap
    fit = SCORE_BYTES // (4 * n_seeds * cfg.n_heads * queries * keys)
    return int(cap if fit >= cap else max(1, min(fit, n)))


def in_blocks(fn, rows: int, arrays, *, axis: int = 0, out_axis: int = 0) -> np.ndarray:
    """``fn(block, *parts)`` over blocks of ``rows`` rows (along ``axis``) of ``arrays``, the outputs
    joined along ``out_axis``. A last block that is short is padded with copies of its first row, so
    that every call has one shape (one compiled program), and the padding is dropped from its output."""
    n = arrays[0].shape[axis]
    outs = []
    for block, start in enumerate(range(0, n, rows)):
        parts = [np.take(a, np.arange(start, min(start + rows, n)), axis=axis) for a in arrays]
        pad = rows - parts[0].shape[axis]
        if pad:
            parts = [
                np.concatenate([p, np.repeat(np.take(p, [0], axis=axis), pad, axis=axis)], axis=axis) for p in parts
            ]
        out = np.asarray(fn(block, *parts))
        outs.append(np.take(out, np.arange(rows - pad), axis=out_axis))
    return np.concatenate(outs, axis=out_axis)


def block_keys(keys_R, block: int):
    """Per-seed sampling keys of a block of rows: the keys themselves for the first, folded with the block
    index after it (so that a sweep decoded in one block keeps its samples)."""
    return keys_R if block == 0 else jax.vmap(jax.random.fold_in, (0, None))(keys_R, block)


@functools.partial(jax.jit, static_argnames=("cfg", "max_new"))
def decode_seeds(cfg: ModelConfig, params_R, prompts_BxL, valid_BxL, keys_R, temperature, *, max_new: int):
    """(R, B, G): every seed's model continues the same prompts (greedy at temperature 0)."""
    return jax.vmap(lambda p, k: decode(cfg, p, prompts_BxL, valid_BxL, k, temperature, max_new=max_new))(
        params_R, keys_R
    )


@functools.partial(jax.jit, static_argnames=("cfg", "budgets", "answer_len"))
def decode_budgets_seeds(cfg: ModelConfig, params_R, prompts_BxL, valid_BxL, *, budgets, answer_len: int):
    """(R, U, B, G): every seed's greedy generations under every thinking budget (``decode_budgets``)."""
    return jax.vmap(lambda p: decode_budgets(cfg, p, prompts_BxL, valid_BxL, budgets=budgets, answer_len=answer_len))(
        params_R
    )


def accuracy_table(
    cfg: ModelConfig,
    params_R,
    seeds,
    task: Task,
    ec: EvalConfig,
    *,
    batch: int = 512,
    samples: int = 0,
    temperature: float = 1.0,
) -> pd.DataFrame:
    """One row per (seed, difficulty): accuracy, n, and the mean thinking and total tokens written per
    problem. ``samples = 0``: greedy decoding (strategy ``greedy``); else pass@1 at ``temperature``, the
    mean reward of ``samples`` samples per problem (strategy ``sampled``; the policy's own accuracy,
    what RL optimises)."""
    ex = eval_examples(task, ec)
    max_new = task.max_new_tokens(range(ec.difficulties[0], ec.difficulties[1] + 1))
    reps = max(samples, 1)
    prompts, valid = left_pad(np.repeat(ex.tokens, reps, 0), np.repeat(ex.prompt_len, reps))
    key = np.repeat(ex.key, reps, 0)
    temp = jnp.float32(temperature if samples else 0.0)

    def block(b, p, v):
        keys = jax.vmap(lambda s: jax.random.fold_in(jax.random.key(s), b))(jnp.asarray(seeds, jnp.uint32))
        return decode_seeds(cfg, params_R, p, v, keys, temp, max_new=max_new)

    rows = block_rows(cfg, len(seeds), prompts.shape[1], cfg.max_len, len(prompts), batch)
    gen_RxNxG = in_blocks(block, rows, (prompts, valid), out_axis=1)
    reward_RxN = np.stack([task.check(g, key) for g in gen_RxNxG])
    tokens = [written_tokens(g) for g in gen_RxNxG]
    thinking_RxN, total_RxN = np.stack([t for t, _ in tokens]), np.stack([t + a for t, a in tokens])
    difficulty = np.repeat(ex.difficulty, reps)
    rows = []
    for i, seed in enumerate(seeds):
        for d in np.unique(ex.difficulty):
            at = difficulty == d
            r = reward_RxN[i, at]
            rows.append(
                {
                    "seed": seed,
                    "difficulty": int(d),
                    "accuracy": float(r.mean()),
                    "n": int(r.size // reps),
                    "strategy": "sampled" if samples else "greedy",
                    "thinking_tokens": float(thinking_RxN[i, at].mean()),
                    "total_tokens": float(total_RxN[i, at].mean()),
                }
            )
    return pd.DataFrame(rows)


@functools.partial(jax.jit, static_argnames=("cfg",))
def masked_nll_seeds(cfg: ModelConfig, params_R, tokens_NxT, masks_OxNxT1):
    """(R, O, N): every seed's teacher-forced negative log-likelihood (nats), summed over each mask's
    next-token targets, per row."""

    def one(params):
        nll_NxT1 = -token_logprobs(cfg, params, tokens_NxT)
        return jnp.einsum("nt,ont->on", nll_NxT1, masks_OxNxT1)

    return jax.vmap(one)(params_R)


LOSS_COLUMNS = ("answer_loss", "answer_loss_per_char", "full_loss", "full_loss_per_char")


def task_loss_table(cfg: ModelConfig, params_R, seeds, task: Task, ec: EvalConfig, *, batch: int = 512) -> pd.DataFrame:
    """One row per (seed, difficulty): task loss, the teacher-forced negative log-likelihood (nats) of the
    reference on the held-out problems, a smooth metric beside accuracy:

        answer_loss            the answer and its <eos>, given prompt + reference trace + <eot>, per token
        answer_loss_per_char   the same sum per character of the answer
        full_loss              trace + <eot> + answer + <eos>, given the prompt, per token
        full_loss_per_char     the same sum per character of trace and answer

    Sums run over all problems of a difficulty before dividing (a corpus rate, as bits per byte are)."""
    ex = eval_examples(task, ec)
    masks_OxNxT1 = np.stack([ex.answer_mask, ex.loss_mask])
    T = ex.tokens.shape[1]
    rows = block_rows(cfg, len(seeds), T, T, len(ex), batch)
    nll_RxOxN = in_blocks(
        lambda b, tokens, masks: masked_nll_seeds(cfg, params_R, tokens, np.moveaxis(masks, 0, 1)),
        rows,
        (ex.tokens, np.moveaxis(masks_OxNxT1, 1, 0)),
        out_axis=2,
    )
    tokens_OxN = masks_OxNxT1.sum(axis=2)  # (2, N): answer + <eos>; trace + <eot> + answer + <eos>
    chars_OxN = np.stack([ex.answer_len, masks_OxNxT1[1].sum(axis=1) - 2])  # without <eot> and <eos>
    rows = []
    for r, seed in enumerate(seeds):
        for d in np.unique(ex.difficulty):
            at = ex.difficulty == d
            nll = nll_RxOxN[r][:, at].sum(axis=1)
            rows.append(
                {
                    "seed": seed,
                    "difficulty": int(d),
                    "answer_loss": float(nll[0] / tokens_OxN[0][at].sum()),
                    "answer_loss_per_char": float(nll[0] / chars_OxN[0][at].sum()),
                    "full_loss": float(nll[1] / tokens_OxN[1][at].sum()),
                    "full_loss_per_char": float(nll[1] / chars_OxN[1][at].sum()),
                }
            )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- test-time compute strategies


def split_generation(gen_NxG: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[bytes]]:
    """Per row: thinking tokens (before the first <eot>), answer tokens (after it, through <eos>),
    and the answer as bytes (comparable; b'' without an <eot> and an <eos> after it)."""
    G = gen_NxG.shape[1]
    e_N, s_N = answer_span(gen_NxG)
    thinking_N, answer_N = written_tokens(gen_NxG)
    answers = [
        gen_NxG[i, e_N[i] + 1 : s_N[i]].astype(np.int32).tobytes() if s_N[i] < G else b"" for i in range(len(gen_NxG))
    ]
    return thinking_N, answer_N.astype(np.int64), answers


def pass_at_k(n: int, c: np.ndarray, k: int) -> np.ndarray:
    """Unbiased pass@k from n samples with c correct (Chen et al. 2021): 1 - C(n-c, k) / C(n, k)."""
    c = np.asarray(c)
    out = np.ones(c.shape, dtype=np.float64)
    ok = n - c >= k
    # product form avoids huge binomials: prod_{i=n-c+1}^{n} (1 - k / i)
    for idx in np.flatnonzero(ok):
        i = np.arange(n - c[idx] + 1, n + 1)
        out[idx] = 1.0 - np.prod(1.0 - k / i)
    return out


def _check_counts(budgets=(), ks=()):
    if any(int(b) < 0 for b in budgets):
        raise ScalingError(f"thinking budgets must be >= 0, got {list(budgets)}")
    if any(int(k) < 1 for k in ks):
        raise ScalingError(f"k must be >= 1, got {list(ks)}")


def budget_rows(cfg: ModelConfig, params_R, seeds, task: Task, ec: EvalConfig, budgets) -> pd.DataFrame:
    """Greedy accuracy under every thinking budget (forced <eot> after b tokens), from one pass per batch;
    beside it, strategy ``oracle``: a model that imitates the reference traces exactly and answers right
    only once its trace is done, correct where the reference trace has at most b tokens."""
    budgets = tuple(sorted({int(b) for b in budgets}))
    _check_counts(budgets=budgets)
    ex = eval_examples(task, ec)
    answer_len = int(ex.answer_len.max()) + 1
    prompts, valid = left_pad(ex.tokens, ex.prompt_len)
    gen_RxUxNxG = in_blocks(
        lambda b, p, v: decode_budgets_seeds(cfg, params_R, p, v, budgets=budgets, answer_len=answer_len),
        block_rows(cfg, len(seeds), prompts.shape[1], cfg.max_len, len(ex)),
        (prompts, valid),
        out_axis=2,
    )
    reference_N = first_eot(ex.tokens) - ex.prompt_len  # thinking tokens of each reference trace
    rows = []
    for r, seed in enumerate(seeds):
        for u, b in enumerate(budgets):
            gen = gen_RxUxNxG[r, u]
            thinking, answer_tokens, _ = split_generation(gen)
            oracle_thinking = np.minimum(reference_N, b)
            for strategy, correct, think, said in (
                ("budget", task.check(gen, ex.key), thinking, answer_tokens),
                ("oracle", (reference_N <= b).astype(np.float32), oracle_thinking, ex.answer_len + 1),
            ):
                rows.append(
                    pd.DataFrame(
                        {
                            "seed": seed,
                            "problem": np.arange(len(ex)),
                            "difficulty": ex.difficulty,
                            "strategy": strategy,
                            "budget": b,
                            "k": 1,
                            "correct": correct,
                            "thinking_tokens": think,
                            "answer_tokens": said,
                            "total_tokens": think + said,
                        }
                    )
                )
    return pd.concat(rows, ignore_index=True)


def sampling_rows(
    cfg: ModelConfig,
    params_R,
    seeds,
    task: Task,
    ec: EvalConfig,
    ks,
    *,
    temperature: float = 1.0,
    max_rounds: int | None = None,
) -> pd.DataFrame:
    """Majority vote, pass@k (unbiased), best-of-n with the task's checker and sequential re-thinking
    (sample, answer, sample again until two consecutive answers agree), for every k in ``ks``,
    from n = max(ks) samples per problem at ``temperature``."""
    ks = sorted({int(k) for k in ks})
    _check_counts(ks=ks)
    if not temperature > 0:
        raise ScalingError(f"sampling strategies need temperature > 0, got {temperature}")
    n = ks[-1]
    ex = eval_examples(task, ec)
    max_new = task.max_new_tokens(range(ec.difficulties[0], ec.difficulties[1] + 1))
    prompts, valid = left_pad(np.repeat(ex.tokens, n, axis=0), np.repeat(ex.prompt_len, n))
    keys = jax.vmap(jax.random.key)(jnp.asarray(seeds, jnp.uint32) + 7919)
    gen_RxNxG = in_blocks(
        lambda b, p, v: decode_seeds(
            cfg, params_R, p, v, block_keys(keys, b), jnp.float32(temperature), max_new=max_new
        ),
        block_rows(cfg, len(seeds), prompts.shape[1], cfg.max_len, len(prompts)),
        (prompts, valid),
        out_axis=1,
    )
    rows = []
    for r, seed in enumerate(seeds):
        samples = _Samples.of(task, ex, gen_RxNxG[r], n)
        for k in ks:
            base = {"seed": seed, "problem": np.arange(len(ex)), "difficulty": ex.difficulty, "budget": None, "k": k}
            use_rethink = max_rounds is None or k <= max_rounds
            for strategy, (ok, t, a) in samples.strategies(k, use_rethink).items():
                rows.append(
                    pd.DataFrame(
                        {**base, "strategy": strategy, "correct": ok, "thinking_tokens": t, "answer_tokens": a}
                    ).assign(total_tokens=t + a)
                )
    return pd.concat(rows, ignore_index=True)


@functools.partial(jax.jit, static_argnames=("cfg", "max_new"))
def decode_contexts(cfg: ModelConfig, params_R, prompts_RxBxL, valid_RxBxL, keys_R, temperature, *, max_new: int):
    """(R, B, G): every seed's model continues its own contexts."""
    return jax.vmap(lambda p, x, v, k: decode(cfg, p, x, v, k, temperature, max_new=max_new))(
        params_R, prompts_RxBxL, valid_RxBxL, keys_R
    )


def rethink_in_context(cfg: ModelConfig, params_R, seeds, task: Task, ex: Examples, rounds: int, temperature):
    """The seed's re-thinking loop: round 1 continues the prompt (thinking <eot> answer <eos>); every later
    round continues the prompt and all earlier rounds, through their <eos>, at ``temperature``. Returns
    (rounds, R, N, G) generations, one round per G = ``task.max_new_tokens`` tokens. Every context has the
    same width (prompt + rounds - 1 rounds): one compiled program serves every round."""
    lo, hi = int(ex.difficulty.min()), int(ex.difficulty.max())
    G = task.max_new_tokens(range(lo, hi + 1))
    R, N, L = len(seeds), len(ex), int(ex.prompt_len.max())
    width = L + (rounds - 1) * G  # of every round's context, left-padded
    context_RxNxT = np.zeros((R, N, width + G), np.int32)  # prompt, then each round through its <eos>
    context_RxNxT[:, :, :L] = np.where(np.arange(L) < ex.prompt_len[:, None], ex.tokens[:, :L], PAD)
    length_RxN = np.broadcast_to(ex.prompt_len, (R, N)).copy()
    gens = []
    for r in range(rounds):
        prompts, valid = left_pad(context_RxNxT.reshape(R * N, -1), length_RxN.reshape(-1), width=width)
        prompts, valid = prompts.reshape(R, N, width), valid.reshape(R, N, width)
        keys = jax.vmap(lambda s, r=r: jax.random.fold_in(jax.random.key(s + 104729), r))(
            jnp.asarray(seeds, jnp.uint32)
        )
        gen_RxNxG = in_blocks(
            lambda b, p, v, keys=keys: decode_contexts(
                cfg, params_R, p, v, block_keys(keys, b), jnp.float32(temperature), max_new=G
            ),
            block_rows(cfg, R, width, cfg.max_len, N),
            (prompts, valid),
            axis=1,
            out_axis=1,
        )
        gens.append(gen_RxNxG)
        _, end_RxN = answer_span(gen_RxNxG.reshape(R * N, G))
        used_RxN = np.minimum(end_RxN + 1, G).reshape(R, N)  # the round through its <eos>
        i, n, g = np.nonzero(np.arange(G) < used_RxN[..., None])
        context_RxNxT[i, n, length_RxN[i, n] + g] = gen_RxNxG[i, n, g]
        length_RxN += used_RxN
    return np.stack(gens)


def rethink_context_rows(
    cfg: ModelConfig, params_R, seeds, task: Task, ec: EvalConfig, rounds: int, *, temperature: float = 1.0
) -> pd.DataFrame:
    """Re-thinking in context (``rethink_in_context``), stopped when two consecutive rounds give the same
    answer or after k rounds, for every cap k = 1..``rounds`` (strategy ``rethink_context``): the final
    answer's verdict and the tokens of the rounds used. Rounds after the first continue after an <eos>,
    which supervised training never shows: what the model does there is what this measures."""
    if rounds < 1:
        raise ScalingError(f"re-thinking needs rounds >= 1, got {rounds}")
    ex = eval_examples(task, ec)
    gen_UxRxNxG = rethink_in_context(cfg, params_R, seeds, task, ex, rounds, temperature)
    rows = []
    for r, seed in enumerate(seeds):
        verdict_UxN = np.stack([task.check(g, ex.key) for g in gen_UxRxNxG[:, r]])
        split = [split_generation(g) for g in gen_UxRxNxG[:, r]]
        spent_UxN = np.stack([t + a for t, a, _ in split])
        answers_UxN = [a for _, _, a in split]
        think_UxN = np.stack([t for t, _, _ in split])
        # the round the uncapped loop stops at (0-based): where two consecutive answers first agree, else
        # the last; a cap of k rounds stops at the earlier of that and round k
        first_N = np.array([_rethink([a[n] for a in answers_UxN])[0] - 1 for n in range(len(ex))])
        for cap in range(1, rounds + 1):
            stop_N = np.minimum(first_N, cap - 1)
            used_UxN = np.arange(rounds)[:, None] <= stop_N[None, :]
            rows.append(
                pd.DataFrame(
                    {
                        "seed": seed,
                        "problem": np.arange(len(ex)),
                        "difficulty": ex.difficulty,
                        "strategy": "rethink_context",
                        "budget": None,
                        "k": cap,
                        "correct": verdict_UxN[stop_N, np.arange(len(ex))],
                        "thinking_tokens": (think_UxN * used_UxN).sum(0),
                        "answer_tokens": ((spent_UxN - think_UxN) * used_UxN).sum(0),
                        "total_tokens": (spent_UxN * used_UxN).sum(0),
                    }
                )
            )
    return pd.concat(rows, ignore_index=True)


@dataclass(frozen=True)
class _Samples:
    """n samples of each of N problems: the checker's verdict, tokens spent and answers (bytes). A chosen
    answer is scored by the verdict of a sample that gave it (equal answers get equal verdicts), so tasks
    with many valid answers vote and re-think as exact-answer tasks do."""

    correct_NxM: np.ndarray
    think_NxM: np.ndarray
    answer_tokens_NxM: np.ndarray
    answers: list[list[bytes]]

    @classmethod
    def of(cls, task: Task, ex: Examples, gen_NxG: np.ndarray, n: int) -> _Samples:
        N = len(ex)
        correct = task.check(gen_NxG, np.repeat(ex.key, n, 0)).reshape(N, n)
        thinking, answer_tokens, answers = split_generation(gen_NxG)
        grouped = [answers[i * n : (i + 1) * n] for i in range(N)]
        return cls(correct, thinking.reshape(N, n), answer_tokens.reshape(N, n), grouped)

    def strategies(self, k: int, rethink: bool) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """strategy -> (correct, thinking tokens, answer tokens) per problem, from the first k samples."""
        N, n = self.correct_NxM.shape
        spent = self.think_NxM[:, :k].sum(1), self.answer_tokens_NxM[:, :k].sum(1)
        majority = np.array([self._verdict(i, _mode(self.answers[i][:k])) for i in range(N)], dtype=np.float64)
        out = {
            "majority": (majority, *spent),
            "pass@k": (pass_at_k(n, self.correct_NxM.sum(1), k), *spent),
            "best_of_n": (self.correct_NxM[:, :k].max(1), *spent),
        }
        if rethink:
            rounds = [_rethink(self.answers[i][:k]) for i in range(N)]
            used = np.array([u for u, _ in rounds])
            ok = np.array([self._verdict(i, a) for i, (_, a) in enumerate(rounds)], dtype=np.float64)
            mask = np.arange(n)[None, :] < used[:, None]
            out["rethink"] = (ok, (self.think_NxM * mask).sum(1), (self.answer_tokens_NxM * mask).sum(1))
        return out

    def _verdict(self, i: int, answer: bytes) -> float:
        """The checker's verdict on ``answer`` to problem i (0 for no answer)."""
        if not answer:
            return 0.0
        return float(self.correct_NxM[i, self.answers[i].index(answer)])


def _mode(answers: list[bytes]) -> bytes:
    """Most common non-empty answer (ties: the one seen first); b'' if none."""
    counts: dict[bytes, int] = {}
    for a in answers:
        if a:
            counts[a] = counts.get(a, 0) + 1
    return max(counts, key=counts.get) if counts else b""


def _rethink(answers: list[bytes]) -> tuple[int, bytes]:
    """Rounds used and final answer: stop when two consecutive rounds agree, else after the last."""
    for r in range(1, len(answers)):
        if answers[r] and answers[r] == answers[r - 1]:
            return r + 1, answers[r]
    return len(answers), answers[-1]


def summarize(rows: pd.DataFrame, level: float = 0.95, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Accuracy per (strategy, budget, k, difficulty) with a bootstrap interval over problems, and mean tokens."""
    rng = np.random.default_rng(seed)
    out = []
    for key, g in rows.groupby(["strategy", "budget", "k", "difficulty"], sort=True, dropna=False):
        per_problem = g.groupby("problem")["correct"].mean().to_numpy()
        boots = rng.choice(per_problem, (n_boot, per_problem.size)).mean(1)
        lo, hi = np.percentile(boots, [50 * (1 - level), 50 * (1 + level)])
        out.append(
            {
                **dict(zip(["strategy", "budget", "k", "difficulty"], key)),
                "accuracy": per_problem.mean(),
                "lo": lo,
                "hi": hi,
                "mean_total_tokens": g["total_tokens"].mean(),
                "n_problems": per_problem.size,
            }
        )
    return pd.DataFrame(out)
