"""The OLMo model ladder (Bhagia et al. 2024) through the toolkit: the published two-step protocol, then
other method options, chosen on the 3B ladder runs and reported on the 7B and 13B targets.

    python analysis/olmo_ladder.py [DATA_DIR]      (default ../shared/data/olmo_ladder)

Data and protocol: DATA_DIR/README.md. Step 1 fits task bits-per-byte (bpb) from (N, D) with the Chinchilla
form on 16 ladder runs (190M-1B x 1-10x Chinchilla tokens, the mean of each run's last 5 evaluations);
step 2 fits accuracy from bpb with a logistic on all their checkpoints (the first 10% of each run dropped,
bpb and accuracy moving-averaged over 5, plus the point bpb 0, accuracy 1); chained, step 2 at step 1's
predicted bpb. Method options (``OPTIONS``), each the same for every task:

    published             as above
    checkpoints           step 1 on every smoothed checkpoint of the 16 runs (the points of step 2)
    compute               step 1 in compute: bpb = E + A C^-alpha, C = 6 N D, on the 16 final points
    compute+checkpoints   compute, on every smoothed checkpoint
    ensemble              the mean of the checkpoints and compute predictions

The option kept is the one with the lowest mean absolute chained error on the six 3B ladder runs (0.5x to
10x Chinchilla tokens, and the 1x rerun), which no fit uses; ``CHOSEN`` records it.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

import scaling.laws as sl

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "olmo_ladder"
TASKS = (
    "mmlu_avg_test",
    "hellaswag_val",
    "arc_challenge_test",
    "arc_easy_test",
    "piqa_val",
    "csqa_val",
    "socialiqa_val",
    "openbookqa_test",
)
TRAIN_SIZES = ("190M", "370M", "760M", "1B")
TRAIN_RUNS = ("1xC", "2xC", "5xC", "10xC")
CHANCE = {  # published p0 of step 2: a = chance - 1
    "mmlu_avg_test": 0.25,
    "hellaswag_val": 0.25,
    "arc_challenge_test": 0.25,
    "arc_easy_test": 0.25,
    "piqa_val": 0.5,
    "csqa_val": 0.2,
    "socialiqa_val": 1 / 3,
    "openbookqa_test": 0.25,
}


def load(data_dir: Path = DATA) -> pd.DataFrame:
    return pd.read_csv(Path(data_dir) / "ladder_evals_tidy.csv")


def runs(df: pd.DataFrame, sizes=TRAIN_SIZES, names=TRAIN_RUNS) -> dict[tuple[str, str], pd.DataFrame]:
    """The logged evaluations of each (size, run), in step order."""
    out = {}
    for (size, run), g in df[df["size"].isin(sizes) & df["run"].isin(names)].groupby(["size", "run"]):
        out[size, run] = g.sort_values("step")
    return out


def step1_points(df: pd.DataFrame, task: str, sizes=TRAIN_SIZES, names=TRAIN_RUNS, last: int = 5) -> pd.DataFrame:
    """One point per run: N, D (tokens of the last row) and the mean bpb (and accuracy) of its last rows."""
    rows = []
    for (size, run), g in runs(df, sizes, names).items():
        tail = g.tail(last)
        rows.append(
            {
                "size": size,
                "run": run,
                "N": float(g["n_params"].iloc[-1]),
                "D": float(g["tokens"].iloc[-1]),
                "bpb": float(tail[f"{task}_5shot_bpb"].mean()),
                "acc": float(tail[f"{task}_5shot_acc"].mean()),
            }
        )
    return pd.DataFrame(rows)


def smoothed(g: pd.DataFrame, task: str, skip: float = 0.1, window: int = 5) -> pd.DataFrame:
    """A run's checkpoints after the first ceil(skip) share, bpb and accuracy each moving-averaged."""
    g = g.iloc[math.ceil(skip * len(g)) :]
    bpb = g[f"{task}_5shot_bpb"].rolling(window, min_periods=1).mean().to_numpy()
    acc = g[f"{task}_5shot_acc"].rolling(window, min_periods=1).mean().to_numpy()
    return pd.DataFrame({"N": g["n_params"].to_numpy(float), "D": g["tokens"].to_numpy(float), "bpb": bpb, "acc": acc})


def step2_points(df: pd.DataFrame, task: str, sizes=TRAIN_SIZES, names=TRAIN_RUNS, anchor: bool = True) -> pd.DataFrame:
    """Every smoothed checkpoint of the runs, plus the anchor point (bpb 0, accuracy 1)."""
    parts = [smoothed(g, task) for g in runs(df, sizes, names).values()]
    if anchor:
        parts.append(pd.DataFrame({"N": [np.nan], "D": [np.nan], "bpb": [0.0], "acc": [1.0]}))
    return pd.concat(parts, ignore_index=True)


