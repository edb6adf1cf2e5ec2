"""Report tables from hand-made results rows: intervals, and SFT-only against SFT+RL at equal samples."""

import numpy as np
import pandas as pd
import pytest

from scaling.report import rl_vs_sft
from scaling.results import wilson


def test_wilson_interval_matches_its_closed_form():
    lo, hi = wilson(5, 10)
    assert (float(lo), float(hi)) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    lo, hi = wilson(np.array([0, 20]), np.array([20, 20]))
    assert lo[0] == 0.0 and 0 < hi[0] < 0.2 and hi[1] == 1.0 and 0.8 < lo[1] < 1.0


def test_sft_and_sft_rl_compared_at_equal_samples_inside_and_above_the_range():
    rows = []
    for rl_prompts, train_samples, above in ((0, 1100, 0.1), (100, 1000, 0.3)):  # SFT, then SFT + RL
        for seed in (0, 1):
            for difficulty, inside in ((1, True), (2, True), (3, False)):
                value = 0.8 if inside else above
                rows.append(
                    dict(source="eval", strategy="greedy", model="d32", seed=seed, difficulty=difficulty,
                         value=value, n=50, in_train_range=inside, rl_prompts=rl_prompts,
                         train_samples=train_samples)
                )  # fmt: skip
    rows.append({**rows[0], "train_samples": 500})  # an SFT model with no partner at its sample count
    rows = [{**r, "axis:positions": "none"} for r in rows]
    rows += [{**r, "axis:positions": "rope", "value": 0.0} for r in rows[:6]]  # another setting's SFT: no partner
    table = rl_vs_sft(pd.DataFrame(rows)).set_index("stage")
    assert list(table.index) == ["sft", "sft+rl"] and set(table["samples"]) == {1100}
    assert set(table["axis:positions"]) == {"none"}
    assert table.loc["sft+rl", "above_range_mean"] == pytest.approx(0.3)
    lo, hi = wilson(0.3 * 100, 100)  # 2 seeds x 50 problems above the range
    assert (table.loc["sft+rl", "above_range_lo"], table.loc["sft+rl", "above_range_hi"]) == pytest.approx((lo, hi))
    assert table.loc["sft", "above_range_hi"] < table.loc["sft+rl", "above_range_lo"]  # the intervals separate
