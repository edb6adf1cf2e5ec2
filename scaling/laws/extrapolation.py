"""Judging a law by extrapolation: its error on held-out larger points beside the error of two naive
forecasts on the same points, and the skill that results.

    persistence   the mean y of the largest fitted point, carried forward
    log_linear    a straight line in log(size) through the two largest fitted points
    naive error   the smaller of the two forecasts' mean absolute errors
    skill         1 - law error / naive error   (1: perfect, 0: no better than naive, < 0: worse)

Size is x for one input, the product of the inputs otherwise (N * D ~ compute for chinchilla). Skill is
None, with the reason, when the held-out points say nothing: every one lies within ``saturation`` of the
fitted asymptote (a plateau any bounded law predicts), or the naive error is below twice the held-out
points' standard error (nothing to beat). The interval comes from bootstrap draws: the refit's parameter
draws, with the held-out and fitted rows resampled within their points (seeds).

Paired points (every x measured on the same units, e.g. one model's seeds under RL volumes or thinking
budgets): a unit's offset is common to all its x, so it moves the held-out point and the naive forecasts
alike. The standard error is then that of the best naive forecast's error over units (each unit forecast
from its own fitted points), and the bootstrap resamples whole units.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

SATURATION = 0.02  # in y units: 2 points of accuracy


def point_means(size: np.ndarray, y: np.ndarray, group: np.ndarray) -> tuple[np.ndarray, np.ndarray, list]:
    """Per distinct point, sorted by size: its size, its mean y, and its rows' y values."""
    order = np.unique(group)
    sizes = np.array([size[group == g][0] for g in order])
    rows = [y[group == g] for g in order]
    by_size = np.argsort(sizes, kind="stable")
    return sizes[by_size], np.array([r.mean() for r in rows])[by_size], [rows[i] for i in by_size]


def naive_forecasts(size_fit: np.ndarray, y_fit: np.ndarray, size_held: np.ndarray) -> dict[str, np.ndarray]:
    """Forecasts at ``size_held`` from the fitted points' (size, mean y), sorted by size."""
    out = {"persistence": np.full(len(size_held), y_fit[-1])}
    if len(size_fit) >= 2 and size_fit[-1] > size_fit[-2]:
        slope = (y_fit[-1] - y_fit[-2]) / (np.log(size_fit[-1]) - np.log(size_fit[-2]))
        out["log_linear"] = y_fit[-1] + slope * (np.log(size_held) - np.log(size_fit[-1]))
    return out


def unit_matrix(size: np.ndarray, y: np.ndarray, group: np.ndarray, unit: np.ndarray) -> np.ndarray | None:
    """(U, P) y of each unit at each distinct point (sorted by size, as ``point_means``), or None unless
    every point has exactly one row per unit, for the same units."""
    order = np.unique(group)
    by_size = np.argsort([size[group == g][0] for g in order], kind="stable")
    units = np.unique(unit)
    Y_UxP = np.full((len(units), len(order)), np.nan)
    for p, g in enumerate(order[by_size]):
        mine = group == g
        if len(np.unique(unit[mine])) != mine.sum() or mine.sum() != len(units):
            return None
        Y_UxP[np.searchsorted(units, unit[mine]), p] = y[mine]
    return Y_UxP if len(units) > 1 else None


def best_naive(y_held: np.ndarray, naive: dict[str, np.ndarray]) -> str:
    """The name of the naive forecast with the smallest mean absolute error at the held-out points."""
    return min(naive, key=lambda name: np.mean(np.abs(y_held - naive[name])))


def paired_standard_error(
    Y_fit_UxP: np.ndarray, size_fit: np.ndarray, Y_held_UxH: np.ndarray, size_held: np.ndarray, forecast: str
) -> float:
    """Standard error over units of the naive ``forecast``'s mean error on the held-out points, each unit
    forecast from its own fitted points."""
    err_U = np.array(
        [np.mean(h - naive_forecasts(size_fit, f, size_held)[forecast]) for f, h in zip(Y_fit_UxP, Y_held_UxH)]
    )
    return float(err_U.std(ddof=1) / np.sqrt(len(err_U)))


def standard_error(rows: list[np.ndarray]) -> float:
    """Standard error of the mean over held-out points of their per-point means (0 without repeats)."""
    var = [r.var(ddof=1) / len(r) if len(r) > 1 else 0.0 for r in rows]
    return float(np.sqrt(np.sum(var)) / len(rows))


