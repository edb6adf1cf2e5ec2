"""``scaling run CONFIG.yaml``: train every model preset of a config for all seeds, evaluate, tabulate.

Output directory:
    DIR/config.yaml                the validated config
    DIR/<preset>/checkpoint/       orbax checkpoint of the newest chunk (a rerun resumes there)
    DIR/<preset>/metrics.json      loss per step and seed, steps, counts
    DIR/<preset>/accuracy.csv      accuracy per seed and difficulty
    DIR/<preset>/testtime.csv      one row per (seed, problem, strategy, budget or k): correct, tokens
    DIR/<preset>/testtime_summary.csv  accuracy per strategy, budget/k, difficulty, with bootstrap intervals
    DIR/results.csv, .parquet      one row per (preset, seed, difficulty) with sizes and FLOPs
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from tqdm import tqdm

from scaling.config import RunConfig, load_run_config
from scaling.evaluate import accuracy_table, budget_rows, max_new_tokens, sampling_rows, summarize
from scaling.laws.law import atomic_write_text
from scaling.model import flops_per_token, get_preset, param_counts
from scaling.tasks import get_task
from scaling.train import train


def write_table(df: pd.DataFrame, path_without_suffix: Path) -> None:
    """CSV and Parquet, each written atomically."""
    atomic_write_text(path_without_suffix.with_suffix(".csv"), df.to_csv(index=False))
    tmp = path_without_suffix.with_suffix(".parquet.tmp")
    df.to_parquet(tmp, index=False)
    tmp.replace(path_without_suffix.with_suffix(".parquet"))


def model_max_len(run: RunConfig) -> int:
    task = get_task(run.task)
    lo, hi = run.eval.difficulties
    prompt = max(task.widths(d)[0] + 1 for d in range(lo, hi + 1))
    train_len = task.seq_len(range(run.train.difficulties[0], run.train.difficulties[1] + 1))
    answer = max(task.widths(d)[2] for d in range(lo, hi + 1)) + 2
    budgets = max(run.testtime.budgets, default=0) + answer
    return max(train_len, prompt + max(max_new_tokens(task, range(lo, hi + 1)), budgets))


def test_time(run: RunConfig, cfg, params_S, model_dir: Path) -> pd.DataFrame | None:
    """Thinking-budget and sampling strategies for every seed; tidy rows and a summary on disk."""
    tt = run.testtime
    if not (tt.budgets or tt.ks):
        return None
    task = get_task(run.task)
    ec = dataclasses.replace(run.eval, n_per_difficulty=tt.n_per_difficulty)
    parts = []
    if tt.budgets:
        parts.append(budget_rows(cfg, params_S, list(run.seeds), task, ec, tt.budgets))
    if tt.ks:
        parts.append(sampling_rows(cfg, params_S, list(run.seeds), task, ec, tt.ks, tt.temperature))
    rows = pd.concat(parts, ignore_index=True)
    write_table(rows, model_dir / "testtime")
    table = summarize(rows)
    write_table(table, model_dir / "testtime_summary")
    return table


def run_config(run: RunConfig, out: Path, progress: bool = True) -> pd.DataFrame:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", yaml.safe_dump(dataclasses.asdict(run), sort_keys=False))
    task = get_task(run.task)
    max_len = model_max_len(run)
    tables = []
    for name in run.models:
        cfg = get_preset(name, max_len=max_len)
        model_dir = out / name
        bar = tqdm(desc=f"{name} train", unit="chunk", disable=not progress, leave=False)

        def on_chunk(done, total, loss, bar=bar):
            bar.total = total
            bar.n = done
            bar.set_postfix(loss=f"{float(np.mean(loss[:, -1])):.3f}")
            bar.refresh()

        t0 = time.perf_counter()
        res = train(cfg, task, run.train, list(run.seeds), checkpoint_dir=model_dir / "checkpoint", on_chunk=on_chunk)
        bar.close()
        train_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        acc = accuracy_table(cfg, res.state["params"], list(run.seeds), task, run.eval)
        eval_s = time.perf_counter() - t0
        counts = param_counts(cfg)
        tokens = res.steps * run.train.batch_size * res.seq_len
        flops = flops_per_token(cfg, res.seq_len)
        acc.insert(0, "model", name)
        acc = acc.assign(
            task=run.task,
            params=counts["total"],
            non_embedding_params=counts["non_embedding"],
            steps=res.steps,
            train_tokens=tokens,
            train_flops=flops["train"] * tokens,
            in_train_range=acc["difficulty"].between(*run.train.difficulties),
        )
        atomic_write_text(
            model_dir / "metrics.json",
            json.dumps(
                {
                    "model": name,
                    "steps": res.steps,
                    "seq_len": res.seq_len,
                    "train_seconds": train_s,
                    "eval_seconds": eval_s,
                    "loss": res.loss_SxN.tolist(),
                    **counts,
                }
            )
            + "\n",
        )
        write_table(acc, model_dir / "accuracy")
        tables.append(acc)
        tt = test_time(run, cfg, res.state["params"], model_dir)
        if tt is not None and progress:
            by = tt.groupby(["strategy", "budget", "k"])[["accuracy", "mean_total_tokens"]].mean().round(3)
            print(f"{name} test-time compute (mean over difficulties):\n{by.to_string()}")
        if progress:
            held = acc[acc["in_train_range"]].groupby("seed")["accuracy"].mean()
            print(
                f"{name}: {counts['total']:,} params, {res.steps} steps in {train_s:.0f}s, held-out accuracy "
                f"{held.mean():.3f} +- {held.std(ddof=0):.3f} over {len(held)} seeds"
            )
    results = pd.concat(tables, ignore_index=True)
    write_table(results, out / "results")
    return results


def summary(results: pd.DataFrame) -> pd.DataFrame:
    """Mean (and spread over seeds) of held-out accuracy, inside and above the training range."""
    per_seed = results.groupby(["model", "params", "seed", "in_train_range"], sort=False)["accuracy"].mean()
    table = per_seed.groupby(["model", "params", "in_train_range"], sort=False).agg(["mean", "std"]).unstack()
    table.columns = [f"{'in_range' if r else 'above_range'}_{stat}" for stat, r in table.columns]
    return table.reset_index()


def main(config_path: str, out: str | None) -> pd.DataFrame:
    run = load_run_config(config_path)
    out_dir = Path(out) if out else Path("runs") / Path(config_path).stem
    results = run_config(run, out_dir)
    print(summary(results).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"results: {out_dir / 'results.csv'}")
    return results
