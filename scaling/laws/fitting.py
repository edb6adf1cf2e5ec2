"""Fit a scaling law to a table: robust multi-start fits, bootstrap intervals, held-out checks.

Objective (summed, never averaged, so tolerances mean the same at any number of points):
    sum_i w_i * rho(r_i),  r_i = log y_i - log y_hat_i  (space "log")  or  y_i - y_hat_i ("linear")
with rho = Huber_delta (default delta = 1e-3) or r^2 / 2 (loss "squared"); w_i = the sample weights
(1 by default; e.g. inverse variances), times the bootstrap resample counts. All starts are minimised at
once by a batched BFGS in float64. Extrapolation scores: ``scaling.laws.extrapolation``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from scaling.errors import LawError
from scaling.laws.extrapolation import (
    SATURATION,
    Extrapolation,
    best_naive,
    naive_forecasts,
    paired_standard_error,
    point_means,
    row_resampler,
    skill_draws,
    standard_error,
    unit_matrix,
    unit_resampler,
)
from scaling.laws.forms import BOUNDS, FORMS, RESOURCE_FORMS, Bounds, Form
from scaling.laws.law import Law
from scaling.laws.optimize import minimize_batch

LOSSES = ("huber", "squared")
SPACES = ("log", "linear")


@dataclass(frozen=True)
class Table:
    """Validated inputs: float64 x columns, y, and the group (distinct x point) of each row."""

    x_names: list[str]
    y_name: str
    xs: list[np.ndarray]
    y: np.ndarray
    group: np.ndarray  # row -> index of its distinct x point
    size: np.ndarray  # per row: x for one input, the product of inputs otherwise (compute ~ N*D)
    w: np.ndarray  # per row: sample weight (>= 0)
    unit: np.ndarray | None = None  # per row: the unit (e.g. seed) it was measured on, for a paired holdout

    @property
    def n(self) -> int:
        return len(self.y)

    @property
    def n_distinct(self) -> int:
        return int(self.group.max()) + 1

    def subset(self, rows: np.ndarray) -> Table:
        xs = [c[rows] for c in self.xs]
        _, group = np.unique(np.stack(xs, axis=1), axis=0, return_inverse=True)
        unit = None if self.unit is None else self.unit[rows]
        return Table(self.x_names, self.y_name, xs, self.y[rows], group.ravel(), self.size[rows], self.w[rows], unit)

    def as_data(self) -> dict[str, np.ndarray]:
        return dict(zip([*self.x_names, self.y_name], [*self.xs, self.y]))

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for name, col in zip([*self.x_names, self.y_name], [*self.xs, self.y]):
            h.update(name.encode() + b"\0" + np.ascontiguousarray(col, dtype="<f8").tobytes())
        return "sha256:" + h.hexdigest()


def _column(data: Any, name: str) -> np.ndarray:
    columns = list(data.columns) if hasattr(data, "columns") else list(data.keys())
    if name not in columns:
        raise LawError(f"column {name!r} is not in the data; columns are {columns}")
    try:
        col = np.asarray(data[name], dtype=np.float64)
    except (TypeError, ValueError):
        raise LawError(f"column {name!r} is not numeric") from None
    if col.ndim != 1:
        raise LawError(f"column {name!r} must be one-dimensional, got shape {col.shape}")
    bad = np.flatnonzero(~np.isfinite(col))
    if bad.size:
        raise LawError(f"column {name!r} has {bad.size} NaN or infinite value(s), first at row(s) {bad[:5].tolist()}")
    return col


def _weights(data: Any, weights: Any, n: int) -> np.ndarray:
    """Sample weights: ones, a column name, or an array of n non-negative numbers (not all zero)."""
    if weights is None:
        return np.ones(n)
    if isinstance(weights, str):
        w, what = _column(data, weights), f"weights column {weights!r}"
    else:
        w, what = np.asarray(weights, dtype=np.float64), "weights"
        if w.shape != (n,):
            raise LawError(f"weights must have one value per row ({n}), got shape {w.shape}")
        if not np.all(np.isfinite(w)):
            raise LawError("weights must be finite")
    if np.any(w < 0):
        raise LawError(f"{what} must be >= 0; found {w[np.flatnonzero(w < 0)[0]]:g} at row {np.flatnonzero(w < 0)[0]}")
    if not np.any(w > 0):
        raise LawError(f"{what} are all zero: no point would count")
    return w


def as_table(data: Any, x: str | Sequence[str], y: str, weights: Any = None, paired: str | None = None) -> Table:
    """Validate ``data`` (DataFrame or mapping of arrays) and pull out float64 columns (and the ``paired``
    column, the unit of each row, as it is)."""
    if not (hasattr(data, "columns") or isinstance(data, Mapping)):
        raise LawError(f"data must be a pandas DataFrame or a mapping of arrays, got {type(data).__name__}")
    x_names = [x] if isinstance(x, str) else list(x)
    if not x_names:
        raise LawError("x names no column")
    xs = [_column(data, n) for n in x_names]
    yv = _column(data, y)
    lengths = {len(c) for c in [*xs, yv]}
    if len(lengths) != 1:
        raise LawError(f"columns {[*x_names, y]} have different lengths {sorted(lengths)}")
    if len(yv) == 0:
        raise LawError("the data has no rows")
    _, group = np.unique(np.stack(xs, axis=1), axis=0, return_inverse=True)
    size = np.prod(np.stack(xs, axis=1), axis=1)
    unit = None
    if paired is not None:
        if paired not in data:
            raise LawError(f"paired names column {paired!r}, which the data does not have")
        unit = np.asarray(data[paired])
    return Table(x_names, y, xs, yv, group.ravel(), size, _weights(data, weights, len(yv)), unit)


def _check(table: Table, form: Form, space: str) -> None:
    """Reject data that the form cannot be fitted to, naming the column and the problem."""
    if len(table.xs) != form.inputs:
        raise LawError(f"form {form.name!r} takes {form.inputs} x column(s), got {table.x_names}")
    for name, col in zip(table.x_names, table.xs):
        bad = np.flatnonzero(col <= 0 if form.log_x else col < 0)
        if bad.size:
            need = "> 0" if form.log_x else ">= 0"
            why = " (it uses log x)" if form.log_x else ""
            raise LawError(
                f"column {name!r} must be {need} for form {form.name!r}{why}; found {col[bad[0]]:g} at row {bad[0]}"
            )
    if np.ptp(table.y) == 0:
        raise LawError(f"column {table.y_name!r} is constant ({table.y[0]:g}): there is no trend to fit")
    if space == "log" and np.any(table.y <= 0):
        i = int(np.flatnonzero(table.y <= 0)[0])
        raise LawError(
            f"column {table.y_name!r} must be > 0 to fit {form.name!r} in log space; found {table.y[i]:g} "
            f"at row {i} (use space='linear')"
        )
    if form.name == "exp_power" and np.any(table.y > 1):
        raise LawError(f"form 'exp_power' models a probability: column {table.y_name!r} must be in (0, 1]")
    if np.count_nonzero(np.bincount(table.group, weights=table.w)) < len(form.params):
        raise LawError(
            f"form {form.name!r} has {len(form.params)} parameters but the data has only "
            f"{table.n_distinct} distinct x point(s)"
        )


def _rho(r, delta, loss):
    if loss == "squared":
        return 0.5 * r * r
    a = jnp.abs(r)
    return jnp.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


@functools.partial(jax.jit, static_argnames=("form_name", "space", "loss"))
def _minimize(u0_IxJ, w_IxN, xs, y, bounds, delta, maxiter, *, form_name, space, loss):
    form = FORMS[form_name]

    def objective(u, w, xs, y, bounds, delta):
        y_hat = form.predict(form.natural(u, bounds, jnp), xs, jnp)
        r = jnp.log(y) - jnp.log(y_hat) if space == "log" else y - y_hat
        return jnp.sum(w * _rho(r, delta, loss))

    return minimize_batch(objective, u0_IxJ, per_start=(w_IxN,), shared=(xs, y, bounds, delta), maxiter=maxiter)


def _grid(form: Form, starts: Any, table: Table, bounds: Bounds) -> np.ndarray:
    if starts is None:
        return form.starts(table.xs, table.y, bounds)
    if isinstance(starts, Mapping):
        unknown = set(starts) - set(form.params)
        missing = [p for p in form.params if p not in starts]
        if unknown or missing:
            raise LawError(
                f"starts for {form.name!r} must give values for {list(form.params)}; "
                f"missing {missing}, unknown {sorted(unknown)}"
            )
        axes = [np.atleast_1d(np.asarray(starts[p], dtype=np.float64)) for p in form.params]
        return np.stack([g.ravel() for g in np.meshgrid(*axes, indexing="ij")], axis=1)
    grid = np.asarray(starts, dtype=np.float64)
    if grid.ndim != 2 or grid.shape[1] != len(form.params):
        raise LawError(f"starts must be a mapping or an array of shape (I, {len(form.params)}), got {grid.shape}")
    return grid


def _bucket(n: int, floor: int, per_octave: int) -> int:
    """n rounded up to one of ``per_octave`` sizes per power of two (at least ``floor``)."""
    if n <= floor:
        return floor
    step = max(1, 2 ** (n.bit_length() - 1) // per_octave)
    return -(-n // step) * step


def _run(form: Form, opts: FitOptions, u0, w, table: Table, bounds: Bounds, maxiter: int, x64: bool = True):
    """``_minimize`` from every start in ``u0`` with row weights ``w`` (starts x rows).

    Starts and rows are padded to a few bucketed sizes so that a holdout refit, a bootstrap and the
    next law of a similar table reuse one compiled program: padded rows repeat row 0 with weight 0,
    padded starts repeat start 0, and both are cut from the results."""
    n_starts, n_rows = len(u0), table.n
    rows = np.r_[np.arange(n_rows), np.zeros(_bucket(n_rows, 16, 1) - n_rows, int)]
    starts = np.r_[np.arange(n_starts), np.zeros(_bucket(n_starts, 32, 4) - n_starts, int)]
    w = np.where(np.arange(len(rows)) < n_rows, np.asarray(w)[:, rows], 0.0)[starts]
    dt = jnp.float64 if x64 else jnp.float32
    with jax.enable_x64(x64):
        res = _minimize(
            jnp.asarray(np.asarray(u0)[starts], dt),
            jnp.asarray(w, dt),
            tuple(jnp.asarray(c[rows], dt) for c in table.xs),
            jnp.asarray(table.y[rows], dt),
            jnp.asarray(bounds.array(), dt),
            jnp.asarray(opts.delta, dt),
            jnp.int32(maxiter),
            form_name=form.name,
            space=opts.space,
            loss=opts.loss,
        )
        return tuple(np.asarray(a)[:n_starts] for a in res)


def _multistart(form: Form, opts: FitOptions, u0, table: Table, bounds: Bounds):
    """Screen every start for ``screen_iters`` iterations, then run the best ``refine`` to convergence.

    The screen only ranks starts, so it runs in float32 (XLA's float64 exp/log on CPU are ~10x
    slower); the refinement, and everything reported, is float64.
    """
    ones = np.broadcast_to(table.w, (len(u0), table.n))
    screened = len(u0) > opts.refine > 0
    if screened:
        _, f, _, _ = _run(form, opts, u0, ones, table, bounds, opts.screen_iters, x64=False)
        order = np.argsort(np.where(np.isfinite(f), f, np.inf), kind="stable")
        u0 = u0[order[: opts.refine]]
        ones = ones[: len(u0)]
    x, f, iters, converged = _run(form, opts, u0, ones, table, bounds, opts.maxiter)
    if not np.any(np.isfinite(f)):
        raise LawError(f"no start gave a finite objective for form {form.name!r}; check the data's scale")
    best = int(np.nanargmin(np.where(np.isfinite(f), f, np.nan)))
    info = {
        "objective": float(f[best]),
        "starts": int(len(ones) if not screened else len(order)),
        "refined": len(u0) if screened else None,
        "iterations": int(iters[best]),
        "converged": bool(converged[best]),
    }
    return x[best], info


def bootstrap_weights(table: Table, n: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """Resample counts, shape (n, rows). With repeated x points (seeds), rows are resampled
    within each point, keeping every point; otherwise points are resampled with replacement."""
    sizes = np.bincount(table.group)
    if sizes.max() == 1:
        counts = rng.multinomial(table.n, np.full(table.n, 1.0 / table.n), size=n).astype(np.float64)
        return counts * table.w, "points"
    w = np.zeros((n, table.n))
    for g, m in enumerate(sizes):
        rows = np.flatnonzero(table.group == g)
        w[:, rows] = rng.multinomial(m, np.full(m, 1.0 / m), size=n)
    return w * table.w, "within_points"


def _natural(form: Form, u: np.ndarray, bounds: Bounds) -> np.ndarray:
    return np.stack(np.broadcast_arrays(*form.natural(u, bounds.array(), np)), axis=-1)


def _r2(form: Form, theta: np.ndarray, table: Table, means: bool = False) -> float:
    """1 - SS_res / SS_tot on the rows, or (``means``) on the mean y of each distinct x point."""
    y_hat = form.predict(tuple(theta), table.xs, np)
    y = table.y
    if means:
        if table.n_distinct == table.n:
            return math.nan
        counts = np.bincount(table.group)
        y = np.bincount(table.group, weights=y) / counts
        y_hat = np.bincount(table.group, weights=np.broadcast_to(y_hat, table.y.shape)) / counts
    ss_res = float(np.sum((y - y_hat) ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else math.nan


def _positive_int(name: str, value: Any, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise LawError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class FitOptions:
    """How a form is fitted (``fit``'s keyword options; saved with the law)."""

    loss: str = "huber"
    delta: float = 1e-3
    space: str | None = None  # None: the form's own
    starts: Any = None
    ceiling: float | None = None
    bounds: str = "data"  # asymptotes bounded by the data, or only at the physical limits
    maxiter: int = 2000
    refine: int = 32
    screen_iters: int = 50

    def resolved(self, spec: Form) -> FitOptions:
        """These options checked, with the form's residual space filled in (a LawError names a bad one)."""
        space = self.space or spec.space
        if space not in SPACES:
            raise LawError(f"space must be one of {SPACES}, got {space!r}")
        if self.loss not in LOSSES:
            raise LawError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if not (isinstance(self.delta, (int, float)) and self.delta > 0 and math.isfinite(self.delta)):
            raise LawError(f"delta must be a positive number, got {self.delta!r}")
        if self.bounds not in BOUNDS:
            raise LawError(f"bounds must be one of {BOUNDS}, got {self.bounds!r}")
        _positive_int("maxiter", self.maxiter, 1)
        return dataclasses.replace(self, space=space)

    def saved(self) -> dict[str, Any]:
        """What the law file records (the start grid is the form's or the caller's, not saved)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "starts"}


def _options(kwargs: dict) -> FitOptions:
    unknown = set(kwargs) - {f.name for f in dataclasses.fields(FitOptions)}
    if unknown:
        raise LawError(
            f"unknown fit option(s) {sorted(unknown)}; known: {[f.name for f in dataclasses.fields(FitOptions)]}"
        )
    return FitOptions(**kwargs)


def fit(
    data: Any,
    x: str | Sequence[str],
    y: str,
    form: str = "auto",
    *,
    weights: Any = None,
    bootstrap: int = 0,
    seed: int = 0,
    level: float = 0.95,
    holdout: int = 0,
    saturation: float = SATURATION,
    paired: str | None = None,
    **options,
) -> Law:
    """Fit ``form`` (a name in ``FORMS`` or ``"auto"``) to columns ``x`` -> ``y`` of ``data``.

    Options (``FitOptions``): loss/delta: Huber(delta) or squared residuals, summed over points;
    space: residuals in "log" or "linear" y (default per form: log, linear for sigmoid_log, logistic
    and log_linear); starts: None (the form's grid), a mapping param -> values (their product), or an
    (I, J) array of natural parameters; every start is screened for ``screen_iters`` iterations and
    the best ``refine`` run to convergence (``refine=0`` runs all to convergence); ceiling: upper
    limit of an upper asymptote (default 1 for y in [0, 1], else none); bounds: "data" (asymptotes
    and floors bounded by the observed y) or "physical" (only by floor and ceiling).
    weights: per-row sample weights (a column name or an array; >= 0, not all zero).
    bootstrap=B > 0 refits B resamples (seeded by ``seed``) for ``law.ci`` at ``level`` and
    ``law.interval``. holdout=k > 0 refits without the k largest points and scores the refit there
    against naive forecasts (``law.holdout_error``, ``law.naive_error``, ``law.skill``; see
    ``scaling.laws.extrapolation``; ``saturation`` is the plateau margin, in y units). paired: a column
    naming the unit each row was measured on (e.g. "seed", where every x is measured on the same seeds):
    the holdout's standard error and bootstrap then follow the units, whose shared offsets cancel.
    """
    table = as_table(data, x, y, weights, paired)
    opts = _options(options)
    if not 0 < level < 1:
        raise LawError(f"level must be in (0, 1), got {level!r}")
    bootstrap = _positive_int("bootstrap", bootstrap)
    holdout = _positive_int("holdout", holdout)
    if form == "auto":
        return _fit_auto(table, opts, holdout, bootstrap=bootstrap, seed=seed, level=level, saturation=saturation)
    spec = _form(form)
    opts = opts.resolved(spec)
    _check(table, spec, opts.space)
    law = _fit_table(table, spec, opts, bootstrap, seed, level)
    if holdout:
        law.holdout = _holdout(table, spec, holdout, opts, bootstrap, seed, saturation).summary()
    return law


def _form(name: str) -> Form:
    if name not in FORMS:
        raise LawError(f"unknown form {name!r}; choose one of {sorted(FORMS)} or 'auto'")
    return FORMS[name]


def _fit_table(table: Table, spec: Form, opts: FitOptions, bootstrap: int, seed: int, level: float) -> Law:
    """The fitted law of a validated table (no holdout)."""
    t0 = time.perf_counter()
    bounds, u_best, info = _best_fit(spec, table, opts)
    with np.errstate(over="ignore"):
        theta = _natural(spec, u_best, bounds)
    if not np.all(np.isfinite(theta)):
        bad = [f"{n}={v:g}" for n, v in zip(spec.params, theta) if not np.isfinite(v)]
        raise LawError(f"fit of {spec.name!r} diverged ({', '.join(bad)}): the form does not describe this data")
    saved = opts.saved() | {"bootstrap": bootstrap, "seed": seed, "weighted": bool(np.any(table.w != 1))}
    ci, samples = {}, None
    if bootstrap:
        samples, how = _bootstrap(spec, table, bounds, u_best, opts, bootstrap, seed, info)
        lo, hi = np.percentile(samples, [50 * (1 - level), 50 * (1 + level)], axis=0)
        ci = {name: (float(a), float(b)) for name, a, b in zip(spec.params, lo, hi)}
        saved["bootstrap_resampling"] = how
    info["seconds"] = time.perf_counter() - t0
    if spec.steepness is not None:  # what ``Law.is_step`` checks the transition against
        info["x_values"] = np.unique(table.xs[0]).tolist()
    return Law(
        form=spec.name,
        x=table.x_names,
        y=table.y_name,
        params={name: float(v) for name, v in zip(spec.params, theta)},
        bounds=bounds,
        options=saved,
        r2=_r2(spec, theta, table),
        r2_means=_r2(spec, theta, table, means=True),
        n_points=table.n,
        fingerprint=table.fingerprint(),
        ci=ci,
        level=level,
        samples=samples,
        fit_info=info,
    )


def _best_fit(spec: Form, table: Table, opts: FitOptions) -> tuple[Bounds, np.ndarray, dict]:
    """Bounds from the data, and the best internal parameters over every start (with the fit's record)."""
    # Asymptote bounds come from the mean y of each distinct x: with seeds, the law is the expected
    # curve, and one lucky seed must not force the asymptote above every mean.
    means = np.bincount(table.group, weights=table.y) / np.bincount(table.group)
    bounds = Bounds.from_y(means, opts.ceiling, opts.bounds)
    u0 = spec.internal(_grid(spec, opts.starts, table, bounds), bounds)
    u0 = u0[np.all(np.isfinite(u0), axis=1)]
    if len(u0) == 0:
        raise LawError(f"no valid start for form {spec.name!r}")
    u_best, info = _multistart(spec, opts, u0, table, bounds)
    return bounds, u_best, info


def _bootstrap(spec, table, bounds, u_best, opts: FitOptions, n: int, seed: int, info: dict):
    """Parameter draws (natural, finite) of ``n`` refits of resampled rows from the best fit, and how the
    rows were resampled; counts of failed and unconverged refits go to ``info``."""
    w, how = bootstrap_weights(table, n, np.random.default_rng(seed))
    u_b, f_b, _, conv_b = _run(spec, opts, np.tile(u_best, (n, 1)), w, table, bounds, opts.maxiter)
    with np.errstate(over="ignore"):
        samples = _natural(spec, u_b, bounds)
    ok = np.isfinite(f_b) & np.all(np.isfinite(samples), axis=1)
    if not ok.any():
        raise LawError(f"every bootstrap refit of {spec.name!r} failed: the form does not describe this data")
    info["bootstrap_failed"] = int((~ok).sum())
    info["bootstrap_unconverged"] = int((ok & ~conv_b).sum())
    return samples[ok], how


@dataclass
class Holdout:
    """Extrapolation check: ``law`` fitted without the ``n_holdout`` largest points, scored on them
    (``check``: errors against the mean y over each held-out point's rows, naive forecasts, skill)."""

    law: Law
    check: Extrapolation

    @property
    def n_holdout(self) -> int:
        return len(self.check.y)

    @property
    def x(self) -> list[list[float]]:
        return self.check.x

    @property
    def y(self) -> np.ndarray:
        return self.check.y

    @property
    def y_pred(self) -> np.ndarray:
        return self.check.y_pred

    @property
    def mean_abs_error(self) -> float:
        return self.check.error

    @property
    def max_abs_error(self) -> float:
        return float(np.max(np.abs(self.y - self.y_pred)))

    @property
    def naive_error(self) -> float:
        return self.check.naive_error

    @property
    def skill(self) -> float | None:
        return self.check.skill

    def summary(self) -> dict[str, Any]:
        return self.check.summary()


def _holdout(table: Table, spec: Form, n_holdout: int, opts: FitOptions, bootstrap: int, seed: int, saturation):
    """Refit without the ``n_holdout`` largest distinct points (by size) and score the refit on them."""
    n_keep = table.n_distinct - n_holdout
    if n_keep < len(spec.params):
        raise LawError(
            f"holding out {n_holdout} of {table.n_distinct} distinct points leaves {max(n_keep, 0)}, "
            f"fewer than the {len(spec.params)} parameters of {spec.name!r}"
        )
    size = np.zeros(table.n_distinct)
    size[table.group] = table.size
    held = np.argsort(size, kind="stable")[n_keep:]
    is_held = np.isin(table.group, held)
    sub = table.subset(np.flatnonzero(~is_held))
    _check(sub, spec, opts.space)
    law = _fit_table(sub, spec, opts, bootstrap, seed, 0.95)
    held_table = table.subset(np.flatnonzero(is_held))
    size_held, y_held, held_rows = point_means(held_table.size, held_table.y, held_table.group)
    size_fit, y_fit, fit_rows = point_means(sub.size, sub.y, sub.group)
    xs_held = [[float(c[held_table.group == g][0]) for c in held_table.xs] for g in np.unique(held_table.group)]
    xs_held = [xs_held[i] for i in np.argsort([np.prod(p) for p in xs_held], kind="stable")]
    inputs = np.asarray(xs_held) if len(table.xs) > 1 else np.asarray(xs_held)[:, 0]
    y_pred = np.atleast_1d(np.asarray(law.predict(inputs), dtype=np.float64))
    Y_fit = Y_held = None
    if table.unit is not None and np.array_equal(np.unique(sub.unit), np.unique(held_table.unit)):
        Y_fit = unit_matrix(sub.size, sub.y, sub.group, sub.unit)
        Y_held = unit_matrix(held_table.size, held_table.y, held_table.group, held_table.unit)
    paired = Y_fit is not None and Y_held is not None
    rng = np.random.default_rng(seed)
    resample = unit_resampler(Y_fit, Y_held, rng) if paired else row_resampler(fit_rows, held_rows, rng)
    draws = np.zeros(0)
    if law.samples is not None and len(law.samples):
        pred_draws, _ = law.predict_draws(inputs)
        draws = skill_draws(pred_draws, resample, size_fit, size_held)
    naive = naive_forecasts(size_fit, y_fit, size_held)
    if paired:
        se = paired_standard_error(Y_fit, size_fit, Y_held, size_held, best_naive(y_held, naive))
    else:
        se = standard_error(held_rows)
    check = Extrapolation(
        x=xs_held,
        y=y_held,
        y_pred=y_pred,
        naive=naive,
        se=se,
        limit=spec.limit(tuple(law.params.values())),
        step=law.is_step,
        saturation=saturation,
        skill_draws=draws,
        paired=paired,
    )
    return Holdout(law, check)


def holdout(
    data: Any,
    x: str | Sequence[str],
    y: str,
    form: str,
    n_holdout: int = 1,
    *,
    weights: Any = None,
    bootstrap: int = 0,
    seed: int = 0,
    saturation: float = SATURATION,
    paired: str | None = None,
    **options,
) -> Holdout:
    """Fit ``form`` on all but the ``n_holdout`` largest x points (largest N*D for chinchilla) and score
    its predictions there against naive forecasts: how a law is judged (not by R^2)."""
    spec = _form(form)
    n_holdout = _positive_int("n_holdout", n_holdout, 1)
    opts = _options(options).resolved(spec)
    return _holdout(as_table(data, x, y, weights, paired), spec, n_holdout, opts, bootstrap, seed, saturation)


def _fit_auto(table: Table, opts: FitOptions, holdout: int, *, bootstrap, seed, level, saturation) -> Law:
    """Choose among the resource forms by held-out extrapolation error (the same naive forecasts for
    every form, so the lowest error is the highest skill)."""
    if len(table.xs) != 1:
        raise LawError(f"form 'auto' chooses among single-input forms; got x = {table.x_names}")
    k = holdout or max(1, round(0.2 * table.n_distinct))
    errors: dict[str, float] = {}
    reasons: dict[str, str] = {}
    for name in RESOURCE_FORMS:
        spec = FORMS[name]
        try:
            own = dataclasses.replace(opts, space=None).resolved(spec)  # every form in its own residual space
            _check(table, spec, own.space)
            errors[name] = _holdout(table, spec, k, own, 0, seed, saturation).mean_abs_error
        except LawError as e:
            reasons[name] = str(e)
    if not errors:
        raise LawError("no form could be fitted: " + "; ".join(f"{k}: {v}" for k, v in reasons.items()))
    best = FORMS[min(errors, key=errors.get)]
    own = dataclasses.replace(opts, space=None).resolved(best)
    law = _fit_table(table, best, own, bootstrap, seed, level)
    law.holdout = _holdout(table, best, k, own, bootstrap, seed, saturation).summary()
    law.options["auto"] = {"holdout": k, "errors": errors, "skipped": reasons}
    return law
