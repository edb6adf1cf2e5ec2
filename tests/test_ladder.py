"""Honest extrapolation scores, sample weights, physical bounds, the logistic link and the two-step ladder."""

import json
import math

import numpy as np
import pandas as pd
import pytest

import scaling.laws as sl
from scaling.errors import LawError
from scaling.io import loads_strict

RNG = np.random.default_rng(0)


def ladder_data(seeds: int = 3, noise: float = 0.01):
    """Synthetic ladder: loss = 1 + 30 N^-0.3 + 60 D^-0.3 over 5 sizes x 2 data values x seeds, and
    accuracy = 0.1 + 0.85 / (1 + exp(6 (loss - 1.9)))."""
    rows = []
    for N in np.geomspace(1e5, 1e7, 5):
        for tokens_per_param in (10.0, 40.0):
            D = N * tokens_per_param
            for s in range(seeds):
                loss = (1.0 + 30 * N**-0.3 + 60 * D**-0.3) * np.exp(RNG.normal(0, noise))
                acc = 0.1 + 0.85 / (1 + np.exp(6 * (loss - 1.9))) + RNG.normal(0, noise)
                rows.append({"N": N, "D": D, "seed": s, "loss": loss, "acc": float(np.clip(acc, 0, 1))})
    return pd.DataFrame(rows)


def test_holdout_reports_naive_forecasts_and_skill():
    x = np.logspace(1, 5, 9)
    y = 0.1 + 0.8 / (1 + (1e4 / x) ** 1.2) + RNG.normal(0, 0.005, x.size)  # still rising at the largest x
    law = sl.fit({"x": x, "y": y}, "x", "y", "sigmoid_log", holdout=1, bootstrap=20)
    h = law.holdout
    # The naive forecasts of the largest point: the last fitted value, and the line in log x through the last two.
    slope = (y[-2] - y[-3]) / (np.log(x[-2]) - np.log(x[-3]))
    line = y[-2] + slope * (np.log(x[-1]) - np.log(x[-2]))
    assert h["naive_errors"]["persistence"] == pytest.approx(abs(y[-1] - y[-2]))
    assert h["naive_errors"]["log_linear"] == pytest.approx(abs(y[-1] - line))
    assert law.naive_error == min(h["naive_errors"].values())
    assert law.skill == pytest.approx(1 - law.holdout_error / law.naive_error)
    assert law.skill > 0.5 and h["skill_interval"][0] <= law.skill <= h["skill_interval"][1]


def test_saved_law_carries_the_scores_as_top_level_keys(tmp_path):
    x = np.logspace(1, 5, 9)
    y = 0.1 + 0.8 / (1 + (1e4 / x) ** 1.2) + RNG.normal(0, 0.005, x.size)  # still rising at the largest x
    law = sl.fit({"x": x, "y": y}, "x", "y", "sigmoid_log", holdout=1)
    doc = loads_strict(law.save(tmp_path / "l.json").read_text())
    assert doc["holdout_error"] == law.holdout_error and doc["naive_error"] == law.naive_error
    assert doc["skill"] == law.skill and doc["is_step"] is False
    again = sl.load(tmp_path / "l.json")
    assert again.skill == law.skill and again.naive_error == law.naive_error


def test_a_held_out_point_on_the_plateau_is_no_evidence():
    x = np.logspace(1, 5, 9)
    y = 0.05 + 0.9 / (1 + (100.0 / x) ** 2.0)  # saturated well before the largest x
    law = sl.fit({"x": x, "y": y}, "x", "y", "sigmoid_log", holdout=1)
    assert law.skill is None and "asymptote" in law.holdout["skill_reason"]
    assert law.holdout["points"][0]["saturated"]


def test_nothing_to_beat_when_the_naive_error_is_within_noise():
    # Seeds scatter by 0.1 around a flat line: the naive forecasts are within twice the standard error.
    x = np.repeat(np.logspace(1, 4, 6), 8)
    y = 0.5 + 0.0 * x + RNG.normal(0, 0.1, x.size) + 1e-3 * np.log(x)
    law = sl.fit({"x": x, "y": y}, "x", "y", "log_linear", holdout=1)
    assert law.skill is None and "nothing to beat" in law.holdout["skill_reason"]


