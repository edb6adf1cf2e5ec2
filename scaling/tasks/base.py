"""Task interface, batch assembly, held-out splits and truncated traces.

A task produces, for a difficulty ``d``, three token blocks per example: the prompt (ending in '?'),
the chain-of-thought trace and the answer, each as wide as its longest possible content at ``d`` and
PAD-padded on the right where one problem's content is shorter (a search trace, a path): PAD inside a
block means "absent". ``generate`` assembles

    <bos> prompt trace <eot> answer <eos> <pad>...

closing the gaps, and, for a fraction ``cut_frac`` of rows, cuts the trace at a random point before
<eot>, so that a model trained on it can answer after any thinking budget. A task judges a generation
with ``Task.check(gen, key, xp)``, written once over numpy and jax.numpy: ``key`` is the per-problem
array the checker reads (the answer itself for an exact match, the problem for a task with many valid
answers, e.g. the graph of a path search).
"""

from __future__ import annotations

import functools
from dataclasses import astuple, dataclass

import numpy as np

from scaling.errors import TaskError
from scaling.tasks.checker import exact_answer, first_eot
from scaling.tokenizer import BOS, CHAR_TOKENIZER, DIGITS, EOS, EOT, PAD, Tokenizer, encode

HELD_OUT_MODULUS = 8  # a prompt whose hash is 0 mod 8 belongs to the held-out evaluation split


@dataclass(frozen=True)
class Blocks:
    prompt: np.ndarray  # (N, L) int32
    trace: np.ndarray  # (N, W)
    answer: np.ndarray  # (N, A)
    key: np.ndarray | None = None  # (N, Y) what ``Task.check`` reads; None: the answer (exact match)

    def rows(self, keep) -> Blocks:
        """The blocks of the rows selected by ``keep`` (a mask or indices)."""
        return Blocks(*(None if b is None else b[keep] for b in astuple(self)))

    @staticmethod
    def concat(parts: list[Blocks]) -> Blocks:
        cols = zip(*map(astuple, parts), strict=True)
        return Blocks(*(None if c[0] is None else np.concatenate(c) for c in cols))

    @property
    def checked(self) -> np.ndarray:
        """(N, Y) the checker's key: ``key``, or the answer where the task checks exact answers."""
        return self.answer if self.key is None else self.key


@dataclass(frozen=True)
class Examples:
    """Padded token sequences and what is needed to train on them and to verify answers."""

    tokens: np.ndarray  # (N, T) int32
    prompt_len: np.ndarray  # (N,) position where generation starts (after '?')
    answer: np.ndarray  # (N, A) answer tokens, PAD-padded to the longest
    answer_len: np.ndarray  # (N,)
    difficulty: np.ndarray  # (N,)
    key: np.ndarray  # (N, Y) what ``Task.check`` reads, PAD-padded to the widest

    @property
    def loss_mask(self) -> np.ndarray:
        """(N, T-1) float32: 1 where the next token is part of trace, <eot>, answer or <eos>."""
        t = np.arange(1, self.tokens.shape[1])[None, :]
        return ((t >= self.prompt_len[:, None]) & (self.tokens[:, 1:] != PAD)).astype(np.float32)

    @property
    def answer_mask(self) -> np.ndarray:
        """(N, T-1) float32: 1 where the next token is an answer token or the <eos> that closes it."""
        t = np.arange(1, self.tokens.shape[1])[None, :]
        eot = first_eot(self.tokens)[:, None]
        return ((t > eot) & (t <= eot + self.answer_len[:, None] + 1)).astype(np.float32)

    def __len__(self) -> int:
        return len(self.tokens)


