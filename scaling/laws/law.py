"""The fitted ``Law``: predict, solve, intervals, and a JSON file that reloads bit-identically."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scaling.errors import LawError, ScalingError
from scaling.io import from_strict, read_json, restore_floats, write_json
from scaling.laws.forms import FORMS, Bounds, Form

SCHEMA_VERSION = 1
HOLDOUT_NUMBERS = {"mean_abs_error", "max_abs_error", "mean_rel_error", "y", "y_pred", "naive_error", "standard_error"}


def as_inputs(x: Any, names: list[str], n_inputs: int) -> tuple[list[np.ndarray], bool]:
    """Inputs as a list of float64 arrays, and whether the caller passed a scalar.

    Single-input laws take a scalar or an array. Multi-input laws take a mapping or DataFrame
    with the law's column names, a sequence of per-input arrays, or an (n, k) array.
    """
    if hasattr(x, "columns") or isinstance(x, Mapping):
        missing = [n for n in names if n not in x]
        if missing:
            raise LawError(f"inputs lack column(s) {missing}; this law needs {names}")
        cols = [np.asarray(x[n], dtype=np.float64) for n in names]
    elif n_inputs == 1:
        cols = [np.asarray(x, dtype=np.float64)]
    else:
        arr = np.asarray(x, dtype=np.float64)
        if arr.ndim == 2 and arr.shape[-1] == n_inputs:
            cols = [arr[:, i] for i in range(n_inputs)]
        elif arr.ndim >= 1 and arr.shape[0] == n_inputs:
            cols = [arr[i] for i in range(n_inputs)]
        else:
            raise LawError(f"expected {n_inputs} inputs {names}, got an array of shape {arr.shape}")
    scalar = all(c.ndim == 0 for c in cols)
    cols = np.broadcast_arrays(*[np.atleast_1d(c) for c in cols])
    return list(cols), scalar


class HeldOutScores:
    """The extrapolation check of a fitted law or ladder, read from its ``holdout`` record (None when it
    was fitted without one; ``scaling.laws.extrapolation`` computes it)."""

    holdout: dict[str, Any] | None

    @property
    def holdout_error(self) -> float:
        """Mean absolute error on the held-out (largest) points, in y units; nan if not run."""
        return math.nan if not self.holdout else from_strict(self.holdout.get("mean_abs_error"))

    @property
    def naive_error(self) -> float:
        """The better naive forecast's error on the held-out points (persistence or a line in log x)."""
        return math.nan if not self.holdout else from_strict(self.holdout.get("naive_error"))

    @property
    def skill(self) -> float | None:
        """1 - holdout_error / naive_error; None when the held-out points cannot judge the law (the
        reason is ``holdout["skill_reason"]``) or there was no holdout."""
        value = None if not self.holdout else self.holdout.get("skill")
        return None if value is None else float(value)