def test_seeds_shared_by_every_x_are_paired_so_their_offsets_cancel():
    # 8 seeds, each with its own offset (sd 0.1) at every x, on a curve still rising at the held-out x: the
    # offsets swamp the held-out point's standard error, but cancel in each seed's own naive forecast.
    rng = np.random.default_rng(1)
    seeds = np.arange(8)
    x = np.logspace(1, 3.5, 7)
    xs, ss = np.meshgrid(x, seeds)
    offset = rng.normal(0, 0.1, seeds.size)[ss]
    y = 0.1 + 0.6 / (1 + (1e3 / xs) ** 1.5) + offset + rng.normal(0, 0.002, xs.shape)
    data = {"x": xs.ravel(), "y": y.ravel(), "seed": ss.ravel()}
    unpaired = sl.fit(data, "x", "y", "sigmoid_log", holdout=1, bootstrap=40, loss="squared")
    assert unpaired.skill is None and "nothing to beat" in unpaired.holdout["skill_reason"]
    paired = sl.fit(data, "x", "y", "sigmoid_log", holdout=1, bootstrap=40, loss="squared", paired="seed")
    h = paired.holdout
    assert h["paired"] and h["standard_error"] < unpaired.holdout["standard_error"] / 5
    assert paired.holdout_error == pytest.approx(unpaired.holdout_error)  # the same refit, only judged apart
    assert paired.skill is not None and paired.skill > 0, h
    lo, hi = h["skill_interval"]
    assert lo <= paired.skill <= hi
    # a seed missing at one x breaks the pairing: the check falls back to the unpaired standard error
    drop = ~((data["seed"] == 0) & (data["x"] == x[0]))
    partial = sl.fit({k: v[drop] for k, v in data.items()}, "x", "y", "sigmoid_log", holdout=1, paired="seed")
    assert not partial.holdout["paired"]
    with pytest.raises(LawError, match="paired names column 'run'"):
        sl.fit(data, "x", "y", "sigmoid_log", holdout=1, paired="run")


def test_a_step_shaped_fit_is_flagged():
    x = np.logspace(0, 3, 8)
    y = np.where(x < 30, 0.1, 0.9)
    law = sl.fit({"x": x, "y": y}, "x", "y", "sigmoid_log")
    assert law.is_step and "step" in law.summary()
    # A nearly flat sigmoid's transition spans all of x > 0 (and must not overflow).
    assert sl.FORMS["sigmoid_log"].transition((0.1, 0.9, 10.0, 1e-4)) == (0.0, math.inf)
    assert sl.FORMS["logistic"].transition((0.1, 0.9, 0.0, 1.0)) == (-math.inf, math.inf)


def test_sample_weights_pull_the_fit_and_bad_weights_are_refused():
    x = np.logspace(1, 4, 10)
    y = 3.0 * x**-0.5
    y[-1] *= 3.0  # one outlier
    plain = sl.fit({"x": x, "y": y}, "x", "y", "power", loss="squared")
    w = np.ones_like(x)
    w[-1] = 0.0
    down = sl.fit({"x": x, "y": y, "w": w}, "x", "y", "power", loss="squared", weights="w")
    assert down.params["alpha"] == pytest.approx(0.5, rel=1e-6) and abs(plain.params["alpha"] - 0.5) > 0.01
    heavy = sl.fit({"x": x, "y": y}, "x", "y", "power", loss="squared", weights=np.r_[np.ones(9), 100.0])
    assert heavy.residuals({"x": x, "y": y})[-1] ** 2 < plain.residuals({"x": x, "y": y})[-1] ** 2
    with pytest.raises(LawError, match=r"weights must be >= 0"):
        sl.fit({"x": x, "y": y}, "x", "y", "power", weights=np.r_[np.ones(9), -1.0])
    with pytest.raises(LawError, match="all zero"):
        sl.fit({"x": x, "y": y}, "x", "y", "power", weights=np.zeros(10))
    with pytest.raises(LawError, match="one value per row"):
        sl.fit({"x": x, "y": y}, "x", "y", "power", weights=np.ones(3))


def test_physical_bounds_let_the_floor_lie_above_the_smallest_observation():
    loss = np.linspace(0.6, 2.5, 30)
    acc = 0.3 + 0.7 / (1 + np.exp(4 * (loss - 1.2)))  # chance floor 0.3
    acc[-1] = 0.25  # one point below the floor
    data = sl.fit({"loss": loss, "acc": acc}, "loss", "acc", "logistic", loss="squared")
    physical = sl.fit({"loss": loss, "acc": acc}, "loss", "acc", "logistic", loss="squared", bounds="physical")
    assert data.params["R0"] <= 0.25 + 1e-9  # data bounds: the floor cannot exceed min y
    assert physical.params["R0"] == pytest.approx(0.3, abs=0.02) and physical.bounds.mode == "physical"
    with pytest.raises(LawError, match="bounds must be one of"):
        sl.fit({"loss": loss, "acc": acc}, "loss", "acc", "logistic", bounds="loose")


