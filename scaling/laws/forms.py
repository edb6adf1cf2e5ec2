"""Functional forms of scaling laws.

Every form is written once over an array module ``xp`` (numpy for ``Law.predict``, jax.numpy
inside the fitter), so a saved law predicts with exactly the formula it was fitted with.

Fitting happens in an unconstrained *internal* space ``u``; ``natural(u, bounds)`` maps it to
the documented parameters and enforces the bounds. With ``bounds="data"`` (the default):
- a floor (``E`` of ``saturating_power`` and ``chinchilla``) lies in (0, min y]: an irreducible
  error cannot be above the best value observed;
- a lower asymptote (``R0`` of ``sigmoid_log`` and ``logistic``) lies in [floor, min y] (floor 0
  when y >= 0) and an upper one (``A``) in [max y, ceiling] (ceiling 1 when every y is in [0, 1],
  e.g. accuracies).
Here min y and max y are over the mean y of each distinct x (seeds at one x are averaged). With
``bounds="physical"`` only the physical limits remain: asymptotes in [floor, ceiling] and floors
in (0, ceiling], as published fits use (an OLMo step-2 sigmoid puts its floor above the smallest
observed accuracy). Steepness (``B`` of ``sigmoid_log``, ``k`` of ``logistic``) is capped: a fit
that reaches the cap is a step, not a law (``Law.is_step``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

BOUNDS = ("data", "physical")


@dataclass(frozen=True)
class Bounds:
    """Limits for the bounded parameters, from the data and the chosen mode (saved with the law)."""

    y_min: float
    y_max: float
    floor: float  # lower limit of a lower asymptote (0 for non-negative metrics, else -inf)
    ceiling: float  # upper limit of an upper asymptote (1 for metrics in [0, 1], else +inf)
    mode: str = "data"

    @classmethod
    def from_y(cls, y: np.ndarray, ceiling: float | None = None, mode: str = "data") -> Bounds:
        y_min, y_max = float(np.min(y)), float(np.max(y))
        floor = 0.0 if y_min >= 0 else -np.inf
        if ceiling is None:
            ceiling = 1.0 if (y_min >= 0 and y_max <= 1) else np.inf
        return cls(y_min, y_max, floor, float(ceiling), mode)

    @property
    def lower_max(self) -> float:
        """Largest value of a lower asymptote or floor: min y (data) or the ceiling (physical)."""
        return self.y_min if self.mode == "data" else self.ceiling

    @property
    def upper_min(self) -> float:
        """Smallest value of an upper asymptote: max y (data) or the floor (physical)."""
        return self.y_max if self.mode == "data" else self.floor

    def array(self) -> np.ndarray:
        """[lower_max, upper_min, floor, ceiling]: what ``Form.natural`` reads inside the fitter."""
        return np.array([self.lower_max, self.upper_min, self.floor, self.ceiling], dtype=np.float64)


def _sigmoid(z, xp):
    return 1.0 / (1.0 + xp.exp(-z))


def _logit(p):
    p = np.clip(p, 1e-9, 1 - 1e-9)
    return np.log(p) - np.log1p(-p)


def _softplus(z, xp):
    return xp.logaddexp(z, 0.0)


def _softplus_inv(v):
    v = np.maximum(v, 1e-12)
    return v + np.log(-np.expm1(-v))


def _below(u, top, xp):
    """A positive value below ``top``: top * exp(-softplus(u)) (log-uniform-friendly), exp(u) for an
    infinite top."""
    finite = xp.isfinite(top)
    top_safe = xp.where(finite, top, 1.0)
    return xp.where(finite, top_safe * xp.exp(-_softplus(u, xp)), xp.exp(u))


def _below_inv(v, top):
    if not np.isfinite(top):
        return np.log(np.maximum(v, 1e-300))
    return _softplus_inv(np.log(top) - np.log(np.clip(v, 1e-300, top * (1 - 1e-6))))


def _interval(u, lo, hi, xp):
    """A value in [lo, hi]: lo + (hi - lo) sigmoid(u) when both are finite, lo + exp(u) or hi - exp(u)
    when one is infinite, u when both are."""
    lo_ok, hi_ok = xp.isfinite(lo), xp.isfinite(hi)
    lo_s, hi_s = xp.where(lo_ok, lo, 0.0), xp.where(hi_ok, hi, 0.0)
    both = lo_s + (hi_s - lo_s) * _sigmoid(u, xp)
    return xp.where(lo_ok & hi_ok, both, xp.where(lo_ok, lo_s + xp.exp(u), xp.where(hi_ok, hi_s - xp.exp(u), u)))


def _interval_inv(v, lo, hi):
    v = np.asarray(v, dtype=np.float64)
    if np.isfinite(lo) and np.isfinite(hi):
        return _logit((v - lo) / max(hi - lo, 1e-300))
    if np.isfinite(lo):
        return np.log(np.maximum(v - lo, 1e-12))
    if np.isfinite(hi):
        return np.log(np.maximum(hi - v, 1e-12))
    return v


def _asymptote_starts(y: np.ndarray, b: Bounds) -> tuple[list[float], list[float]]:
    """Starting values of a lower (R0) and an upper (A) asymptote, inside their bounds. With data bounds
    they lie between floor and min y, and between max y and ceiling; with physical bounds between the
    floor and the lower quartile of y, and between the upper quartile and the ceiling (not on a bound,
    where a sigmoid reparametrisation has no gradient to leave it)."""
    lo = b.floor if np.isfinite(b.floor) else b.y_min - (b.y_max - b.y_min)
    hi = b.ceiling if np.isfinite(b.ceiling) else b.y_max + (b.y_max - b.y_min)
    if b.mode == "data":
        return [lo + f * (b.y_min - lo) for f in (0.1, 0.5, 0.9)], [
            b.y_max + f * (hi - b.y_max) for f in (0.1, 0.5, 0.9)
        ]
    q25, q75 = np.quantile(y, [0.25, 0.75])
    return [lo + f * (q25 - lo) for f in (0.1, 0.5, 0.9)], [hi - f * (hi - q75) for f in (0.02, 0.2, 0.6)]


def _product(*axes) -> np.ndarray:
    return np.array(list(itertools.product(*axes)), dtype=np.float64)


def _ten_to_ninety(center: float, steepness: float) -> tuple[float, float]:
    """Where a logistic 1 / (1 + exp(-steepness (u - center))) passes 10% and 90%: center -+ ln 9 / steepness
    (the whole line for a steepness of 0)."""
    with np.errstate(divide="ignore"):
        half = np.log(9.0) / np.float64(steepness)
    return float(center - half), float(center + half)


class Form:
    """A scaling-law form: ``predict(params, xs)`` with params keyed by ``params`` names."""

    name: str
    params: tuple[str, ...]
    inputs: int = 1
    space: str = "log"  # residual space used by default: log y - log y_hat, or y - y_hat
    equation: str = ""

    def predict(self, p, xs, xp=np):
        """y from natural params ``p`` (sequence in ``params`` order) and inputs ``xs``."""
        raise NotImplementedError

    def natural(self, u, b, xp=np):
        """Natural params from the internal vector ``u`` (last axis) and bounds array ``b``."""
        raise NotImplementedError

    def internal(self, p: np.ndarray, b: Bounds) -> np.ndarray:
        """Inverse of ``natural`` on the rows of ``p`` (values outside bounds are clipped)."""
        raise NotImplementedError

    def starts(self, xs: list[np.ndarray], y: np.ndarray, b: Bounds) -> np.ndarray:
        """Grid of natural-parameter starts, one row per start."""
        raise NotImplementedError

    def solve(self, p, y):
        """x with predict(p, x) = y, nan where y is out of reach (single-input forms)."""
        raise NotImplementedError(f"form {self.name!r} has {self.inputs} inputs: nothing to solve")

    def reachable(self, p) -> tuple[float, float]:
        """Open interval of y values that ``solve`` can reach."""
        raise NotImplementedError

    def limit(self, p) -> float | None:
        """The value y approaches as x grows (an asymptote or floor), None if it grows without bound."""
        return None

    steepness: str | None = None  # the parameter capped at ``steepness_max``: at the cap the fit is a step
    steepness_max: float = np.inf

    def transition(self, p) -> tuple[float, float] | None:
        """The x range over which a sigmoid moves from 10% to 90% of its range (None: not a sigmoid)."""
        return None

    log_x: bool = True  # x enters through log x (so x > 0); False: any x >= 0 (a loss)

    def formula(self, p: dict[str, float], x: list[str], y: str) -> str:
        raise NotImplementedError


def _ls_intercept(slope: np.ndarray, logx: np.ndarray, logy: np.ndarray) -> np.ndarray:
    """Least-squares intercept of logy = c - slope * logx for each candidate slope."""
    return np.mean(logy[None, :] + slope[:, None] * logx[None, :], axis=1)


class Power(Form):
    name, params, equation = "power", ("A", "alpha"), "y = A * x^-alpha"

    def predict(self, p, xs, xp=np):
        A, alpha = p
        return xp.exp(xp.log(A) - alpha * xp.log(xs[0]))

    def natural(self, u, b, xp=np):
        return xp.exp(u[..., 0]), u[..., 1]

    def internal(self, p, b):
        return np.stack([np.log(p[:, 0]), p[:, 1]], axis=1)

    def starts(self, xs, y, b):
        alpha = np.linspace(-2.0, 2.0, 17)
        logA = _ls_intercept(alpha, np.log(xs[0]), np.log(np.abs(y) + 1e-300))
        return np.stack([np.exp(logA), alpha], axis=1)

    def solve(self, p, y):
        A, alpha = p
        with np.errstate(all="ignore"):
            return np.where(y > 0, (A / y) ** (1.0 / alpha), np.nan)

    def reachable(self, p):
        return (0.0, np.inf)

    def limit(self, p):
        return 0.0 if p[1] > 0 else None

    def formula(self, p, x, y):
        return f"{y} = {p['A']:.6g} * {x[0]}^{-p['alpha']:.6g}"


class SaturatingPower(Form):
    name, params, equation = "saturating_power", ("E", "A", "alpha"), "y = E + A * x^-alpha"

    def predict(self, p, xs, xp=np):
        E, A, alpha = p
        return E + xp.exp(xp.log(A) - alpha * xp.log(xs[0]))

    def natural(self, u, b, xp=np):
        return _below(u[..., 0], b[0], xp), xp.exp(u[..., 1]), xp.exp(u[..., 2])

    def internal(self, p, b):
        E = _below_inv(p[:, 0], b.lower_max)
        return np.stack([E, np.log(p[:, 1]), np.log(np.maximum(p[:, 2], 1e-12))], axis=1)

    def starts(self, xs, y, b):
        rows = []
        logx = np.log(xs[0])
        for frac in (0.0, 0.3, 0.6, 0.9):
            E = frac * b.y_min
            alpha = np.array([0.05, 0.1, 0.2, 0.4, 0.8, 1.6])
            logA = _ls_intercept(alpha, logx, np.log(np.maximum(y - E, 1e-12)))
            rows += [(max(E, 1e-6 * b.y_min), np.exp(la), a) for la, a in zip(logA, alpha)]
        return np.array(rows)

    def solve(self, p, y):
        E, A, alpha = p
        with np.errstate(all="ignore"):
            return np.where(y > E, (A / (y - E)) ** (1.0 / alpha), np.nan)

    def reachable(self, p):
        return (p[0], np.inf)

    def limit(self, p):
        return p[0]

    def formula(self, p, x, y):
        return f"{y} = {p['E']:.6g} + {p['A']:.6g} * {x[0]}^-{p['alpha']:.6g}"


class SigmoidLog(Form):
    name, params = "sigmoid_log", ("R0", "A", "C_mid", "B")
    equation = "y = R0 + (A - R0) / (1 + (C_mid / x)^B)"
    space = "linear"  # accuracies can be exactly 0
    # Steepness cap: at B = 100 the law moves from 1% to 99% of its range within 5% of C_mid, a
    # step no grid of x can resolve further. Step-like data (a curve that saturates between two
    # budgets) would otherwise send B, and every bootstrap refit, to infinity.
    B_MAX = 100.0
    steepness, steepness_max = "B", B_MAX

    def predict(self, p, xs, xp=np):
        R0, A, C_mid, B = p
        return R0 + (A - R0) / (1.0 + xp.exp(B * (xp.log(C_mid) - xp.log(xs[0]))))

    def natural(self, u, b, xp=np):
        R0 = _interval(u[..., 0], b[2], b[0], xp)
        A = _interval(u[..., 1], b[1], b[3], xp)
        return R0, A, xp.exp(u[..., 2]), self.B_MAX * _sigmoid(u[..., 3], xp)

    def internal(self, p, b):
        return np.stack(
            [
                _interval_inv(p[:, 0], b.floor, b.lower_max),
                _interval_inv(p[:, 1], b.upper_min, b.ceiling),
                np.log(p[:, 2]),
                _logit(p[:, 3] / self.B_MAX),
            ],
            axis=1,
        )

    def starts(self, xs, y, b):
        R0, A = _asymptote_starts(y, b)
        C_mid = np.exp(np.quantile(np.log(xs[0]), [0.0, 0.25, 0.5, 0.75, 1.0]))
        return _product(R0, A, C_mid, [0.5, 1.0, 2.0, 4.0])

    def solve(self, p, y):
        R0, A, C_mid, B = p
        with np.errstate(all="ignore"):
            inside = (y > R0) & (y < A)
            return np.where(inside, C_mid * ((A - R0) / (y - R0) - 1.0) ** (-1.0 / B), np.nan)

    def reachable(self, p):
        return (p[0], p[1])

    def limit(self, p):
        return p[1]

    def transition(self, p):
        _, _, C_mid, B = p
        with np.errstate(divide="ignore"):  # log 0 = -inf: a nearly flat sigmoid spans all of x > 0
            lo, hi = _ten_to_ninety(np.log(np.float64(C_mid)), B)
        with np.errstate(over="ignore"):
            return float(np.exp(lo)), float(np.exp(hi))

    def formula(self, p, x, y):
        return f"{y} = {p['R0']:.6g} + ({p['A']:.6g} - {p['R0']:.6g}) / (1 + ({p['C_mid']:.6g} / {x[0]})^{p['B']:.6g})"


class ExpPower(Form):
    name, params, equation = "exp_power", ("a", "b"), "y = exp(-a * x^-b)"
    # Coverage (pass@k vs k, Large Language Monkeys): log y = -a k^-b rises to 0 as k grows.

    def predict(self, p, xs, xp=np):
        a, b = p
        return xp.exp(-xp.exp(xp.log(a) - b * xp.log(xs[0])))

    def natural(self, u, b, xp=np):
        return xp.exp(u[..., 0]), xp.exp(u[..., 1])

    def internal(self, p, b):
        return np.log(np.maximum(p, 1e-12))

    def starts(self, xs, y, b):
        slope = np.array([0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2])
        neglog = -np.log(np.clip(y, 1e-300, 1 - 1e-12))
        loga = _ls_intercept(slope, np.log(xs[0]), np.log(neglog))
        return np.stack([np.exp(loga), slope], axis=1)

    def solve(self, p, y):
        a, b = p
        with np.errstate(all="ignore"):
            return np.where((y > 0) & (y < 1), (a / -np.log(y)) ** (1.0 / b), np.nan)

    def reachable(self, p):
        return (0.0, 1.0)

    def limit(self, p):
        return 1.0 if p[1] > 0 else None

    def formula(self, p, x, y):
        return f"{y} = exp(-{p['a']:.6g} * {x[0]}^-{p['b']:.6g})"


class LogLinear(Form):
    name, params, equation = "log_linear", ("a", "b"), "y = a + b * log(x)"
    space = "linear"

    def predict(self, p, xs, xp=np):
        a, b = p
        return a + b * xp.log(xs[0])

    def natural(self, u, b, xp=np):
        return u[..., 0], u[..., 1]

    def internal(self, p, b):
        return np.array(p, dtype=np.float64)

    def starts(self, xs, y, b):
        slope, intercept = np.polyfit(np.log(xs[0]), y, 1)
        return np.array([[intercept, slope], [intercept, 0.5 * slope], [intercept, 2.0 * slope]])

    def solve(self, p, y):
        a, b = p
        with np.errstate(all="ignore"):
            return np.where(b != 0, np.exp((y - a) / b), np.nan)

    def reachable(self, p):
        return (-np.inf, np.inf)

    def formula(self, p, x, y):
        return f"{y} = {p['a']:.6g} + {p['b']:.6g} * log({x[0]})"


class Chinchilla(Form):
    name, params, inputs = "chinchilla", ("E", "A", "B", "alpha", "beta"), 2
    equation = "y = E + A / N^alpha + B / D^beta   (x = [N, D])"

    def predict(self, p, xs, xp=np):
        E, A, B, alpha, beta = p
        N, D = xs
        return E + xp.exp(xp.log(A) - alpha * xp.log(N)) + xp.exp(xp.log(B) - beta * xp.log(D))

    def natural(self, u, b, xp=np):
        return (_below(u[..., 0], b[0], xp), xp.exp(u[..., 1]), xp.exp(u[..., 2]), u[..., 3], u[..., 4])

    def internal(self, p, b):
        E = _below_inv(p[:, 0], b.lower_max)
        return np.stack([E, np.log(p[:, 1]), np.log(p[:, 2]), p[:, 3], p[:, 4]], axis=1)

    def limit(self, p):
        return p[0]

    def starts(self, xs, y, b):
        # The published grid (Hoffmann et al. 2022; Besiroglu et al. 2024): 4,500 starts over
        # a = log A, b = log B in 0..25 step 5, e = log E in -1..1 step 0.5, exponents 0..2 step 0.5.
        ab = np.arange(0.0, 26.0, 5.0)
        e = np.arange(-1.0, 1.01, 0.5)
        ex = np.arange(0.0, 2.01, 0.5)
        g = _product(e, ab, ab, ex, ex)
        return np.stack([np.exp(g[:, 0]), np.exp(g[:, 1]), np.exp(g[:, 2]), g[:, 3], g[:, 4]], axis=1)

    def formula(self, p, x, y):
        N, D = x
        return f"{y} = {p['E']:.6g} + {p['A']:.6g} / {N}^{p['alpha']:.6g} + {p['B']:.6g} / {D}^{p['beta']:.6g}"


class Logistic(Form):
    """Accuracy from a loss (step 2 of a ladder): a logistic that falls from A at zero loss towards
    R0 (chance) as the loss grows. OLMo's step 2, acc = a / (1 + exp(-k (L - L0))) + b, is this form
    with R0 = a + b, A = b, x0 = L0."""

    name, params = "logistic", ("R0", "A", "k", "x0")
    equation = "y = R0 + (A - R0) / (1 + exp(k * (x - x0)))"
    space = "linear"
    # At k = 1000 the curve falls from 99% to 1% of its range within 0.01 loss units (nats or bits):
    # a step, for any loss a model reports.
    K_MAX = 1000.0
    steepness, steepness_max = "k", K_MAX
    log_x = False

    def predict(self, p, xs, xp=np):
        R0, A, k, x0 = p
        return R0 + (A - R0) / (1.0 + xp.exp(k * (xs[0] - x0)))

    def natural(self, u, b, xp=np):
        R0 = _interval(u[..., 0], b[2], b[0], xp)
        A = _interval(u[..., 1], b[1], b[3], xp)
        return R0, A, self.K_MAX * _sigmoid(u[..., 2], xp), xp.exp(u[..., 3])

    def internal(self, p, b):
        return np.stack(
            [
                _interval_inv(p[:, 0], b.floor, b.lower_max),
                _interval_inv(p[:, 1], b.upper_min, b.ceiling),
                _logit(p[:, 2] / self.K_MAX),
                np.log(np.maximum(p[:, 3], 1e-12)),
            ],
            axis=1,
        )

    def starts(self, xs, y, b):
        x = xs[0]
        R0, A = _asymptote_starts(y, b)
        x0 = np.quantile(x[x > 0], [0.0, 0.25, 0.5, 0.75, 1.0]) if np.any(x > 0) else [1.0]
        width = max(float(np.ptp(x)), 1e-6)
        return _product(R0, A, [f / width for f in (2.0, 5.0, 10.0, 20.0)], x0)

    def solve(self, p, y):
        R0, A, k, x0 = p
        with np.errstate(all="ignore"):
            inside = (y > R0) & (y < A)
            return np.where(inside, x0 + np.log((A - R0) / (y - R0) - 1.0) / k, np.nan)

    def reachable(self, p):
        return (p[0], p[1])

    def limit(self, p):
        return p[0]

    def transition(self, p):
        _, _, k, x0 = p
        return _ten_to_ninety(x0, k)

    def formula(self, p, x, y):
        return (
            f"{y} = {p['R0']:.6g} + ({p['A']:.6g} - {p['R0']:.6g}) / (1 + exp({p['k']:.6g} * ({x[0]} - {p['x0']:.6g})))"
        )


FORMS: dict[str, Form] = {
    f.name: f for f in (Power(), SaturatingPower(), SigmoidLog(), ExpPower(), LogLinear(), Chinchilla(), Logistic())
}
SINGLE_INPUT_FORMS = tuple(name for name, f in FORMS.items() if f.inputs == 1)
# Forms of accuracy or error against a resource x > 0 (what form="auto" chooses among); ``logistic``
# relates accuracy to a loss instead.
RESOURCE_FORMS = tuple(name for name in SINGLE_INPUT_FORMS if name != "logistic")