def checkpoint_points(df: pd.DataFrame, task: str) -> pd.DataFrame:
    """Every smoothed checkpoint of the 16 runs (step 2's points without the anchor)."""
    return pd.concat([smoothed(g, task) for g in runs(df).values()], ignore_index=True)


OPTIONS = ("published", "checkpoints", "compute", "compute+checkpoints", "ensemble")
CHOSEN = "compute+checkpoints"
VALIDATION_RUNS = ("0.5xC", "1xC", "1xC-rerun", "2xC", "5xC", "10xC")  # of the 3B ladder size


def ladder(df: pd.DataFrame, task: str, option: str = "published", **fit_options) -> sl.Ladder:
    """The fitted two steps of ``option`` (not ``ensemble``, which averages two ladders)."""
    points = checkpoint_points(df, task) if "checkpoints" in option else step1_points(df, task)
    if option.startswith("compute"):
        points = points.assign(C=6.0 * points["N"] * points["D"])
        return sl.fit_ladder(points, step2_points(df, task), "C", "bpb", "acc", **fit_options)
    return sl.fit_ladder(points, step2_points(df, task), ["N", "D"], "bpb", "acc", **fit_options)


def predictor(df: pd.DataFrame, task: str, option: str):
    """A function (N, D) -> (chained accuracy, predicted bpb) for ``option``."""
    if option == "ensemble":
        parts = [predictor(df, task, o) for o in ("checkpoints", "compute")]
        return lambda N, D: tuple(np.mean([f(N, D)[i] for f in parts]) for i in (0, 1))
    fitted = ladder(df, task, option)
    if option.startswith("compute"):
        return lambda N, D: (float(fitted.predict(6.0 * N * D)), float(fitted.predict_loss(6.0 * N * D)))
    return lambda N, D: (float(fitted.predict({"N": N, "D": D})), float(fitted.predict_loss({"N": N, "D": D})))


def evaluation_targets(df: pd.DataFrame, task: str) -> dict[str, dict[str, float]]:
    """The 3B validation runs (final points, as step 1 takes them) and the 7B and 13B targets."""
    out = {}
    for run in VALIDATION_RUNS:
        p = step1_points(df, task, sizes=("3B",), names=(run,)).iloc[0]
        out[f"3B-{run}"] = {"N": p["N"], "D": p["D"], "acc": p["acc"], "bpb": p["bpb"]}
    for size in ("7B", "13B"):
        out[size] = target(df, task, size)
    return out


def predictions(df: pd.DataFrame, options=OPTIONS, tasks=TASKS) -> pd.DataFrame:
    """One row per (task, option, target): chained accuracy and bpb predicted, actual, errors in points."""
    rows = []
    for task in tasks:
        targets = evaluation_targets(df, task)
        for option in options:
            f = predictor(df, task, option)
            for name, t in targets.items():
                acc, bpb = f(t["N"], t["D"])
                rows.append(
                    {
                        "task": task,
                        "option": option,
                        "target": name,
                        "group": "3B" if name.startswith("3B") else name,
                        "acc_pred": acc,
                        "acc": t["acc"],
                        "error_points": 100 * abs(acc - t["acc"]),
                        "bpb_pred": bpb,
                        "bpb": t["bpb"],
                        "bpb_rel_error": (bpb - t["bpb"]) / t["bpb"],
                    }
                )
    return pd.DataFrame(rows)


def choose(preds: pd.DataFrame) -> str:
    """The option with the lowest mean absolute chained error on the 3B validation runs."""
    return str(preds[preds["group"] == "3B"].groupby("option")["error_points"].mean().idxmin())


def target(df: pd.DataFrame, task: str, size: str) -> dict[str, float]:
    """N, D of a target model and its actual (smoothed, last) bpb and accuracy."""
    run = {"13B": "final", "7B": "anneal"}[size]
    g = df[(df["size"] == size) & (df["run"] == run)].sort_values("step")
    s = smoothed(g, task, skip=0.0)
    last = s.iloc[-1]
    return {
        "N": float(g["n_params"].iloc[-1]),
        "D": float(g["tokens"].iloc[-1]),
        "bpb": last["bpb"],
        "acc": last["acc"],
    }


def main(data_dir: Path = DATA) -> None:
    df = load(data_dir)
    preds = predictions(df)
    chosen = choose(preds)
    by_group = preds.pivot_table(index="option", columns="group", values="error_points", aggfunc="mean")
    print("mean absolute chained error (accuracy points) per option:")
    print(by_group[["3B", "7B", "13B"]].round(2).to_string())
    print(f"chosen on the 3B runs: {chosen}")
    for size in ("13B", "7B"):
        t = preds[preds["group"] == size]
        table = t.pivot_table(index="task", columns="option", values="acc_pred")[list(OPTIONS)]
        table.insert(0, "actual", t.groupby("task")["acc"].first())
        print(f"\n{size} chained accuracy:")
        print(table.round(3).to_string())


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DATA)
