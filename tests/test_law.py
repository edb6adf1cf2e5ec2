import json
import math

import numpy as np
import pytest

import scaling.laws as sl
from scaling.errors import LawError


@pytest.fixture(scope="module")
def sat_law():
    x = np.logspace(2, 6, 20)
    rng = np.random.default_rng(0)
    y = (0.1 + 5.0 * x**-0.4) * np.exp(rng.normal(0, 0.02, x.size))
    return sl.fit({"params": x, "error": y}, "params", "error", "saturating_power", bootstrap=200, holdout=3)


def test_save_load_round_trip_is_exact(sat_law, tmp_path):
    path = sat_law.save(tmp_path / "laws" / "error.json")
    loaded = sl.load(path)
    x = np.logspace(1, 9, 57)
    np.testing.assert_array_equal(loaded.predict(x), sat_law.predict(x))
    assert loaded.params == sat_law.params and loaded.ci == sat_law.ci
    np.testing.assert_array_equal(loaded.samples, sat_law.samples)
    np.testing.assert_array_equal(loaded.interval(x)[0], sat_law.interval(x)[0])
    assert loaded.solve(0.2) == sat_law.solve(0.2)
    assert loaded.holdout_error == sat_law.holdout_error and loaded.r2 == sat_law.r2
    d = json.loads(path.read_text())
    assert d["schema_version"] == 1 and d["form"] == "saturating_power"
    assert d["x"] == ["params"] and d["y"] == "error"
    assert d["data_fingerprint"].startswith("sha256:") and d["options"]["delta"] == 1e-3
    assert set(d["ci"]) == {"E", "A", "alpha"}
    assert not list(tmp_path.glob("laws/.*tmp"))  # atomic write leaves no temporary file


def test_saved_laws_are_strict_json_and_files_written_before_strictness_still_load(tmp_path):
    from scaling.io import loads_strict

    x = np.logspace(1, 4, 8)
    law = sl.fit({"x": x, "y": 5.0 * x**-0.3}, "x", "y", "power", holdout=2)  # y > 1: no ceiling (inf)
    assert math.isnan(law.r2_means) and math.isinf(law.bounds.ceiling)
    doc = loads_strict(law.save(tmp_path / "new.json").read_text())  # no NaN or Infinity tokens
    assert doc["r2_means"] is None and doc["bounds"]["ceiling"] == "inf" and doc["bounds"]["floor"] == 0.0
    again = sl.load(tmp_path / "new.json")
    assert math.isnan(again.r2_means) and again.bounds == law.bounds and again.holdout == law.holdout
    # The writer before strict JSON: Python's json with NaN and Infinity tokens.
    (tmp_path / "old.json").write_text(json.dumps(law.to_dict(), indent=1))
    assert "Infinity" in (tmp_path / "old.json").read_text() and "NaN" in (tmp_path / "old.json").read_text()
    old = sl.load(tmp_path / "old.json")
    np.testing.assert_array_equal(old.predict(x), law.predict(x))
    assert old.bounds == law.bounds and math.isnan(old.r2_means) and old.holdout_error == law.holdout_error


def test_fingerprint_tracks_the_data():
    x = np.logspace(2, 5, 10)
    a = sl.fit({"x": x, "y": 3 * x**-0.5}, "x", "y", "power")
    b = sl.fit({"x": x, "y": 3 * x**-0.5}, "x", "y", "power")
    c = sl.fit({"x": x, "y": 3.1 * x**-0.5}, "x", "y", "power")
    assert a.fingerprint == b.fingerprint != c.fingerprint


def test_solve_inverts_predict_and_refuses_targets_beyond_the_floor(sat_law):
    x = np.array([1e3, 1e5, 1e8])
    np.testing.assert_allclose(sat_law.solve(sat_law.predict(x)), x, rtol=1e-9)
    assert isinstance(sat_law.solve(0.3), float)
    with pytest.raises(LawError, match="out of reach"):
        sat_law.solve(sat_law.params["E"] * 0.5)
    lo, hi = sat_law.solve_interval(0.3)
    assert lo < sat_law.solve(0.3) < hi


def test_solve_for_every_single_input_form():
    cases = {
        "power": ({"A": 5.0, "alpha": 0.3}, 0.5),
        "sigmoid_log": ({"R0": 0.05, "A": 0.8, "C_mid": 1e4, "B": 1.5}, 0.5),
        "exp_power": ({"a": 3.0, "b": 0.5}, 0.7),
        "log_linear": ({"a": 0.1, "b": 0.05}, 0.5),
    }
    for form, (truth, target) in cases.items():
        spec = sl.FORMS[form]
        x = np.logspace(1, 6, 15)
        y = spec.predict(tuple(truth[p] for p in spec.params), [x])
        law = sl.fit({"x": x, "y": y}, "x", "y", form)
        assert law.predict(law.solve(target)) == pytest.approx(target, rel=1e-9), form


def test_sigmoid_solve_beyond_asymptote_names_the_range():
    x = np.logspace(1, 6, 15)
    spec = sl.FORMS["sigmoid_log"]
    law = sl.fit({"x": x, "y": spec.predict((0.05, 0.8, 1e4, 1.5), [x])}, "x", "y", "sigmoid_log")
    with pytest.raises(LawError, match=r"only takes values in \(0\.05"):
        law.solve(0.95)


def test_formula_and_summary_show_values(sat_law):
    assert sat_law.formula().startswith("error = 0.1")
    assert "params^-0.4" in sat_law.formula()
    text = sat_law.summary()
    assert "95% CI" in text and "held-out error" in text and "R^2" in text


def test_multi_input_predict_accepts_mapping_and_array():
    rng = np.random.default_rng(0)
    N, D = 10 ** rng.uniform(7, 9, 30), 10 ** rng.uniform(9, 11, 30)
    L = 1.7 + 400 / N**0.34 + 1500 / D**0.3
    law = sl.fit({"N": N, "D": D, "L": L}, ["N", "D"], "L", "chinchilla")
    np.testing.assert_array_equal(law.predict({"N": N, "D": D}), law.predict(np.column_stack([N, D])))
    assert isinstance(law.predict({"N": 1e8, "D": 1e10}), float)
    with pytest.raises(LawError, match="lack column"):
        law.predict({"N": N})
    with pytest.raises(LawError, match="single-input"):
        law.solve(2.0)
    np.testing.assert_allclose(law.residuals({"N": N, "D": D, "L": L}), 0, atol=1e-6)


def test_interval_without_bootstrap_is_a_clear_error():
    x = np.logspace(2, 5, 10)
    law = sl.fit({"x": x, "y": 3 * x**-0.5}, "x", "y", "power")
    with pytest.raises(LawError, match="bootstrap"):
        law.interval(x)


def test_load_rejects_bad_files(tmp_path):
    with pytest.raises(LawError, match="no such law file"):
        sl.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(LawError, match="not a valid law file"):
        sl.load(tmp_path / "bad.json")
    (tmp_path / "v9.json").write_text(json.dumps({"schema_version": 9, "form": "power"}))
    with pytest.raises(LawError, match="schema_version 9"):
        sl.load(tmp_path / "v9.json")
