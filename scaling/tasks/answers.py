"""Answer checkers over text, run on the host: for tasks whose answers can be written more than one way.

Each checker compares a generated answer (a str, or None where the model wrote no answer or invalid
UTF-8, which scores 0) with the reference answer, and never raises on garbage:
    exact    NFC(got).strip() == NFC(want).strip()      (case and punctuation count)
    numeric  |x - y| <= tolerance * max(1, |y|)         (x, y: the answers read as numbers, a/b allowed)
    math     math_verify.verify(parse(want), parse(got)) (the ``math`` extra)
``reference_error(want)`` says why a reference answer cannot be checked (None when it can), so that a
problem file is rejected before any compute.
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass
from fractions import Fraction

from scaling.errors import TaskError

CHECKERS = ("exact", "numeric", "math")


def normalise(text: str) -> str:
    """Unicode NFC, outer whitespace stripped."""
    return unicodedata.normalize("NFC", text).strip()


def read_number(text: str) -> float | None:
    """``text`` as a finite number (int, decimal, exponent or a fraction a/b), else None."""
    s = normalise(text).replace(",", "") if len(text) < 64 else ""
    try:
        value = float(Fraction(s)) if "/" in s else float(s)
    except (ValueError, ZeroDivisionError, OverflowError):
        return None
    return value if math.isfinite(value) else None


def _math_verify():
    try:
        import math_verify
    except ImportError:
        raise TaskError(
            "the 'math' checker needs math-verify: pip install -e '.[math]' (or choose checker exact or numeric)"
        ) from None
    return math_verify


@dataclass(frozen=True)
class AnswerChecker:
    """One of ``CHECKERS``; ``tolerance`` is the numeric checker's relative tolerance."""

    kind: str = "exact"
    tolerance: float = 1e-6

    def __post_init__(self):
        if self.kind not in CHECKERS:
            raise TaskError(f"unknown checker {self.kind!r}; choose one of {list(CHECKERS)}")
        if not self.tolerance >= 0:
            raise TaskError(f"tolerance: expected a number >= 0, got {self.tolerance!r}")
        if self.kind == "math":
            _math_verify()

    def __call__(self, got: str | None, want: str) -> bool:
        if got is None:
            return False
        if self.kind == "exact":
            return normalise(got) == normalise(want)
        if self.kind == "numeric":
            x, y = read_number(got), read_number(want)
            return x is not None and y is not None and abs(x - y) <= self.tolerance * max(1.0, abs(y))
        mv = _math_verify()
        try:  # the parser's own timeouts use signals, which only the main thread may set
            gold, pred = mv.parse(want, parsing_timeout=None), mv.parse(got, parsing_timeout=None)
            return bool(pred) and bool(mv.verify(gold, pred, timeout_seconds=None))
        except Exception:  # garbage never crashes a checker: it is a wrong answer
            return False

    def reference_error(self, want: str) -> str | None:
        """Why ``want`` cannot serve as a reference answer for this checker, or None."""
        if not normalise(want):
            return "an empty answer (after stripping whitespace)"
        if self.kind == "numeric" and read_number(want) is None:
            return f"a number (the numeric checker reads it), got {want!r}"
        if self.kind == "math" and not _math_verify().parse(want, parsing_timeout=None):
            return f"an answer math-verify can parse, got {want!r}"
        return None
