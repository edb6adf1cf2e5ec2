"""Bad input: a LawError (a ValueError) that names the problem, raised before any fitting."""

import numpy as np
import pandas as pd
import pytest

import scaling.laws as sl
from scaling.errors import LawError

X = np.logspace(2, 5, 12)
Y = 3 * X**-0.5


def fit(data, **kw):
    kw = {"x": "x", "y": "y", "form": "power"} | kw
    return sl.fit(data, kw.pop("x"), kw.pop("y"), kw.pop("form"), **kw)


@pytest.mark.parametrize(
    ("data", "kw", "message"),
    [
        ({"x": X, "y": np.where(X > 1e4, np.nan, Y)}, {}, r"column 'y' has \d+ NaN or infinite"),
        ({"x": np.where(X > 1e4, np.inf, X), "y": Y}, {}, r"column 'x' has \d+ NaN or infinite"),
        ({"x": X - 200, "y": Y}, {}, r"column 'x' must be > 0 .*log x"),
        ({"x": X, "y": -Y}, {}, r"column 'y' must be > 0 .*log space"),
        ({"x": X[:2], "y": Y[:2]}, {"form": "saturating_power"}, r"3 parameters but .* only 2 distinct"),
        ({"x": X, "y": Y}, {"x": "size"}, r"column 'size' is not in the data; columns are \['x', 'y'\]"),
        ({"x": X, "y": Y}, {"form": "cubic"}, r"unknown form 'cubic'"),
        ({"x": X, "y": np.full_like(X, 0.3)}, {}, r"column 'y' is constant"),
        ({"x": X, "y": Y}, {"form": "chinchilla"}, r"takes 2 x column"),
        ({"x": X, "y": Y * 10}, {"form": "exp_power"}, r"must be in \(0, 1\]"),
        ({"x": X, "y": Y}, {"loss": "l1"}, r"loss must be one of"),
        ({"x": X, "y": Y}, {"bootstrap": -1}, r"bootstrap must be an integer >= 0"),
        ({"x": X, "y": Y}, {"holdout": 11}, r"leaves 1, fewer than the 2 parameters"),
        ({"x": X, "y": Y[:-1]}, {}, r"different lengths"),
        ({"x": ["a"] * 12, "y": Y}, {}, r"column 'x' is not numeric"),
    ],
)
def test_bad_input_names_the_problem(data, kw, message):
    with pytest.raises(LawError, match=message) as err:
        fit(data, **kw)
    assert isinstance(err.value, ValueError)


def test_dataframe_and_mapping_inputs_agree():
    a = fit({"x": X, "y": Y})
    b = fit(pd.DataFrame({"x": X, "y": Y}))
    assert a.params == b.params


def test_holdout_api_validates_too():
    with pytest.raises(LawError, match="n_holdout must be an integer >= 1"):
        sl.holdout({"x": X, "y": Y}, "x", "y", "power", n_holdout=0)
    with pytest.raises(LawError, match="unknown form"):
        sl.holdout({"x": X, "y": Y}, "x", "y", "quadratic")