def test_logistic_accepts_the_anchor_point_and_inverts():
    loss = np.r_[0.0, np.linspace(0.5, 3.0, 40)]
    acc = np.r_[1.0, 0.25 + 0.75 / (1 + np.exp(3.0 * (np.linspace(0.5, 3.0, 40) - 1.5)))]
    law = sl.fit({"loss": loss, "acc": acc}, "loss", "acc", "logistic", loss="squared", bounds="physical")
    assert law.params["k"] == pytest.approx(3.0, rel=0.01) and law.params["x0"] == pytest.approx(1.5, rel=0.01)
    assert law.predict(law.solve(0.6)) == pytest.approx(0.6)
    with pytest.raises(LawError, match=r"must be >= 0"):
        sl.fit({"loss": -loss - 1, "acc": acc}, "loss", "acc", "logistic")


def test_ladder_chains_two_laws_with_a_band_and_reloads(tmp_path):
    df = ladder_data()
    ladder = sl.fit_ladder(df, df, ["N", "D"], "loss", "acc", bootstrap=16, holdout=1)
    assert ladder.step1.form == "chinchilla" and ladder.step2.form == "logistic"
    new = pd.DataFrame({"N": [3e7], "D": [3e7 * 20]})
    true_loss = 1.0 + 30 * 3e7**-0.3 + 60 * (6e8) ** -0.3
    assert ladder.predict_loss(new)[0] == pytest.approx(true_loss, rel=0.02)
    assert ladder.predict(new)[0] == pytest.approx(ladder.step2.predict(ladder.predict_loss(new)[0]))
    lo, hi = ladder.interval(new)
    assert lo[0] <= ladder.predict(new)[0] <= hi[0] and hi[0] - lo[0] < 0.2
    h = ladder.holdout
    assert h["n_holdout"] == 1 and ladder.holdout_error < 0.05 and ladder.naive_error == h["naive_error"]
    assert ladder.skill == pytest.approx(1 - ladder.holdout_error / ladder.naive_error)
    assert h["skill_interval"][0] <= ladder.skill <= h["skill_interval"][1]
    path = ladder.save(tmp_path / "ladder.json")
    doc = loads_strict(path.read_text())
    assert doc["kind"] == "ladder" and doc["holdout_error"] == ladder.holdout_error
    assert doc["naive_error"] == ladder.naive_error and doc["skill"] == ladder.skill
    again = sl.load(path)
    assert isinstance(again, sl.Ladder)
    np.testing.assert_array_equal(again.predict(new), ladder.predict(new))
    np.testing.assert_array_equal(again.interval(new)[0], lo)
    assert "step 1" in again.summary() and "step 2" in again.summary()


def test_ladder_refuses_what_it_cannot_fit():
    df = ladder_data(seeds=1)
    with pytest.raises(LawError, match=r"task loss column 'loss' must be > 0"):
        sl.fit_ladder(df.assign(loss=df["loss"] - 10), df, ["N", "D"], "loss", "acc")
    one_length = df[df["D"] / df["N"] == 10.0]
    with pytest.raises(LawError, match="two or more data values per size"):
        sl.fit_ladder(one_length, df, ["N", "D"], "loss", "acc")
    with pytest.raises(LawError, match=r"step 1 .*weights must be >= 0"):
        sl.fit_ladder(df, df, ["N", "D"], "loss", "acc", step1={"weights": -np.ones(len(df))})
    with pytest.raises(LawError, match="no such law file"):
        sl.load("/nonexistent/ladder.json")


def test_cli_fits_and_reuses_a_ladder(tmp_path):
    import subprocess
    import sys

    df = ladder_data(seeds=1)
    df.to_csv(tmp_path / "ladder.csv", index=False)
    out = tmp_path / "ladder.json"
    r = subprocess.run(
        [sys.executable, "-m", "scaling", "ladder", tmp_path / "ladder.csv", "--x", "N,D", "--loss", "loss", "--acc",
         "acc", "--bootstrap", "4", "--holdout", "1", "--out", out, "--figure", tmp_path / "fig" / "ladder"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "step 1" in r.stdout and "chained held-out error" in r.stdout and out.exists()
    assert sorted(p.name for p in (tmp_path / "fig").iterdir()) == ["ladder.pdf", "ladder.png", "ladder.svg"]
    assert "stroke-dasharray" in (tmp_path / "fig" / "ladder.svg").read_text()  # step 2 dashed where it extrapolates
    r = subprocess.run(
        [sys.executable, "-m", "scaling", "law", "predict", out, "3e7,6e8"], capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr
    value = float(r.stdout.split("=")[1].split()[0])
    assert value == pytest.approx(float(sl.load(out).predict({"N": [3e7], "D": [6e8]})[0]), rel=1e-5)
    assert math.isfinite(json.loads(out.read_text())["holdout_error"])