@dataclass
class Law(HeldOutScores):
    """A fitted scaling law.

    ``params`` are keyed by the form's parameter names; ``ci[name] = (lo, hi)`` holds the
    bootstrap percentile interval at ``level``; ``samples`` the bootstrap parameter draws
    (rows in ``params`` order). ``r2`` is measured in the units of y on the fitted points (``r2_means`` on the mean y of
    each distinct x, when x repeats: seeds add noise no law can explain);
    ``holdout`` (when requested) records the extrapolation check.
    """

    form: str
    x: list[str]
    y: str
    params: dict[str, float]
    bounds: Bounds
    options: dict[str, Any] = field(default_factory=dict)
    r2: float = math.nan
    r2_means: float = math.nan  # R^2 against the mean y of each distinct x (with seeds); nan without repeats
    n_points: int = 0
    fingerprint: str = ""
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    level: float = 0.95
    samples: np.ndarray | None = None
    holdout: dict[str, Any] | None = None
    fit_info: dict[str, Any] = field(default_factory=dict)

    @property
    def spec(self) -> Form:
        return FORMS[self.form]

    @property
    def is_step(self) -> bool:
        """A step between two x, not a law: the steepness reached its cap, or no fitted x lies inside the
        transition (where the sigmoid moves from 10% to 90% of its range), so the data cannot tell its shape."""
        spec = self.spec
        if spec.steepness is None:
            return False
        if self.params[spec.steepness] >= 0.99 * spec.steepness_max:
            return True
        xs = self.fit_info.get("x_values")
        if not xs:
            return False
        lo, hi = spec.transition(self._theta())
        return not any(lo < v < hi for v in xs)

    def _theta(self) -> tuple[float, ...]:
        return tuple(self.params[name] for name in self.spec.params)

    def predict(self, x: Any) -> np.ndarray | float:
        """y at ``x`` (see ``as_inputs`` for accepted shapes); a float for a scalar input."""
        cols, scalar = as_inputs(x, self.x, self.spec.inputs)
        with np.errstate(over="ignore", divide="ignore"):  # far from a sigmoid's midpoint: its asymptote
            y = self.spec.predict(self._theta(), cols, np)
        return float(y[0]) if scalar else y

    def residuals(self, data: Any) -> np.ndarray:
        """Observed minus predicted y on a table holding this law's x and y columns."""
        cols, _ = as_inputs(data, self.x, self.spec.inputs)
        return np.asarray(data[self.y], dtype=np.float64) - self.spec.predict(self._theta(), cols, np)

    def predict_draws(self, x: Any) -> tuple[np.ndarray, bool]:
        """y at ``x`` under every bootstrap draw: (draws, points) and whether x was a scalar."""
        if self.samples is None or len(self.samples) == 0:
            raise LawError(f"law for {self.y!r} has no bootstrap samples: fit it with bootstrap=B > 0")
        cols, scalar = as_inputs(x, self.x, self.spec.inputs)
        theta = [self.samples[:, i : i + 1] for i in range(self.samples.shape[1])]
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):  # a degenerate draw gives nan,
            return self.spec.predict(theta, cols, np), scalar  # which the bands (nanpercentile) leave out

    def interval(self, x: Any, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """Bootstrap percentile band (lo, hi) of the law's curve at ``x``."""
        check_level(level)
        pred, scalar = self.predict_draws(x)
        q = 50 * (1 - level), 50 * (1 + level)
        lo, hi = np.nanpercentile(pred, q, axis=0)
        return (float(lo[0]), float(hi[0])) if scalar else (lo, hi)

    def solve(self, y: Any) -> np.ndarray | float:
        """The x at which the law reaches ``y`` (single-input forms only).

        Raises LawError when any y lies beyond the law's reachable range (e.g. at or below the
        floor E of a saturating power law, or above a sigmoid's asymptote A).
        """
        if self.spec.inputs != 1:
            raise LawError(f"solve needs a single-input law; {self.form!r} takes {self.x}")
        y_arr = np.asarray(y, dtype=np.float64)
        x = np.asarray(self.spec.solve(self._theta(), y_arr))
        if np.any(~np.isfinite(x)):
            lo, hi = self.spec.reachable(self._theta())
            bad = y_arr[~np.isfinite(x)] if y_arr.ndim else y_arr
            raise LawError(
                f"{self.y} = {np.ravel(bad)[0]:.6g} is out of reach of {self.formula()}: "
                f"this law only takes values in ({lo:.6g}, {hi:.6g})"
            )
        return float(x) if x.ndim == 0 else x

    def solve_interval(self, y: float, level: float = 0.95) -> tuple[float, float]:
        """Bootstrap percentile interval of ``solve(y)``; inf where a draw never reaches y."""
        check_level(level)
        if self.samples is None or len(self.samples) == 0:
            raise LawError(f"law for {self.y!r} has no bootstrap samples: fit it with bootstrap=B > 0")
        theta = [self.samples[:, i] for i in range(self.samples.shape[1])]
        xs = np.asarray(self.spec.solve(theta, np.float64(y)))
        xs = np.where(np.isfinite(xs), xs, np.inf)
        lo, hi = np.percentile(xs, [50 * (1 - level), 50 * (1 + level)])
        return float(lo), float(hi)

    def formula(self) -> str:
        """Human-readable law with its fitted values."""
        return self.spec.formula(self.params, self.x, self.y)

    def summary(self) -> str:
        """Formula, parameters with intervals, R^2 and held-out error, as printed by the CLI."""
        lines = [f"{self.form}: {self.formula()}"]
        for name, value in self.params.items():
            ci = self.ci.get(name)
            band = f"  [{ci[0]:.6g}, {ci[1]:.6g}] ({self.level:.0%} CI)" if ci else ""
            lines.append(f"  {name:>6} = {value:.6g}{band}")
        means = "" if math.isnan(self.r2_means) else f" (R^2 of the means over repeated x: {self.r2_means:.4f})"
        lines.append(f"  R^2 = {self.r2:.4f} on {self.n_points} points{means}")
        if self.holdout:
            h = self.holdout
            lines.append(
                f"  held-out error = {self.holdout_error:.4g} (mean |y - y_hat| on the {h['n_holdout']} largest "
                f"points, fitted without them)"
            )
            if "naive_errors" in h:
                naive = ", ".join(f"{k} {from_strict(v):.4g}" for k, v in h["naive_errors"].items())
                lines.append(f"  naive forecasts there: {naive}")
                lines.append(f"  skill = {skill_text(self)}")
        if self.is_step:
            lines.append(f"  step: {self.spec.steepness} reached its cap {self.spec.steepness_max:g}, not a law")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "form": self.form,
            "equation": self.spec.equation,
            "x": list(self.x),
            "y": self.y,
            "params": {k: float(v) for k, v in self.params.items()},
            "formula": self.formula(),
            "ci": {k: [float(lo), float(hi)] for k, (lo, hi) in self.ci.items()},
            "level": self.level,
            "r2": self.r2,
            "r2_means": self.r2_means,
            "holdout_error": self.holdout_error,
            "naive_error": self.naive_error,
            "skill": self.skill,
            "is_step": self.is_step,
            "holdout": self.holdout,
            "n_points": self.n_points,
            "data_fingerprint": self.fingerprint,
            "bounds": {
                "y_min": self.bounds.y_min,
                "y_max": self.bounds.y_max,
                "floor": self.bounds.floor,
                "ceiling": self.bounds.ceiling,
                "mode": self.bounds.mode,
            },
            "options": self.options,
            "fit_info": self.fit_info,
            "bootstrap_samples": None if self.samples is None else self.samples.tolist(),
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the law as strict JSON (full float precision; atomic) and return the path."""
        # json writes floats with repr(), which round-trips float64 exactly; nan is written as null and
        # an infinite bound as "inf" / "-inf" (``scaling.io.to_strict``), restored by ``load``.
        return write_json(path, self.to_dict())


def skill_text(law: Law | Any) -> str:
    """'0.83 [0.61, 0.95]', 'n/a (reason)' or '-0.4 (does not predict)' for reports (a Law or a Ladder)."""
    h = law.holdout or {}
    if law.skill is None:
        return f"n/a ({h.get('skill_reason') or 'no holdout'})"
    band = h.get("skill_interval")
    text = f"{law.skill:.3g}" + (f" [{band[0]:.3g}, {band[1]:.3g}]" if band else "")
    return text + (" (does not predict)" if law.skill <= 0 else "")


def check_level(level: float) -> None:
    if not 0 < level < 1:
        raise LawError(f"level must be in (0, 1), got {level}")


def read_saved(path: str | os.PathLike) -> dict:
    """The dict of a saved law or ladder file, checked for a supported schema (``scaling.laws.load``
    turns it into a Law or a Ladder). Files written before JSON was strict (NaN / Infinity) read too."""
    path = Path(path)
    try:
        d = read_json(path, "law file")
    except ScalingError as e:
        raise LawError(str(e)) from None
    if not isinstance(d, dict) or "schema_version" not in d:
        raise LawError(f"{path}: not a law file (no schema_version)")
    if d["schema_version"] != SCHEMA_VERSION:
        raise LawError(f"{path}: schema_version {d['schema_version']} is not supported (expected {SCHEMA_VERSION})")
    return d


def law_from_dict(d: dict, path: Path) -> Law:
    """A Law from its saved dict (``Law.to_dict``); ``path`` names the file in errors."""
    try:
        form = FORMS[d["form"]]
    except KeyError:
        raise LawError(f"{path}: unknown form {d.get('form')!r}; known forms: {sorted(FORMS)}") from None
    missing = [p for p in form.params if p not in d.get("params", {})]
    if missing:
        raise LawError(f"{path}: params lack {missing} for form {form.name!r}")
    samples = d.get("bootstrap_samples")
    holdout = d.get("holdout")
    return Law(
        form=d["form"],
        x=list(d["x"]),
        y=d["y"],
        params={k: float(d["params"][k]) for k in form.params},
        bounds=Bounds(**{k: v if k == "mode" else from_strict(v) for k, v in d["bounds"].items()}),
        options=d.get("options", {}),
        r2=from_strict(d.get("r2")),
        r2_means=from_strict(d.get("r2_means")),
        n_points=int(d.get("n_points", 0)),
        fingerprint=d.get("data_fingerprint", ""),
        ci={k: (float(v[0]), float(v[1])) for k, v in d.get("ci", {}).items()},
        level=float(d.get("level", 0.95)),
        samples=None if samples is None else np.asarray(samples, dtype=np.float64).reshape(-1, len(form.params)),
        holdout=None if holdout is None else restore_floats(holdout, HOLDOUT_NUMBERS),
        fit_info=d.get("fit_info", {}),
    )
