"""Task interface, batch assembly, held-out splits and truncated traces.

A task produces, for a difficulty ``d``, three fixed-width token blocks per example: the prompt
(ending in '?'), the chain-of-thought trace and the answer. ``generate`` assembles

    <bos> prompt trace <eot> answer <eos> <pad>...

and, for a fraction ``cut_frac`` of rows, cuts the trace at a random point before <eot>, so
that a model trained on it can answer after any thinking budget. A task judges a generation with
``Task.check`` (over numpy or jax.numpy; by default the exact answer of ``scaling.tasks.checker``).
"""

from __future__ import annotations

from dataclasses import astuple, dataclass

import numpy as np

from scaling.errors import TaskError
from scaling.tasks.checker import exact_answer
from scaling.tokenizer import BOS, DIGITS, EOS, EOT, PAD, encode

HELD_OUT_MODULUS = 8  # a prompt whose hash is 0 mod 8 belongs to the held-out evaluation split


@dataclass(frozen=True)
class Blocks:
    prompt: np.ndarray  # (N, L) int32
    trace: np.ndarray  # (N, W)
    answer: np.ndarray  # (N, A)


@dataclass(frozen=True)
class Examples:
    """Padded token sequences and what is needed to train on them and to verify answers."""

    tokens: np.ndarray  # (N, T) int32
    prompt_len: np.ndarray  # (N,) position where generation starts (after '?')
    answer: np.ndarray  # (N, A) answer tokens, PAD-padded to the longest
    answer_len: np.ndarray  # (N,)
    difficulty: np.ndarray  # (N,)

    @property
    def loss_mask(self) -> np.ndarray:
        """(N, T-1) float32: 1 where the next token is part of trace, <eot>, answer or <eos>."""
        t = np.arange(1, self.tokens.shape[1])[None, :]
        return ((t >= self.prompt_len[:, None]) & (self.tokens[:, 1:] != PAD)).astype(np.float32)

    @property
    def answer_mask(self) -> np.ndarray:
        """(N, T-1) float32: 1 where the next token is an answer token or the <eos> that closes it."""
        t = np.arange(1, self.tokens.shape[1])[None, :]
        eot = np.argmax(self.tokens == EOT, axis=1)[:, None]
        return ((t > eot) & (t <= eot + self.answer_len[:, None] + 1)).astype(np.float32)

    def __len__(self) -> int:
        return len(self.tokens)


class Task:
    """A procedurally generated, exactly verifiable reasoning task with a difficulty knob."""

    name: str
    min_difficulty: int = 1
    max_difficulty: int | None = None  # None: no upper limit

    def blocks(self, d: int, n: int, rng: np.random.Generator) -> Blocks:
        raise NotImplementedError

    def easy_blocks(self, d: int, n: int, rng: np.random.Generator) -> Blocks | None:
        """Problems of difficulty d that break a plateau of supervised training (``train.easy_frac`` of
        each batch), or None where the task has none. They must carry first-order signal that the full
        problems lack: in addition, (a + b + c) mod 10 is uncorrelated with each digit alone."""
        return None

    def check(self, gen_NxG, answer_NxA, answer_len_N, xp=np):
        """0/1 reward per row of generations (numpy or, with ``xp=jax.numpy``, inside jit): exact answer."""
        return exact_answer(gen_NxG, answer_NxA, answer_len_N, xp)

    def widths(self, d: int) -> tuple[int, int, int]:
        """(L, W, A): prompt, trace and answer widths at difficulty d (fixed for a given d)."""
        b = self.blocks(d, 1, np.random.default_rng(0))
        return b.prompt.shape[1], b.trace.shape[1], b.answer.shape[1]

    def seq_len(self, difficulties) -> int:
        """Tokens needed for the longest example over ``difficulties`` (bos, eot, eos included)."""
        return max(sum(self.widths(int(d))) + 3 for d in difficulties)

    def max_new_tokens(self, difficulties) -> int:
        """Room to generate the full trace, <eot>, the answer and <eos> at the hardest of ``difficulties``."""
        return max(sum(self.widths(int(d))[1:]) + 2 for d in difficulties)


