"""The sweep's results table as the analysis reads it: loading it, and accuracy inside and above the
training range per group of rows (mean and spread over seeds). Columns are documented in the README."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from scaling.errors import ScalingError

REQUIRED = {"source", "strategy", "model", "params", "seed", "difficulty", "value", "in_train_range"}


def load_results(run_dir: Path) -> pd.DataFrame:
    """``run_dir``'s results table (Parquet, else CSV), checked to be a sweep results table."""
    run_dir = Path(run_dir)
    for name in ("results.parquet", "results.csv"):
        if (run_dir / name).is_file():
            df = pd.read_parquet(run_dir / name) if name.endswith("parquet") else pd.read_csv(run_dir / name)
            if missing := REQUIRED - set(df.columns):
                raise ScalingError(f"{run_dir / name}: not a sweep results table (missing columns {sorted(missing)})")
            return df
    raise ScalingError(f"{run_dir}: no results.parquet or results.csv (run `scaling run CONFIG --out {run_dir}`)")


def range_table(rows: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Mean and spread over seeds of accuracy inside and above the training range, per ``by``."""
    per_seed = rows.groupby([*by, "in_train_range", "seed"], sort=False, dropna=False)["value"].mean()
    table = per_seed.groupby([*by, "in_train_range"], sort=False, dropna=False).agg(["mean", "std"])
    table = table.unstack("in_train_range")
    table.columns = [f"{'in_range' if inside else 'above_range'}_{stat}" for stat, inside in table.columns]
    order = [c for c in ("in_range_mean", "in_range_std", "above_range_mean", "above_range_std") if c in table]
    return table[order].reset_index()


def wilson(hits, n, z: float = 1.96) -> tuple:
    """The Wilson score interval (lo, hi) of a share: hits successes out of n (95% at z = 1.96)."""
    hits, n = np.asarray(hits, dtype=float), np.asarray(n, dtype=float)
    centre = (hits + z * z / 2) / (n + z * z)
    span = z * np.sqrt(hits * (n - hits) / n + z * z / 4) / (n + z * z)
    return np.clip(centre - span, 0.0, 1.0), np.clip(centre + span, 0.0, 1.0)


def pooled_accuracy(rows: pd.DataFrame, by: list[str], sort: bool = False) -> pd.DataFrame:
    """Per ``by``: accuracy over the problems of every seed pooled (rows carry ``value`` over ``n``
    problems), with its 95% Wilson interval (columns ``accuracy``, ``lo``, ``hi``)."""
    grouped = rows.assign(hits=rows["value"] * rows["n"]).groupby(by, sort=sort, dropna=False)
    table = grouped[["hits", "n"]].sum()
    table["accuracy"] = table["hits"] / table["n"]
    table["lo"], table["hi"] = wilson(table["hits"], table["n"])
    return table.drop(columns=["hits", "n"]).reset_index()


def range_intervals(rows: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """95% Wilson intervals of accuracy inside and above the training range per ``by`` (``pooled_accuracy``)."""
    table = pooled_accuracy(rows, [*by, "in_train_range"])[[*by, "in_train_range", "lo", "hi"]]
    table = table.set_index([*by, "in_train_range"]).unstack("in_train_range")
    table.columns = [f"{'in_range' if inside else 'above_range'}_{stat}" for stat, inside in table.columns]
    order = [c for c in ("in_range_lo", "in_range_hi", "above_range_lo", "above_range_hi") if c in table]
    return table[order].reset_index()


def longest_training(rows: pd.DataFrame) -> pd.DataFrame:
    """Each preset's rows at its longest training (most training tokens): one size axis."""
    top = rows.groupby("model")["train_tokens"].transform("max")
    return rows[rows["train_tokens"] == top]


def summary(results: pd.DataFrame) -> pd.DataFrame:
    """Final greedy accuracy per point (mean and spread over seeds), inside and above the training range."""
    greedy = results[(results["source"] == "eval") & (results["strategy"] == "greedy")]
    axes = [c for c in results.columns if c.startswith("axis:") and c != "axis:models"]
    return range_table(greedy, ["point", "model", "params", *axes])
