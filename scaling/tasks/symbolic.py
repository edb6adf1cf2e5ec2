"""Symbolic tasks: variable chains with distractors, and Caesar / Vigenere ciphers."""

from __future__ import annotations

import numpy as np

from scaling.tasks.arithmetic import MODULUS, _interleave
from scaling.tasks.base import Blocks, Task, const, digits
from scaling.tokenizer import DIGITS, LETTERS, encode

EQ, PLUS, SEMI, GT = (int(encode(c)[0]) for c in "=+;>")


def _random_letters(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """(n, k) distinct letter indices per row."""
    return np.argsort(rng.random((n, 26)), axis=1)[:, :k]


class VariableChain(Task):
    """'v c:b=a+05;x=0+33;a=0+12;c=b+40;y=0+07;?'  thinks 'a=12;b=17;c=57'  answers '57'.

    Difficulty d = chain length. Definitions (``src + number`` modulo 97; the root adds to 0)
    come out of order, mixed with ``distractors`` unrelated ones; the trace resolves the chain
    in dependency order.
    """

    name = "vars"

    def __init__(self, distractors: int = 2):
        self.distractors = distractors
        self.max_difficulty = 26 - distractors  # every variable is a distinct letter

    def blocks(self, d, n, rng):
        m = d + self.distractors
        names = LETTERS[_random_letters(n, m, rng)]  # first d form the chain, in order
        adds = rng.integers(0, MODULUS, (n, m))
        values = np.cumsum(adds[:, :d], axis=1) % MODULUS
        zero = np.full((n,), DIGITS[0])
        defs = []
        for j in range(m):
            src = names[:, j - 1] if 0 < j < d else zero
            defs.append(
                np.stack(
                    [names[:, j], np.full(n, EQ), src, np.full(n, PLUS), *digits(adds[:, j], 2).T, np.full(n, SEMI)],
                    axis=1,
                )
            )
        defs = np.stack(defs, axis=1)  # (n, m, 7)
        order = np.argsort(rng.random((n, m)), axis=1)
        defs = np.take_along_axis(defs, order[:, :, None], axis=1).reshape(n, 7 * m)
        prompt = np.concatenate([const("v ", n), names[:, d - 1 : d], const(":", n), defs, const("?", n)], axis=1)
        steps = [
            np.concatenate([names[:, j : j + 1], np.full((n, 1), EQ), digits(values[:, j], 2)], 1) for j in range(d)
        ]
        trace = _interleave(steps, SEMI)
        return Blocks(prompt.astype(np.int32), trace.astype(np.int32), digits(values[:, -1], 2).astype(np.int32))


class Cipher(Task):
    """'c d:khoor?'  thinks 'kd>h hd>e ...'  answers 'hello': Vigenere decoding (key length 1 is Caesar).

    Difficulty d = word length. Each trace step writes cipher letter, key letter, '>', plain letter.
    """

    def __init__(self, key_len: int = 1):
        self.key_len = key_len
        self.name = "caesar" if key_len == 1 else "vigenere"

    def blocks(self, d, n, rng):
        plain = rng.integers(0, 26, (n, d))
        key = rng.integers(1 if self.key_len == 1 else 0, 26, (n, self.key_len))
        key_at = key[:, np.arange(d) % self.key_len]
        cipher = (plain + key_at) % 26
        prompt = np.concatenate([const("c ", n), LETTERS[key], const(":", n), LETTERS[cipher], const("?", n)], 1)
        steps = [
            np.stack([LETTERS[cipher[:, i]], LETTERS[key_at[:, i]], np.full(n, GT), LETTERS[plain[:, i]]], 1)
            for i in range(d)
        ]
        trace = _interleave(steps, encode(" ")[0])
        return Blocks(prompt.astype(np.int32), trace.astype(np.int32), LETTERS[plain].astype(np.int32))
