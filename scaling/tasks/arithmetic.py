"""Arithmetic tasks: running sums modulo 97, multi-digit addition with a carry scratchpad, and the same
addition with index hints, which length-generalises.

Inputs of ``sum`` and ``add`` sit in a fixed field of ``width`` slots (unused slots blank), and each
trace step is as wide as an input slot, so step i always reads slot i at the same distance back, whatever
the difficulty. With rotary (relative) positions that is one attention pattern to learn; with
inputs whose position depends on the difficulty, tiny models stay at chance for thousands of
steps. ``width`` bounds the difficulty (evaluate above the training range, up to ``width``).
"""

from __future__ import annotations

import numpy as np

from scaling.errors import TaskError
from scaling.tasks.base import Blocks, Task, const, digits, prompt_hash
from scaling.tokenizer import LETTERS, PAD, encode

MODULUS = 97
SPACE, C, PLUS = encode(" ")[0], encode("c")[0], encode("+")[0]


def _interleave(parts: list[np.ndarray], sep: int) -> np.ndarray:
    """Concatenate (n, w) blocks with a ``sep`` column between consecutive ones."""
    n = parts[0].shape[0]
    out = []
    for i, p in enumerate(parts):
        if i:
            out.append(np.full((n, 1), sep))
        out.append(p)
    return np.concatenate(out, axis=1)


def _field(items: list[np.ndarray], width: int) -> np.ndarray:
    """Items (each (n, w)) in ``width`` slots separated by spaces, unused slots blank."""
    n, w = items[0].shape
    if len(items) > width:
        raise TaskError(f"difficulty {len(items)} exceeds the task's field width {width}")
    blank = np.full((n, w), SPACE)
    return _interleave(items + [blank] * (width - len(items)), SPACE)


