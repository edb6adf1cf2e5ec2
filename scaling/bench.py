"""``scaling bench``: speed figures measured in one run, as ratios against references timed alongside."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import optimize

CHINCHILLA_CSV = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "chinchilla_fig4_points.csv"


def chinchilla_points(path: str | Path = CHINCHILLA_CSV):
    """The 240 points of the replication protocol: N, D = C / (6N), loss; 5 highest losses dropped."""
    from scaling.tables import read_table

    df = read_table(path)
    df = df.sort_values("loss", kind="stable").iloc[:-5].copy()
    df["N"] = df["Model Size"]
    df["D"] = df["Training FLOP"] / (6.0 * df["N"])
    return df


def _timed(fn: Callable[[], object]) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def _chinchilla_objective(theta, logN, logD, logL, delta=1e-3):
    """Summed Huber loss of the published protocol and its gradient, in numpy (for scipy)."""
    a, b, e, alpha, beta = theta
    terms = np.stack([a - alpha * logN, b - beta * logD, np.full_like(logN, e)])
    m = terms.max(axis=0)
    w = np.exp(terms - m)
    s = w.sum(axis=0)
    r = logL - (m + np.log(s))
    absr = np.abs(r)
    f = np.sum(np.where(absr <= delta, 0.5 * r * r, delta * (absr - 0.5 * delta)))
    dr = -np.clip(r, -delta, delta)  # d rho / d lse
    w = w / s
    grad = np.array(
        [
            np.sum(dr * w[0]),
            np.sum(dr * w[1]),
            np.sum(dr * w[2]),
            np.sum(dr * w[0] * -logN),
            np.sum(dr * w[1] * -logD),
        ]
    )
    return f, grad


def bench_fit(n_scipy_starts: int = 24) -> dict[str, float]:
    """Chinchilla grid (4,500 starts, 240 points) against a scipy BFGS loop with the exact
    gradient on a sample of the same starts; a 1,000-resample bootstrap of a 20-point law."""
    from scaling import laws
    from scaling.laws.forms import FORMS

    df = chinchilla_points()
    first_s, _ = _timed(lambda: laws.fit(df, ["N", "D"], "loss", "chinchilla"))
    grid_s, law = _timed(lambda: laws.fit(df, ["N", "D"], "loss", "chinchilla"))
    n_starts = law.fit_info["starts"]

    grid = FORMS["chinchilla"].starts(None, None, None)
    theta0 = np.column_stack([np.log(grid[:, 0]), np.log(grid[:, 1]), np.log(grid[:, 2]), grid[:, 3], grid[:, 4]])
    rng = np.random.default_rng(0)
    sample = theta0[rng.choice(len(theta0), n_scipy_starts, replace=False)]
    logs = np.log(df["N"].to_numpy()), np.log(df["D"].to_numpy()), np.log(df["loss"].to_numpy())

    def scipy_loop():
        best = np.inf
        for th in sample:
            # BFGS, as in the replication; L-BFGS-B's relative-f stop (denominator max(|f|, 1))
            # halts at f ~ 1e-3 long before the optimum: the known pitfall.
            res = optimize.minimize(
                _chinchilla_objective, th, args=logs, jac=True, method="BFGS", options={"gtol": 1e-12, "maxiter": 5000}
            )
            best = min(best, res.fun)
        return best

    scipy_s, scipy_best = _timed(scipy_loop)
    scipy_per_start = scipy_s / n_scipy_starts

    rng = np.random.default_rng(1)
    x = np.logspace(3, 7, 20)
    y = (0.05 + 3.0 * x**-0.3) * np.exp(rng.normal(0.0, 0.02, x.size))
    data = {"x": x, "y": y}
    laws.fit(data, "x", "y", "saturating_power", bootstrap=1000)  # compile
    boot_s, _ = _timed(lambda: laws.fit(data, "x", "y", "saturating_power", bootstrap=1000))
    return {
        "chinchilla_grid_s": grid_s,
        "chinchilla_grid_first_call_s": first_s,
        "chinchilla_starts": n_starts,
        "chinchilla_objective": law.fit_info["objective"],
        "per_start_s": grid_s / n_starts,
        "scipy_loop_s_per_start": scipy_per_start,
        "scipy_starts_timed": n_scipy_starts,
        "scipy_best_objective": scipy_best,
        "speedup_per_start": scipy_per_start / (grid_s / n_starts),
        "bootstrap_1000_s": boot_s,
    }


SECTIONS: dict[str, Callable[[], dict]] = {"fit": bench_fit}


def run_bench(sections: list[str] | None = None) -> dict[str, dict]:
    """Run the named sections (all by default) and return {section: figures}."""
    from scaling.errors import ScalingError

    names = sections or list(SECTIONS)
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        raise ScalingError(f"unknown bench section(s) {unknown}; known: {sorted(SECTIONS)}")
    return {name: SECTIONS[name]() for name in names}
