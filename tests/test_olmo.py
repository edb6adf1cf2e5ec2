"""The OLMo model ladder (../shared/data/olmo_ladder): the published two-step protocol run through the
toolkit reproduces the published predictions of the 7B and 13B targets."""

import importlib.util

import pandas as pd
import pytest

from .conftest import ROOT, SHARED_DATA

DATA = SHARED_DATA / "olmo_ladder"
spec = importlib.util.spec_from_file_location("olmo_ladder", ROOT / "analysis" / "olmo_ladder.py")
ol = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ol)


def published(name: str) -> pd.Series:
    table = pd.read_csv(DATA / "published" / name)
    return table.set_index(table["Task"].str.replace("_5shot", ""))["Pred"]


@pytest.fixture(scope="module")
def df():
    return ol.load(DATA)


@pytest.mark.parametrize("task", ["mmlu_avg_test", "hellaswag_val", "piqa_val"])
def test_published_protocol_reproduces_step1_and_the_chained_13b_prediction(df, task):
    ladder = ol.ladder(df, task, "published")
    reference_7b = pd.read_csv(DATA / "reference_step1_fits.csv").set_index("task").loc[task, "7B_pred"]
    for size, want in (("13B", published("step1_main.csv")[task]), ("7B", reference_7b)):
        t = ol.target(df, task, size)
        assert ladder.predict_loss({"N": t["N"], "D": t["D"]}) == pytest.approx(want, rel=0.005), size
    t = ol.target(df, task, "13B")
    chained = ladder.predict({"N": t["N"], "D": t["D"]})
    assert abs(chained - published("chained_main.csv")[task]) < 0.005  # within half a point of accuracy
    assert ladder.step1.n_points == 16 and ladder.step2.n_points == 1402  # 16 runs; 1401 checkpoints + anchor
