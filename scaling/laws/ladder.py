"""A two-step ladder (Bhagia et al. 2024, the OLMo model ladder): accuracy is a thresholded, step-like
metric, task loss moves smoothly, so predict accuracy through the loss.

    step 1   task loss from size and data:   L = E + A / N^alpha + B / D^beta   (x = [N, D]; ``chinchilla``)
             or from compute:                 L = E + A C^-alpha                 (x = C; ``saturating_power``)
    step 2   accuracy from task loss:         acc = R0 + (A - R0) / (1 + exp(k (L - x0)))   (``logistic``)
    chained  acc(N, D) = step2(step1(N, D))

Each step is an ordinary ``Law``; the chain's bootstrap band pairs draw i of step 1 with draw i of step 2,
so it carries both steps' uncertainty. Step 2 defaults to the published protocol: squared residuals,
asymptotes bounded only by [0, 1] (``bounds="physical"``), any loss >= 0 (the anchor point loss 0,
accuracy 1 is allowed).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scaling.errors import LawError
from scaling.io import write_json
from scaling.laws.law import SCHEMA_VERSION, HeldOutScores, Law, check_level, law_from_dict, skill_text

STEP2_DEFAULTS = {"loss": "squared", "bounds": "physical"}


@dataclass
class Ladder(HeldOutScores):
    """Two fitted steps: ``step1`` (x -> task loss) and ``step2`` (task loss -> accuracy); the held-out
    scores are those of the chained accuracy, both steps refitted without the held-out points."""

    step1: Law
    step2: Law
    holdout: dict[str, Any] | None = None  # the chained extrapolation check, when fitted with one

    @property
    def x(self) -> list[str]:
        return self.step1.x

    def predict_loss(self, points: Any) -> np.ndarray | float:
        """Step 1: the task loss at ``points`` (a DataFrame or mapping with the x columns, or arrays)."""
        return self.step1.predict(points)

    def predict(self, points: Any) -> np.ndarray | float:
        """The chained accuracy at ``points``: step 2 at step 1's predicted loss."""
        return self.step2.predict(self.predict_loss(points))

    def predict_draws(self, points: Any) -> tuple[np.ndarray, bool]:
        """The chained accuracy under every pair of bootstrap draws (draw i of step 1, then draw i of step
        2): (draws, points), and whether ``points`` was a scalar."""
        loss_draws, scalar = self.step1.predict_draws(points)
        if self.step2.samples is None or len(self.step2.samples) == 0:
            raise LawError("step 2 has no bootstrap samples: fit the ladder with bootstrap=B > 0")
        n = min(len(loss_draws), len(self.step2.samples))
        spec = self.step2.spec
        theta = [self.step2.samples[:n, j : j + 1] for j in range(len(spec.params))]
        with np.errstate(over="ignore"):
            return spec.predict(theta, [loss_draws[:n]], np), scalar

    def interval(self, points: Any, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """Bootstrap band (lo, hi) of the chained accuracy: draw i of step 1, then draw i of step 2."""
        check_level(level)
        acc, scalar = self.predict_draws(points)
        lo, hi = np.nanpercentile(acc, [50 * (1 - level), 50 * (1 + level)], axis=0)
        return (float(lo[0]), float(hi[0])) if scalar else (lo, hi)

    def summary(self) -> str:
        lines = ["ladder: accuracy = step2(step1(" + ", ".join(self.x) + "))"]
        lines += ["  step 1 " + line for line in self.step1.summary().splitlines()]
        lines += ["  step 2 " + line for line in self.step2.summary().splitlines()]
        if self.holdout:
            h = self.holdout
            lines.append(
                f"  chained held-out error = {h['mean_abs_error']:.4g} on the {h['n_holdout']} largest points "
                f"(both steps refitted without them); naive error {h['naive_error']:.4g}, skill {skill_text(self)}"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": "ladder",
            "x": self.x,
            "loss": self.step1.y,
            "accuracy": self.step2.y,
            "holdout_error": self.holdout_error,
            "naive_error": self.naive_error,
            "skill": self.skill,
            "holdout": self.holdout,
            "step1": self.step1.to_dict(),
            "step2": self.step2.to_dict(),
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the ladder as strict JSON (both laws at full precision; atomic); ``scaling.laws.load``
        reads it back."""
        return write_json(path, self.to_dict())


def ladder_from_dict(d: dict, path: Path) -> Ladder:
    for key in ("step1", "step2"):
        if not isinstance(d.get(key), dict):
            raise LawError(f"{path}: a ladder file needs a {key!r} law")
    return Ladder(law_from_dict(d["step1"], path), law_from_dict(d["step2"], path), d.get("holdout"))


def _check_step1_data(loss_data: Any, x: list[str], loss: str) -> None:
    """Task loss must be > 0 (it is fitted in log space), and with x = [N, D] every size needs two or more
    data values, or size and data cannot be told apart."""
    from scaling.laws.fitting import as_table

    table = as_table(loss_data, x, loss)
    if np.any(table.y <= 0):
        i = int(np.flatnonzero(table.y <= 0)[0])
        raise LawError(f"step 1: task loss column {loss!r} must be > 0; found {table.y[i]:g} at row {i}")
    if len(x) == 2:
        n_col, d_col = table.xs
        for n in np.unique(n_col):
            if len(np.unique(d_col[n_col == n])) < 2:
                raise LawError(
                    f"step 1: size {x[0]} = {n:g} has one {x[1]} value only; a ladder needs two or more data "
                    f"values per size to separate the size and data terms"
                )


@dataclass(frozen=True)
class _Recipe:
    """How both steps are fitted: the columns, each step's form and ``fit`` options, the bootstrap."""

    x: list[str]
    loss: str
    acc: str
    form1: str
    form2: str
    opts1: dict = field(default_factory=dict)
    opts2: dict = field(default_factory=dict)
    bootstrap: int = 0
    seed: int = 0


def fit_ladder(
    loss_data: Any,
    acc_data: Any,
    x: str | list[str],
    loss: str,
    acc: str,
    *,
    step1_form: str | None = None,
    step2_form: str = "logistic",
    step1: dict | None = None,
    step2: dict | None = None,
    bootstrap: int = 0,
    seed: int = 0,
    holdout: int = 0,
) -> Ladder:
    """Fit step 1 on ``loss_data`` (columns ``x`` -> ``loss``) and step 2 on ``acc_data`` (``loss`` ->
    ``acc``). ``step1`` / ``step2`` are ``fit`` options of each step (e.g. ``weights``, ``starts``,
    ``bounds``); step 1's form is ``chinchilla`` for x = [N, D], ``saturating_power`` for one x.

    holdout=k > 0: refit both steps without the k largest step-1 points (by N*D, or x) and score the
    chained prediction of ``acc`` there beside the naive forecasts, with a skill interval from the refit's
    bootstrap draws; ``loss_data`` must then hold the ``acc`` column too, and step 2 is refitted without
    the held-out points' rows (``acc_data`` rows are matched by the x columns when it has them)."""
    x = [x] if isinstance(x, str) else list(x)
    recipe = _Recipe(
        x,
        loss,
        acc,
        step1_form or ("chinchilla" if len(x) == 2 else "saturating_power"),
        step2_form,
        dict(step1 or {}),
        STEP2_DEFAULTS | dict(step2 or {}),
        bootstrap,
        seed,
    )
    _check_step1_data(loss_data, x, loss)
    ladder = _fit_steps(recipe, loss_data, acc_data)
    if holdout:
        ladder.holdout = _chained_holdout(recipe, loss_data, acc_data, holdout)
    return ladder


def _fit_steps(r: _Recipe, loss_data, acc_data) -> Ladder:
    from scaling.laws.fitting import fit

    try:
        law1 = fit(loss_data, r.x, r.loss, r.form1, bootstrap=r.bootstrap, seed=r.seed, **r.opts1)
    except LawError as e:
        raise LawError(f"step 1 ({r.loss} from {', '.join(r.x)}): {e}") from None
    try:
        law2 = fit(acc_data, r.loss, r.acc, r.form2, bootstrap=r.bootstrap, seed=r.seed, **r.opts2)
    except LawError as e:
        raise LawError(f"step 2 ({r.acc} from {r.loss}): {e}") from None
    return Ladder(law1, law2)


def _chained_holdout(r: _Recipe, loss_data, acc_data, k: int) -> dict:
    """Both steps refitted without the k largest step-1 points, the chain scored on them against the
    naive forecasts of accuracy along the same size axis (``scaling.laws.extrapolation``); a held-out
    point within the saturation margin of the refit's ceiling (step 2's A) is no evidence."""
    import pandas as pd

    from scaling.laws.extrapolation import (
        Extrapolation,
        naive_forecasts,
        point_means,
        row_resampler,
        skill_draws,
        standard_error,
    )

    x, loss, acc = r.x, r.loss, r.acc
    frame = pd.DataFrame({c: np.asarray(loss_data[c], dtype=np.float64) for c in [*x, loss, acc]})
    size = np.prod(frame[x].to_numpy(), axis=1)
    cut = np.sort(np.unique(size))[-k]
    fit_rows, held_rows = frame[size < cut], frame[size >= cut]
    if acc_data is loss_data:
        acc_fit = fit_rows
    elif all(c in acc_data for c in x):
        acc_fit = acc_data[np.prod(np.stack([np.asarray(acc_data[c], float) for c in x], axis=1), axis=1) < cut]
    else:
        raise LawError(f"a ladder holdout needs the x columns {x} in the step-2 data, to leave the held-out points out")
    refit = _fit_steps(r, fit_rows, acc_fit)
    held_size = np.prod(held_rows[x].to_numpy(), axis=1)
    fit_size = np.prod(fit_rows[x].to_numpy(), axis=1)
    groups = pd.factorize(pd.Series(held_size))[0]
    size_h, y_h, rows_h = point_means(held_size, held_rows[acc].to_numpy(), groups)
    size_f, y_f, rows_f = point_means(fit_size, fit_rows[acc].to_numpy(), pd.factorize(pd.Series(fit_size))[0])
    points = held_rows.groupby(x, sort=False).first().reset_index()
    points = points.iloc[np.argsort(np.prod(points[x].to_numpy(), axis=1), kind="stable")]
    at = {c: points[c].to_numpy() for c in x}
    y_pred = np.atleast_1d(refit.predict(at))
    draws = np.zeros(0)
    if r.bootstrap:
        rng = np.random.default_rng(r.seed)
        draws = skill_draws(refit.predict_draws(at)[0], row_resampler(rows_f, rows_h, rng), size_f, size_h)
    check = Extrapolation(
        x=points[x].to_numpy().tolist(),
        y=y_h,
        y_pred=y_pred,
        naive=naive_forecasts(size_f, y_f, size_h),
        se=standard_error(rows_h),
        limit=refit.step2.params.get("A"),
        step=refit.step2.is_step,
        skill_draws=draws,
    )
    summary = check.summary()
    summary["loss"] = {"y": points[loss].tolist(), "y_pred": np.atleast_1d(refit.predict_loss(points)).tolist()}
    return summary