class Task:
    """A procedurally generated, exactly verifiable reasoning task with a difficulty knob."""

    name: str
    min_difficulty: int = 1
    max_difficulty: int | None = None  # None: no upper limit
    tokenizer: Tokenizer = CHAR_TOKENIZER
    in_graph: bool = True  # ``check`` also runs over jax.numpy (the fused RL reward); else on the host only

    @property
    def identity(self):
        """What the results of this task depend on (hashed into every stage): its name for a generator;
        a problem set adds the digest of its problems and its checker."""
        return self.name

    def blocks(self, d: int, n: int, rng: np.random.Generator) -> Blocks:
        raise NotImplementedError

    def easy_blocks(self, d: int, n: int, rng: np.random.Generator) -> Blocks | None:
        """Problems of difficulty d that break a plateau of supervised training (``train.easy_frac`` of
        each batch), or None where the task has none. They must carry first-order signal that the full
        problems lack: in addition, (a + b + c) mod 10 is uncorrelated with each digit alone."""
        return None

    def problem_counts(self, split: str) -> dict[int, int] | None:
        """Problems per difficulty in ``split`` of a finite problem set; None for a generator."""
        return None

    def split_blocks(self, d: int, n: int, split: str, rng: np.random.Generator, easy: bool = False) -> Blocks:
        """n problems of difficulty d from ``split`` ('train', 'eval' or 'any'); ``easy``: from
        ``easy_blocks``. A prompt belongs to the held-out 'eval' split when its hash is 0 mod 8."""
        return hashed_split_blocks(self, d, n, split, rng, easy)

    def check(self, gen_NxG, key_NxY, xp=np):
        """0/1 reward per row of generations (numpy or, with ``xp=jax.numpy``, inside jit) against each
        problem's key: by default the exact answer (the key is the answer)."""
        return exact_answer(gen_NxG, key_NxY, xp)

    def widths(self, d: int) -> tuple[int, int, int]:
        """(L, W, A): the largest prompt, trace and answer at difficulty d (block widths, fixed for a d)."""
        return _block_widths(self, d)[:3]

    def key_width(self, d: int) -> int:
        """Y: the checker's key width at difficulty d."""
        return _block_widths(self, d)[3]

    def seq_len(self, difficulties) -> int:
        """Tokens needed for the longest example over ``difficulties`` (bos, eot, eos included)."""
        return max(sum(self.widths(int(d))) + 3 for d in difficulties)

    def max_new_tokens(self, difficulties) -> int:
        """Room to generate the full trace, <eot>, the answer and <eos> at the hardest of ``difficulties``."""
        return max(sum(self.widths(int(d))[1:]) + 2 for d in difficulties)


@functools.cache
def _block_widths(task: Task, d: int) -> tuple[int, int, int, int]:
    """(L, W, A, Y) of ``task``'s blocks at difficulty d, from one problem (the widths are fixed for a d)."""
    b = task.blocks(d, 1, np.random.default_rng(0))
    return b.prompt.shape[1], b.trace.shape[1], b.answer.shape[1], b.checked.shape[1]