@dataclass
class Extrapolation:
    """The held-out check of one law (``fit(..., holdout=k)``)."""

    x: list[list[float]]  # held-out points, one list of inputs each, smallest first
    y: np.ndarray  # observed mean y per held-out point
    y_pred: np.ndarray  # the refit law's prediction there
    naive: dict[str, np.ndarray]  # forecast name -> predictions there
    se: float  # standard error of the held-out mean (of the naive error over units, when paired)
    limit: float | None  # the refit law's asymptote
    step: bool  # the refit's steepness reached its cap
    saturation: float = SATURATION
    skill_draws: np.ndarray = field(default_factory=lambda: np.zeros(0))
    paired: bool = False  # se and skill_draws follow units measured at every x (module docstring)

    @property
    def error(self) -> float:
        return float(np.mean(np.abs(self.y - self.y_pred)))

    @property
    def naive_errors(self) -> dict[str, float]:
        return {k: float(np.mean(np.abs(self.y - v))) for k, v in self.naive.items()}

    @property
    def naive_error(self) -> float:
        return min(self.naive_errors.values())

    @property
    def saturated(self) -> np.ndarray:
        """Per held-out point: within ``saturation`` of the fitted asymptote (no evidence)."""
        if self.limit is None or not np.isfinite(self.limit):
            return np.zeros(len(self.y), bool)
        return np.abs(self.y - self.limit) <= self.saturation

    @property
    def skill_reason(self) -> str | None:
        """Why skill is not defined, None when it is."""
        if self.saturated.all():
            return (
                f"held-out point{'s' if len(self.y) > 1 else ''} within {self.saturation:g} of the fitted "
                f"asymptote {self.limit:.4g}: a plateau is no evidence"
            )
        if self.naive_error < 2 * self.se:
            return (
                f"naive error {self.naive_error:.4g} is below twice the {'paired ' if self.paired else ''}held-out "
                f"standard error {self.se:.4g}: "
                "nothing to beat"
            )
        if self.naive_error == 0:
            return "the naive forecasts are exact: nothing to beat"
        return None

    @property
    def skill(self) -> float | None:
        return None if self.skill_reason else 1.0 - self.error / self.naive_error

    def skill_interval(self, level: float = 0.95) -> tuple[float, float] | None:
        draws = self.skill_draws[np.isfinite(self.skill_draws)]
        if self.skill is None or draws.size < 2:
            return None
        lo, hi = np.percentile(draws, [50 * (1 - level), 50 * (1 + level)])
        return float(lo), float(hi)

    def summary(self) -> dict[str, Any]:
        abs_error = np.abs(self.y - self.y_pred)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = float(np.mean(abs_error / np.abs(self.y)))
        return {
            "n_holdout": len(self.y),
            "mean_abs_error": self.error,
            "max_abs_error": float(np.max(abs_error)),
            "mean_rel_error": rel,
            "naive_errors": self.naive_errors,
            "naive_error": self.naive_error,
            "skill": self.skill,
            "skill_interval": self.skill_interval(),
            "skill_reason": self.skill_reason,
            "standard_error": self.se,
            "paired": self.paired,
            "asymptote": self.limit,
            "step": self.step,
            "saturation": self.saturation,
            "points": [
                {"x": xv, "y": float(yo), "y_pred": float(yp), "saturated": bool(s)}
                for xv, yo, yp, s in zip(self.x, self.y, self.y_pred, self.saturated)
            ],
        }


def skill_draws(
    pred_draws: np.ndarray,
    resample,
    size_fit: np.ndarray,
    size_held: np.ndarray,
) -> np.ndarray:
    """Skill under each of the refit's bootstrap draws (rows of ``pred_draws``, predictions at the held-out
    points), with the data resampled by ``resample()`` -> (fitted points' mean y, held-out points' mean y)."""
    out = np.empty(len(pred_draws))
    for i, pred in enumerate(pred_draws):
        y_fit, y_held = resample()
        naive = naive_forecasts(size_fit, y_fit, size_held)
        naive_error = min(np.mean(np.abs(y_held - v)) for v in naive.values())
        out[i] = 1.0 - np.mean(np.abs(y_held - pred)) / naive_error if naive_error > 0 else np.nan
    return out


def row_resampler(fit_rows: list[np.ndarray], held_rows: list[np.ndarray], rng: np.random.Generator):
    """Rows resampled within their points, independently per point."""

    def means(rows):
        return np.array([rng.choice(r, len(r)).mean() for r in rows])

    return lambda: (means(fit_rows), means(held_rows))


def unit_resampler(Y_fit_UxP: np.ndarray, Y_held_UxH: np.ndarray, rng: np.random.Generator):
    """Whole units resampled: every point of a drawn unit comes with it."""

    def draw():
        idx = rng.choice(len(Y_fit_UxP), len(Y_fit_UxP))
        return Y_fit_UxP[idx].mean(axis=0), Y_held_UxH[idx].mean(axis=0)

    return draw
