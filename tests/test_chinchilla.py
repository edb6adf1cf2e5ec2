"""The replication's published protocol on the digitised Chinchilla points (Besiroglu et al. 2024)."""

import numpy as np
import pytest

import scaling.laws as sl

# Besiroglu et al. 2024, point estimates with standard errors; 95% interval = estimate +- 1.96 SE.
PUBLISHED = {
    "E": (1.8172, 0.03),
    "A": (482.01, 124.58),
    "B": (2085.43, 1293.23),
    "alpha": (0.3478, 0.02),
    "beta": (0.3658, 0.02),
}
HOFFMANN = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}


@pytest.fixture(scope="module")
def law(chinchilla_df):
    return sl.fit(chinchilla_df, ["N", "D"], "loss", "chinchilla", loss="huber", delta=1e-3, bootstrap=200, seed=0)


def test_protocol_uses_240_points_and_4500_starts(chinchilla_df, law):
    assert len(chinchilla_df) == 240 and law.n_points == 240
    assert law.fit_info["starts"] == 4500
    assert law.fit_info["converged"]


def test_reproduces_the_replication_estimates(law):
    for name, (estimate, se) in PUBLISHED.items():
        lo, hi = estimate - 1.96 * se, estimate + 1.96 * se
        assert lo <= law.params[name] <= hi, (name, law.params[name], (lo, hi))
    # Much tighter than the intervals: the same optimum, not just a compatible one.
    assert law.params["E"] == pytest.approx(1.8172, abs=1e-3)
    assert law.params["alpha"] == pytest.approx(0.3478, abs=2e-3)
    assert law.params["beta"] == pytest.approx(0.3658, abs=3e-3)


def test_bootstrap_intervals_contain_the_replication_and_exclude_hoffmann(law):
    for name, (estimate, _) in PUBLISHED.items():
        lo, hi = law.ci[name]
        assert lo <= estimate <= hi, (name, law.ci[name])
    # The replication's finding: Hoffmann et al.'s beta and E are inconsistent with the data.
    assert not law.ci["beta"][0] <= HOFFMANN["beta"] <= law.ci["beta"][1]
    assert not law.ci["E"][0] <= HOFFMANN["E"] <= law.ci["E"][1]


def test_fit_beats_hoffmann_parameters_on_the_objective(chinchilla_df, law):
    logL = np.log(chinchilla_df["loss"].to_numpy())

    def objective(p):
        pred = sl.FORMS["chinchilla"].predict(tuple(p[k] for k in HOFFMANN), [chinchilla_df["N"], chinchilla_df["D"]])
        r = np.abs(logL - np.log(pred))
        return np.sum(np.where(r <= 1e-3, 0.5 * r**2, 1e-3 * (r - 0.5e-3)))

    assert objective(law.params) < objective(HOFFMANN)
    assert law.fit_info["objective"] == pytest.approx(objective(law.params), rel=1e-9)


def test_compute_optimal_split_is_near_equal_scaling(law):
    opt = sl.compute_optimal(law, 5.76e23)  # Chinchilla's budget
    assert 0.45 < opt.a < 0.56 and opt.a + opt.b == pytest.approx(1.0)
    assert float(opt.N_opt * opt.D_opt * 6) == pytest.approx(5.76e23)
    assert 10 < float(opt.tokens_per_param) < 40
    lo, hi = opt.N_interval
    assert lo[0] < opt.N_opt < hi[0]
