"""Arithmetic tasks: running sums modulo 97 and multi-digit addition with a carry scratchpad."""

from __future__ import annotations

import numpy as np

from scaling.tasks.base import Blocks, Task, const, digits
from scaling.tasks.tokenizer import encode

MODULUS = 97
SPACE, C = encode(" ")[0], encode("c")[0]


def _interleave(parts: list[np.ndarray], sep: int) -> np.ndarray:
    """Concatenate (n, w) blocks with a ``sep`` column between consecutive ones."""
    n = parts[0].shape[0]
    out = []
    for i, p in enumerate(parts):
        if i:
            out.append(np.full((n, 1), sep))
        out.append(p)
    return np.concatenate(out, axis=1)


class RunningSum(Task):
    """'s 12 05 77?'  thinks '12 17 94'  answers '94': the sum of d numbers modulo 97.

    Difficulty d = how many numbers. The trace writes every partial sum.
    """

    name = "sum"


    def blocks(self, d, n, rng):
        nums = rng.integers(0, MODULUS, (n, d))
        sums = np.cumsum(nums, axis=1) % MODULUS
        prompt = np.concatenate([const("s", n), *[np.concatenate([const(" ", n), digits(nums[:, i], 2)], 1)
                                                  for i in range(d)], const("?", n)], axis=1)
        trace = _interleave([digits(sums[:, i], 2) for i in range(d)], SPACE)
        return Blocks(prompt.astype(np.int32), trace.astype(np.int32), digits(sums[:, -1], 2).astype(np.int32))


class Addition(Task):
    """'a 123+459?'  thinks '2c1 8c0 5c0' (digit and carry, least significant first)  answers '0582'.

    Difficulty d = digits per operand; the answer has d + 1 digits (leading zero kept).
    """

    name = "add"


    def blocks(self, d, n, rng):
        a = rng.integers(0, 10, (n, d))
        b = rng.integers(0, 10, (n, d))
        sum_digits = np.zeros((n, d), dtype=np.int64)
        carries = np.zeros((n, d), dtype=np.int64)
        carry = np.zeros(n, dtype=np.int64)
        for i in range(d - 1, -1, -1):  # least significant digit is the last column
            s = a[:, i] + b[:, i] + carry
            sum_digits[:, i], carry = s % 10, s // 10
            carries[:, i] = carry
        prompt = np.concatenate([const("a ", n), digits(a, 1)[..., 0], const("+", n), digits(b, 1)[..., 0],
                                 const("?", n)], axis=1)
        steps = [np.concatenate([digits(sum_digits[:, i], 1), np.full((n, 1), C), digits(carries[:, i], 1)], 1)
                 for i in range(d - 1, -1, -1)]
        trace = _interleave(steps, SPACE)
        answer = np.concatenate([digits(carry, 1), digits(sum_digits, 1)[..., 0]], axis=1)
        return Blocks(prompt.astype(np.int32), trace.astype(np.int32), answer.astype(np.int32))