def digits(values: np.ndarray, width: int) -> np.ndarray:
    """(..., width) digit ids of non-negative ints, most significant first, zero-padded."""
    powers = 10 ** np.arange(width - 1, -1, -1)
    return DIGITS[(values[..., None] // powers) % 10]


def const(text: str, n: int) -> np.ndarray:
    """A constant block: the ids of ``text`` repeated for n rows."""
    return np.broadcast_to(encode(text), (n, len(text)))


def prompt_hash(prompt: np.ndarray) -> np.ndarray:
    """A 64-bit hash per row of its tokens other than PAD (FNV-style multiply plus a splitmix finaliser),
    stable across runs: a prompt block with absent content (PAD) hashes as the prompt it assembles into."""
    h = np.full(prompt.shape[0], 0xCBF29CE484222325, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(prompt.shape[1]):
            token = prompt[:, j].astype(np.uint64)
            h = np.where(token == PAD, h, (h ^ token) * np.uint64(0x100000001B3))
        h ^= h >> np.uint64(31)
        h *= np.uint64(0x7FB5D329728EA185)
        h ^= h >> np.uint64(27)
    return h


def hashed_split_blocks(task: Task, d: int, n: int, split: str, rng: np.random.Generator, easy: bool) -> Blocks:
    """``Task.split_blocks`` of a generator: draw problems until n of them fall in ``split``."""
    make = task.easy_blocks if easy else task.blocks
    if split == "any":
        return make(d, n, rng)
    want_eval = split == "eval"
    parts, have = [], 0
    for _ in range(1000):
        b = make(d, max(2 * n, 64) * (HELD_OUT_MODULUS if want_eval else 1), rng)
        keep = (prompt_hash(b.prompt) % np.uint64(HELD_OUT_MODULUS) == 0) == want_eval
        if keep.any():
            parts.append(b.rows(keep))
            have += int(keep.sum())
        if have >= n:
            break
    else:
        raise TaskError(f"task {task.name!r} at difficulty {d} has too few distinct prompts for a {split} split")
    return Blocks.concat(parts).rows(slice(0, n))


def _sequences(b: Blocks, rng: np.random.Generator, cut_frac: float, corrupt_frac: float) -> np.ndarray:
    """(N, L + W + A + 3) rows ``<bos> prompt trace <eot> answer <eos>``, PAD (absent content) moved to
    the end of each row; ``corrupt_frac`` of rows carry a neighbour's trace and answer, and ``cut_frac``
    of rows a trace cut after k of its n tokens (k < n, uniform)."""
    m, W = len(b.prompt), b.trace.shape[1]
    trace, said = b.trace, b.answer
    if corrupt_frac > 0 and m > 1:
        bad = (rng.random(m) < corrupt_frac)[:, None]
        donor = np.roll(np.arange(m), 1)  # problems are independent draws: a neighbour's trace is wrong here
        trace, said = np.where(bad, trace[donor], trace), np.where(bad, said[donor], said)
    n_trace = (trace != PAD).sum(axis=1)
    k = n_trace
    if cut_frac > 0 and W > 0:
        cut = rng.random(m) < cut_frac
        k = np.where(cut, rng.integers(0, np.maximum(n_trace, 1)), n_trace)
    trace = np.where(np.arange(W)[None, :] < k[:, None], trace, PAD)
    full = np.concatenate(
        [np.full((m, 1), BOS), b.prompt, trace, np.full((m, 1), EOT), said, np.full((m, 1), EOS)], axis=1
    )
    # Close the gaps: every PAD (absent content) moves to the end of its row, the order of the rest kept.
    return np.take_along_axis(full, np.argsort(full == PAD, axis=1, kind="stable"), axis=1)


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
    levels = [int(d) for d in np.unique(difficulty)]
    T = seq_len or task.seq_len(levels)
    A_max = max(task.widths(d)[2] for d in levels)
    Y_max = max(task.key_width(d) for d in levels)
    tokens = np.full((n, T), PAD, dtype=np.int32)
    answer = np.full((n, A_max), PAD, dtype=np.int32)
    key = np.full((n, Y_max), PAD, dtype=np.int32)
    prompt_len = np.zeros(n, dtype=np.int32)
    answer_len = np.zeros(n, dtype=np.int32)
    for d in levels:
        rows = np.flatnonzero(difficulty == d)
        n_easy = 0
        if easy_frac > 0 and task.easy_blocks(d, 1, np.random.default_rng(0)) is not None:
            n_easy = int(rng.binomial(len(rows), easy_frac))
        parts = [task.split_blocks(d, len(rows) - n_easy, split, rng)] if n_easy < len(rows) else []
        if n_easy:  # the easy ones are drawn last and land on random rows: the steps of a chunk stay alike
            parts.append(task.split_blocks(d, n_easy, split, rng, easy=True))
            rows = rng.permutation(rows)
        b = Blocks.concat(parts)
        L, W, A = b.prompt.shape[1], b.trace.shape[1], b.answer.shape[1]
        if L + W + A + 3 > T:
            raise TaskError(f"task {task.name!r} at difficulty {d} needs {L + W + A + 3} tokens, seq_len is {T}")
        full = _sequences(b, rng, cut_frac, corrupt_frac)
        tokens[rows, : full.shape[1]] = full
        answer[rows, :A] = b.answer
        checked = b.checked
        key[rows, : checked.shape[1]] = checked
        prompt_len[rows] = 1 + (b.prompt != PAD).sum(axis=1)
        answer_len[rows] = (b.answer != PAD).sum(axis=1)
    return Examples(tokens, prompt_len, answer, answer_len, difficulty, key)