def digits(values: np.ndarray, width: int) -> np.ndarray:
    """(..., width) digit ids of non-negative ints, most significant first, zero-padded."""
    powers = 10 ** np.arange(width - 1, -1, -1)
    return DIGITS[(values[..., None] // powers) % 10]


def const(text: str, n: int) -> np.ndarray:
    """A constant block: the ids of ``text`` repeated for n rows."""
    return np.broadcast_to(encode(text), (n, len(text)))


def prompt_hash(prompt: np.ndarray) -> np.ndarray:
    """A 64-bit hash per row (FNV-style multiply plus a splitmix finaliser), stable across runs."""
    h = np.full(prompt.shape[0], 0xCBF29CE484222325, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(prompt.shape[1]):
            h = (h ^ prompt[:, j].astype(np.uint64)) * np.uint64(0x100000001B3)
        h ^= h >> np.uint64(31)
        h *= np.uint64(0x7FB5D329728EA185)
        h ^= h >> np.uint64(27)
    return h


def _blocks_for_split(task: Task, d: int, n: int, split: str, rng: np.random.Generator, easy: bool = False) -> Blocks:
    """n examples at difficulty d whose prompts fall in ``split`` ('train', 'eval' or 'any'); ``easy``:
    from ``task.easy_blocks``."""
    make = task.easy_blocks if easy else task.blocks
    if split == "any":
        return make(d, n, rng)
    want_eval = split == "eval"
    parts, have = [], 0
    for _ in range(1000):
        b = make(d, max(2 * n, 64) * (HELD_OUT_MODULUS if want_eval else 1), rng)
        keep = (prompt_hash(b.prompt) % np.uint64(HELD_OUT_MODULUS) == 0) == want_eval
        if keep.any():
            parts.append(Blocks(b.prompt[keep], b.trace[keep], b.answer[keep]))
            have += int(keep.sum())
        if have >= n:
            break
    else:
        raise TaskError(f"task {task.name!r} at difficulty {d} has too few distinct prompts for a {split} split")
    cat = [np.concatenate([getattr(p, f) for p in parts])[:n] for f in ("prompt", "trace", "answer")]
    return Blocks(*cat)


def generate(
    task: Task,
    difficulty: np.ndarray,
    rng: np.random.Generator,
    *,
    split: str = "train",
    cut_frac: float = 0.0,
    corrupt_frac: float = 0.0,
    easy_frac: float = 0.0,
    seq_len: int | None = None,
) -> Examples:
    """Examples with the given per-row difficulties, from the ``split`` of prompt space.

    ``corrupt_frac`` of rows (training data of low quality) carry the trace and answer of another
    problem of the same difficulty; ``answer`` still holds the true answer of every prompt.
    ``easy_frac`` of rows come from ``task.easy_blocks`` where the task has them."""
    difficulty = np.asarray(difficulty, dtype=np.int32)
    n = len(difficulty)
    T = seq_len or task.seq_len(np.unique(difficulty))
    A_max = max(task.widths(int(d))[2] for d in np.unique(difficulty))
    tokens = np.full((n, T), PAD, dtype=np.int32)
    answer = np.full((n, A_max), PAD, dtype=np.int32)
    prompt_len = np.zeros(n, dtype=np.int32)
    answer_len = np.zeros(n, dtype=np.int32)
    for d in np.unique(difficulty):
        rows = np.flatnonzero(difficulty == d)
        n_easy = 0
        if easy_frac > 0 and task.easy_blocks(int(d), 1, np.random.default_rng(0)) is not None:
            n_easy = int(rng.binomial(len(rows), easy_frac))
        parts = [_blocks_for_split(task, int(d), len(rows) - n_easy, split, rng)] if n_easy < len(rows) else []
        if n_easy:  # the easy ones are drawn last and land on random rows: the steps of a chunk stay alike
            parts.append(_blocks_for_split(task, int(d), n_easy, split, rng, easy=True))
            rows = rng.permutation(rows)
        b = Blocks(*(np.concatenate(cols) for cols in zip(*map(astuple, parts), strict=True)))
        L, W, A = b.prompt.shape[1], b.trace.shape[1], b.answer.shape[1]
        if L + W + A + 3 > T:
            raise TaskError(f"task {task.name!r} at difficulty {d} needs {L + W + A + 3} tokens, seq_len is {T}")
        m = len(rows)
        trace, said = b.trace, b.answer
        if corrupt_frac > 0 and m > 1:
            bad = (rng.random(m) < corrupt_frac)[:, None]
            donor = np.roll(np.arange(m), 1)  # problems are independent draws: a neighbour's trace is wrong here
            trace, said = np.where(bad, trace[donor], trace), np.where(bad, said[donor], said)
        full = np.concatenate(
            [np.full((m, 1), BOS), b.prompt, trace, np.full((m, 1), EOT), said, np.full((m, 1), EOS)], axis=1
        )
        # Cut the trace of some rows after k of its W tokens (k < W): skip the rest of it.
        k = np.full(m, W)
        if cut_frac > 0 and W > 0:
            cut = rng.random(m) < cut_frac
            k = np.where(cut, rng.integers(0, W, m), W)
        start = 1 + L  # first trace position
        length = full.shape[1] - (W - k)
        pos = np.arange(full.shape[1])[None, :]
        src = np.where(pos < start + k[:, None], pos, pos + (W - k)[:, None])
        row = np.take_along_axis(full, np.minimum(src, full.shape[1] - 1), axis=1)
        row = np.where(pos < length[:, None], row, PAD)
        tokens[rows, : full.shape[1]] = row
        answer[rows, :A] = b.answer
        prompt_len[rows] = start
        answer_len[rows] = A
    return Examples(tokens, prompt_len, answer, answer_len, difficulty)
