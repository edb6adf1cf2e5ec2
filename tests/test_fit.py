import numpy as np
import pandas as pd
import pytest

import scaling.laws as sl
from scaling.laws.fitting import as_table, bootstrap_weights

# True parameters for each form, the x grid, and the noise model used to draw data.
CASES = {
    "power": ({"A": 5.0, "alpha": 0.3}, np.logspace(2, 6, 25)),
    "saturating_power": ({"E": 0.1, "A": 5.0, "alpha": 0.4}, np.logspace(2, 7, 25)),
    "sigmoid_log": ({"R0": 0.02, "A": 0.85, "C_mid": 3e4, "B": 1.2}, np.logspace(2, 7, 25)),
    "exp_power": ({"a": 3.0, "b": 0.5}, np.logspace(0, 4, 25)),
    "log_linear": ({"a": 0.1, "b": 0.05}, np.logspace(1, 5, 25)),
}


def draw(form, truth, x, seed, noise=0.01):
    spec = sl.FORMS[form]
    y = spec.predict(tuple(truth[p] for p in spec.params), [x])
    rng = np.random.default_rng(seed)
    if spec.space == "log":
        return y * np.exp(rng.normal(0.0, noise, x.size))
    return y + rng.normal(0.0, noise, x.size)


@pytest.mark.parametrize("form", sorted(CASES))
def test_parameter_recovery(form):
    truth, x = CASES[form]
    y = draw(form, truth, x, seed=1, noise=0.005)
    law = sl.fit({"x": x, "y": y}, "x", "y", form)
    assert law.form == form and set(law.params) == set(truth)
    for name, value in truth.items():
        assert law.params[name] == pytest.approx(value, rel=0.06, abs=0.005), (name, law.params)
    assert law.r2 > 0.99
    assert law.fit_info["converged"]


def test_chinchilla_form_recovers_synthetic_parameters():
    truth = {"E": 1.7, "A": 400.0, "B": 1500.0, "alpha": 0.34, "beta": 0.3}
    rng = np.random.default_rng(0)
    N = 10 ** rng.uniform(7, 10, 120)
    D = 10 ** rng.uniform(9, 12, 120)
    L = sl.FORMS["chinchilla"].predict(tuple(truth.values()), [N, D]) * np.exp(rng.normal(0, 0.003, N.size))
    law = sl.fit(pd.DataFrame({"N": N, "D": D, "L": L}), ["N", "D"], "L", "chinchilla")
    assert law.params["E"] == pytest.approx(1.7, rel=0.02)
    assert law.params["alpha"] == pytest.approx(0.34, abs=0.02)
    assert law.params["beta"] == pytest.approx(0.30, abs=0.02)


@pytest.mark.parametrize(
    ("form", "truth", "loss"),
    [
        ("power", {"A": 5.0, "alpha": 0.3}, "squared"),
        ("saturating_power", {"E": 0.1, "A": 5.0, "alpha": 0.4}, "squared"),
    ],
)
def test_bootstrap_intervals_cover_truth_at_about_nominal_rate(form, truth, loss):
    x = np.logspace(2, 6, 40)
    draws, level = 200, 0.9
    hits = dict.fromkeys(truth, 0)
    for r in range(draws):
        y = draw(form, truth, x, seed=1000 + r, noise=0.05)
        law = sl.fit({"x": x, "y": y}, "x", "y", form, loss=loss, bootstrap=200, seed=r, level=level)
        for name, value in truth.items():
            lo, hi = law.ci[name]
            hits[name] += lo <= value <= hi
    coverage = {k: v / draws for k, v in hits.items()}
    # 200 draws: the standard error of a 0.9 coverage estimate is ~0.02.
    assert all(0.8 <= c <= 0.97 for c in coverage.values()), coverage


def test_bootstrap_is_reproducible_and_seed_dependent():
    truth, x = CASES["saturating_power"]
    data = {"x": x, "y": draw("saturating_power", truth, x, seed=3, noise=0.03)}
    a = sl.fit(data, "x", "y", "saturating_power", bootstrap=100, seed=7)
    b = sl.fit(data, "x", "y", "saturating_power", bootstrap=100, seed=7)
    c = sl.fit(data, "x", "y", "saturating_power", bootstrap=100, seed=8)
    np.testing.assert_array_equal(a.samples, b.samples)
    assert a.ci == b.ci and a.ci != c.ci
    lo, hi = a.interval(x)
    assert np.all(lo <= hi) and np.all((lo <= a.predict(x) + 1e-12) & (a.predict(x) <= hi + 1e-12))