def column_sums(a_NxX: np.ndarray, b_NxX: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Long addition of two numbers given as digit columns (column i the digit of 10^i): the (N, X) sum
    digits and carries out of each column, and the (N,) final carry."""
    sum_digits, carries = np.zeros_like(a_NxX, dtype=np.int64), np.zeros_like(a_NxX, dtype=np.int64)
    carry = np.zeros(len(a_NxX), dtype=np.int64)
    for i in range(a_NxX.shape[1]):
        s = a_NxX[:, i] + b_NxX[:, i] + carry
        sum_digits[:, i], carry = s % 10, s // 10
        carries[:, i] = carry
    return sum_digits, carries, carry


class RunningSum(Task):
    """'s 12 05 77      ?'  thinks '12 17 94'  answers '94': the sum of d numbers modulo 97.

    Difficulty d = how many numbers (<= width). The trace writes every partial sum.
    """

    name = "sum"

    def __init__(self, width: int = 8):
        self.width = self.max_difficulty = width

    def blocks(self, d, n, rng):
        nums = rng.integers(0, MODULUS, (n, d))
        sums = np.cumsum(nums, axis=1) % MODULUS
        field = _field([digits(nums[:, i], 2) for i in range(d)], self.width)
        prompt = np.concatenate([const("s ", n), field, const("?", n)], axis=1)
        trace = _interleave([digits(sums[:, i], 2) for i in range(d)], SPACE)
        return Blocks(prompt.astype(np.int32), trace.astype(np.int32), digits(sums[:, -1], 2).astype(np.int32))


class Addition(Task):
    """'a 3+9 2+5 1+4         ?'  thinks '2c1 8c0 5c0'  answers '2850': 123 + 459 = 582.

    Numbers are written least significant digit first, the operands as aligned digit pairs;
    each trace step adds one pair and the carry in, and writes the sum digit and the carry out.
    Difficulty d = digits per operand (<= width); the answer has d + 1 digits, final carry last.
    """

    name = "add"

    def __init__(self, width: int = 8):
        self.width = self.max_difficulty = width

    def blocks(self, d, n, rng, top: int = 10):
        a = rng.integers(0, top, (n, d))  # column i is the digit of 10^i
        b = rng.integers(0, top, (n, d))
        sum_digits, carries, carry = column_sums(a, b)
        pairs = [np.concatenate([digits(a[:, i], 1), np.full((n, 1), PLUS), digits(b[:, i], 1)], 1) for i in range(d)]
        prompt = np.concatenate([const("a ", n), _field(pairs, self.width), const("?", n)], axis=1)
        steps = [
            np.concatenate([digits(sum_digits[:, i], 1), np.full((n, 1), C), digits(carries[:, i], 1)], 1)
            for i in range(d)
        ]
        trace = _interleave(steps, SPACE)
        answer = np.concatenate([digits(sum_digits, 1)[..., 0], digits(carry, 1)], axis=1)
        return Blocks(prompt.astype(np.int32), trace.astype(np.int32), answer.astype(np.int32))

    def easy_blocks(self, d, n, rng):
        """Digits 0-4: no column carries, so the sum digit is a + b, which each digit informs; the full
        problems' sum digit (a + b + c) mod 10 is independent of each digit alone, and a seed that
        sees only them can sit at ln(10) nats on it for thousands of steps."""
        return self.blocks(d, n, rng, top=5)


class IndexedAddition(Task):
    """'a   f3+9 g2+5 h1+4?'  thinks 'f2c1 g8c0 h5c0 i0'  answers 'f2g8h5i0': 123 + 459 = 582.

    Addition with index hints (Zhou et al. 2023): every digit pair of the operands, every step of the
    trace and every digit of the answer carries a letter, consecutive letters from a start that varies
    between problems, so each step finds its pair, and each answer digit its step, by content rather
    than by a distance that grows with the number of digits. The prompt is dense (no fixed field), begins
    with 0 to ``filler`` spaces, and the trace ends with a step for the final carry. Letters and spaces
    are functions of the operands (the held-out split, a hash of the prompt, stays a split of the sums).
    Trained on 1-5 digits without positional encoding (``positions: none``), d64 solves half of the
    6-digit sums and a few 7-digit ones (``experiments/generalise_cpu.yaml``); with rotary positions, none.
    Difficulty d = digits per operand; the answer has d + 1 letter-digit pairs, the final carry last.
    """

    name = "add_indexed"

    def __init__(self, max_difficulty: int = 8, filler: int = 10):
        self.max_difficulty, self.filler = max_difficulty, filler

    def blocks(self, d, n, rng, top: int = 10):
        if d > self.max_difficulty:
            raise TaskError(f"difficulty {d} exceeds the task's largest difficulty {self.max_difficulty}")
        a = rng.integers(0, top, (n, d))  # column i is the digit of 10^i
        b = rng.integers(0, top, (n, d))
        sum_digits, carries, carry = column_sums(a, b)
        h = prompt_hash(np.concatenate([digits(a, 1)[..., 0], digits(b, 1)[..., 0]], axis=1))
        start = (h % np.uint64(len(LETTERS) - self.max_difficulty)).astype(np.int64)
        spaces = (h // np.uint64(97) % np.uint64(self.filler + 1)).astype(np.int64)

        def letter(i):
            return LETTERS[start + i][:, None]

        pairs = [
            np.concatenate([letter(i), digits(a[:, i], 1), np.full((n, 1), PLUS), digits(b[:, i], 1)], 1)
            for i in range(d)
        ]
        filler = np.where(np.arange(self.filler)[None, :] < spaces[:, None], SPACE, PAD)  # PAD: absent
        prompt = np.concatenate([const("a ", n), filler, _interleave(pairs, SPACE), const("?", n)], axis=1)
        steps = [
            np.concatenate([letter(i), digits(sum_digits[:, i], 1), np.full((n, 1), C), digits(carries[:, i], 1)], 1)
            for i in range(d)
        ]
        final = np.concatenate([letter(d), digits(carry, 1)], 1)
        trace = _interleave([*steps, final], SPACE)
        answer = np.concatenate(
            [*(np.concatenate([letter(i), digits(sum_digits[:, i], 1)], 1) for i in range(d)), final], 1
        )
        return Blocks(prompt.astype(np.int32), trace.astype(np.int32), answer.astype(np.int32))

    def easy_blocks(self, d, n, rng):
        """Digits 0-4: no column carries (see ``Addition.easy_blocks``)."""
        return self.blocks(d, n, rng, top=5)