def test_seeds_are_resampled_within_points():
    x = np.repeat(np.logspace(2, 5, 6), 3)
    y = draw("power", {"A": 5.0, "alpha": 0.3}, x, seed=0, noise=0.05)
    table = as_table({"x": x, "y": y}, "x", "y")
    w, how = bootstrap_weights(table, 50, np.random.default_rng(0))
    assert how == "within_points"
    per_point = np.stack([w[:, table.group == g].sum(1) for g in range(table.n_distinct)], axis=1)
    np.testing.assert_array_equal(per_point, 3.0)  # every point keeps its 3 rows' worth of weight
    law = sl.fit({"x": x, "y": y}, "x", "y", "power", bootstrap=50)
    assert law.options["bootstrap_resampling"] == "within_points"

    single = as_table({"x": x[::3], "y": y[::3]}, "x", "y")
    w, how = bootstrap_weights(single, 50, np.random.default_rng(0))
    assert how == "points" and np.all(w.sum(1) == single.n) and np.any(w == 0)


def test_holdout_scores_the_largest_points():
    truth, x = CASES["saturating_power"]
    y = draw("saturating_power", truth, x, seed=5, noise=0.01)
    h = sl.holdout({"x": x, "y": y}, "x", "y", "saturating_power", n_holdout=5)
    assert [p[0] for p in h.x] == pytest.approx(list(x[-5:]))
    assert h.law.n_points == 20
    assert h.mean_abs_error < 0.01
    # A misspecified form extrapolates worse, which is what the check is for.
    bad = sl.holdout({"x": x, "y": y}, "x", "y", "log_linear", n_holdout=5)
    assert bad.mean_abs_error > 5 * h.mean_abs_error


def test_holdout_of_chinchilla_orders_by_compute():
    rng = np.random.default_rng(1)
    N, D = 10 ** rng.uniform(7, 9, 40), 10 ** rng.uniform(9, 11, 40)
    L = 1.7 + 400 / N**0.34 + 1500 / D**0.3
    h = sl.holdout({"N": N, "D": D, "L": L}, ["N", "D"], "L", "chinchilla", n_holdout=4)
    held = {tuple(p) for p in h.x}
    assert held == {(n, d) for n, d in zip(N, D) if n * d >= np.sort(N * D)[-4]}
    assert h.max_abs_error < 1e-3


def test_auto_picks_the_generating_form():
    truth, x = CASES["saturating_power"]
    y = draw("saturating_power", truth, x, seed=2, noise=0.01)
    law = sl.fit({"x": x, "y": y}, "x", "y", "auto", holdout=5)
    assert law.form == "saturating_power"
    errors = law.options["auto"]["errors"]
    assert errors["saturating_power"] == min(errors.values())
    assert law.holdout["n_holdout"] == 5 and law.holdout_error == pytest.approx(errors["saturating_power"])


def test_floor_stays_below_the_best_observation():
    # Data that flatten at 0.2 with noise: the floor must not be above min(y).
    x = np.logspace(1, 5, 30)
    y = draw("saturating_power", {"E": 0.2, "A": 2.0, "alpha": 1.5}, x, seed=4, noise=0.05)
    law = sl.fit({"x": x, "y": y}, "x", "y", "saturating_power")
    assert 0 < law.params["E"] <= y.min()


def test_sigmoid_asymptote_is_physical_for_accuracies():
    x = np.logspace(2, 6, 20)
    y = np.clip(draw("sigmoid_log", {"R0": 0.0, "A": 0.6, "C_mid": 1e4, "B": 2.0}, x, seed=1, noise=0.02), 0, 1)
    law = sl.fit({"x": x, "y": y}, "x", "y", "sigmoid_log")
    assert y.max() <= law.params["A"] <= 1.0
    assert 0.0 <= law.params["R0"] <= y.min()


def test_squared_loss_and_linear_space_options():
    truth, x = CASES["power"]
    y = draw("power", truth, x, seed=0, noise=0.0)
    for loss in ("huber", "squared"):
        for space in ("log", "linear"):
            law = sl.fit({"x": x, "y": y}, "x", "y", "power", loss=loss, space=space)
            assert law.params["alpha"] == pytest.approx(0.3, rel=1e-5), (loss, space)
