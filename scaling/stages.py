"""The three stages of a run, each a function of (run config, its directory, its inputs' directories).

    train   supervised training of one preset for all seeds  -> checkpoint/, metrics.json
    rl      on-policy RL from the trained model               -> checkpoint/, ladder.csv, rl_metrics.csv
    eval    greedy accuracy per difficulty, test-time compute -> accuracy.csv, testtime.csv, testtime_summary.csv

A stage returns a small JSON-able summary (counts, seconds) that the sweep stores in ``done.json``;
``result_rows`` turns a point's finished stages into rows of the sweep's results table.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from scaling.config import RunConfig
from scaling.errors import ScalingError
from scaling.evaluate import accuracy_table, budget_rows, max_new_tokens, sampling_rows, summarize
from scaling.laws.law import atomic_write_text
from scaling.model import ModelConfig, flops_per_token, get_preset, param_counts
from scaling.tasks import get_task

Log = Callable[[str], None]
Progress = Callable[[int, int], None]


class StageFailed(ScalingError):
    """A stage ran but its result is unusable (non-finite loss, divergence)."""


def is_writer() -> bool:
    """Only process 0 of a multi-host job writes stage outputs (every process computes them)."""
    import jax

    return jax.process_index() == 0


def write_table(df: pd.DataFrame, path_without_suffix: Path) -> None:
    """CSV and Parquet, each written atomically (by process 0 only)."""
    if not is_writer():
        return
    atomic_write_text(path_without_suffix.with_suffix(".csv"), df.to_csv(index=False))
    tmp = path_without_suffix.with_suffix(".parquet.tmp")
    df.to_parquet(tmp, index=False)
    tmp.replace(path_without_suffix.with_suffix(".parquet"))


def train_seq_len(run: RunConfig) -> int:
    lo, hi = run.train.difficulties
    return get_task(run.task).seq_len(range(lo, hi + 1))


def model_max_len(run: RunConfig) -> int:
    """Longest sequence any stage of ``run`` decodes or trains on (sets the KV-cache length)."""
    task = get_task(run.task)
    lo, hi = run.eval.difficulties
    if run.rl is not None and run.rl.difficulties is not None:
        lo, hi = min(lo, run.rl.difficulties[0]), max(hi, run.rl.difficulties[1])
    lo, hi = min(lo, run.train.difficulties[0]), max(hi, run.train.difficulties[1])
    prompt = max(task.widths(d)[0] + 1 for d in range(lo, hi + 1))
    answer = max(task.widths(d)[2] for d in range(lo, hi + 1)) + 2
    budgets = max(run.testtime.budgets, default=0) + answer
    return max(train_seq_len(run), prompt + max(max_new_tokens(task, range(lo, hi + 1)), budgets))


def model_config(run: RunConfig, kind: str) -> ModelConfig:
    # Training needs only its sequence length; the cache length of decoding stages does not
    # change the parameters (rotary positions), so one trained model serves every eval setting.
    return get_preset(run.models[0], max_len=train_seq_len(run) if kind == "train" else model_max_len(run))


def estimate_flops(run: RunConfig, kind: str) -> float:
    """Model FLOPs of a stage over all seeds (``scaling.model.flops_per_token`` convention)."""
    cfg, S = model_config(run, kind), len(run.seeds)
    if kind == "train":
        from scaling.train import total_steps

        T = train_seq_len(run)
        return S * total_steps(run.train, cfg, T) * run.train.batch_size * T * flops_per_token(cfg, T)["train"]
    ec = run.eval
    levels = range(ec.difficulties[0], ec.difficulties[1] + 1)
    L = model_max_len(run)
    eval_tokens = len(levels) * ec.n_per_difficulty * L * (1 + ec.samples)
    if kind == "rl":
        rc = run.rl
        fwd = flops_per_token(cfg, L)["forward"]
        rollout = rc.prompts_per_step * rc.group_size * L
        per_step = rollout * fwd * (1 + 3 * rc.inner_epochs)
        return S * (rc.steps * per_step + len(rc.ladder_volumes()) * eval_tokens * fwd)
    tt = run.testtime
    tt_tokens = len(levels) * tt.n_per_difficulty * L * (bool(tt.budgets) + max(tt.ks, default=0))
    return S * (eval_tokens + tt_tokens) * flops_per_token(cfg, L)["forward"]


def _finite_or_fail(values: np.ndarray, what: str, seeds) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        s, i = np.argwhere(bad)[0]
        raise StageFailed(f"non-finite {what} for seed {seeds[s]} at step {i}")


def train_stage(run: RunConfig, out: Path, inputs: list[Path], log: Log, progress: Progress) -> dict:
    from scaling.train import train

    task, cfg, seeds = get_task(run.task), model_config(run, "train"), list(run.seeds)

    def on_chunk(done, total, loss):
        progress(done, total)
        log(f"chunk {done}/{total} loss per seed {np.round(loss[:, -1], 4).tolist()}")

    t0 = time.perf_counter()
    res = train(cfg, task, run.train, seeds, checkpoint_dir=out / "checkpoint", on_chunk=on_chunk)
    _finite_or_fail(res.loss_SxN, "training loss", seeds)
    counts = param_counts(cfg)
    tokens = res.steps * run.train.batch_size * res.seq_len
    if is_writer():
        atomic_write_text(out / "metrics.json", json.dumps({"seeds": seeds, "loss": res.loss_SxN.tolist()}) + "\n")
    return {
        "params": counts["total"],
        "non_embedding_params": counts["non_embedding"],
        "train_steps": res.steps,
        "train_samples": res.steps * run.train.batch_size,
        "train_tokens": tokens,
        "train_flops": flops_per_token(cfg, res.seq_len)["train"] * tokens,
        "seconds": time.perf_counter() - t0,
    }


def _load(run: RunConfig, stage_dir: Path):
    from scaling.train import load_params

    return load_params(stage_dir / "checkpoint", model_config(run, "eval"), get_task(run.task), run.seeds)


def rl_stage(run: RunConfig, out: Path, inputs: list[Path], log: Log, progress: Progress) -> dict:
    from scaling.checkpoint import save
    from scaling.rl_train import rl_train
    from scaling.train import checkpoint_meta

    task, cfg, seeds, rc = get_task(run.task), model_config(run, "rl"), list(run.seeds), run.rl

    def on_chunk(done, total, pass_rate):
        progress(done, total)
        log(f"chunk {done}/{total} rollout pass rate {pass_rate:.3f}")

    t0 = time.perf_counter()
    res = rl_train(cfg, _load(run, inputs[0]), task, rc, seeds, run.train.difficulties, run.eval, on_chunk=on_chunk)
    loss = res.metrics.pivot(index="seed", columns="step", values="loss").to_numpy()
    _finite_or_fail(loss, "RL loss", seeds)
    meta = checkpoint_meta(cfg, task, seeds) | {"layout": "params"}
    save(out / "checkpoint", 0, {"params": res.params_S}, loss, meta)
    write_table(res.ladder, out / "ladder")
    write_table(res.metrics, out / "rl_metrics")
    prompts = rc.steps * rc.prompts_per_step
    return {
        "rl_prompts": prompts,
        "rl_completions": prompts * rc.group_size,
        "rl_flops": estimate_flops(run, "rl") / len(seeds),
        "seconds": time.perf_counter() - t0,
    }


def eval_stage(run: RunConfig, out: Path, inputs: list[Path], log: Log, progress: Progress) -> dict:
    task, cfg, seeds, tt = get_task(run.task), model_config(run, "eval"), list(run.seeds), run.testtime
    t0 = time.perf_counter()
    params_S = _load(run, inputs[0])
    acc = accuracy_table(cfg, params_S, seeds, task, run.eval)
    if run.eval.samples:
        ec = run.eval
        acc = pd.concat(
            [acc, accuracy_table(cfg, params_S, seeds, task, ec, samples=ec.samples, temperature=ec.temperature)]
        )
    write_table(acc, out / "accuracy")
    progress(1, 1 + bool(tt.budgets or tt.ks))
    log(f"greedy accuracy in {time.perf_counter() - t0:.1f}s")
    if tt.budgets or tt.ks:
        ec = dataclasses.replace(run.eval, n_per_difficulty=tt.n_per_difficulty)
        parts = []
        if tt.budgets:
            parts.append(budget_rows(cfg, params_S, seeds, task, ec, tt.budgets))
        if tt.ks:
            parts.append(sampling_rows(cfg, params_S, seeds, task, ec, tt.ks, tt.temperature))
        rows = pd.concat(parts, ignore_index=True)
        write_table(rows, out / "testtime")
        write_table(summarize(rows), out / "testtime_summary")
        progress(2, 2)
        log(f"test-time strategies in {time.perf_counter() - t0:.1f}s")
    return {"seconds": time.perf_counter() - t0}


STAGES = {"train": train_stage, "rl": rl_stage, "eval": eval_stage}


def result_rows(run: RunConfig, dirs: dict[str, Path], summaries: dict[str, dict]) -> pd.DataFrame:
    """Tidy rows of one point: one per (seed, difficulty, source, strategy, budget, k) with its accuracy.

    ``source`` is ``eval`` (the final model) or ``rl_ladder`` (the model after ``rl_prompts`` RL prompts).
    """
    train, rl = summaries["train"], summaries.get("rl", {})
    acc = pd.read_csv(dirs["eval"] / "accuracy.csv").assign(
        source="eval", budget=-1, k=1, rl_prompts=rl.get("rl_prompts", 0)
    )
    parts = [acc.rename(columns={"accuracy": "value"})]
    if (dirs["eval"] / "testtime.csv").is_file():
        tt = pd.read_csv(dirs["eval"] / "testtime.csv")
        by = ["seed", "difficulty", "strategy", "budget", "k"]
        per = tt.groupby(by, as_index=False).agg(
            value=("correct", "mean"),
            n=("correct", "size"),
            thinking_tokens=("thinking_tokens", "mean"),
            total_tokens=("total_tokens", "mean"),
        )
        parts.append(per.assign(source="eval", rl_prompts=rl.get("rl_prompts", 0)))
    if "rl" in dirs:
        ladder = pd.read_csv(dirs["rl"] / "ladder.csv").rename(
            columns={"accuracy": "value", "prompts_seen": "rl_prompts"}
        )
        parts.append(ladder.assign(source="rl_ladder", budget=-1, k=1))
    rows = pd.concat(parts, ignore_index=True)
    completions = rows["rl_prompts"] * (run.rl.group_size if "rl" in dirs else 0)
    return rows.assign(
        metric="accuracy",
        task=run.task,
        model=run.models[0],
        params=train["params"],
        non_embedding_params=train["non_embedding_params"],
        train_steps=train["train_steps"],
        train_samples=train["train_samples"],
        train_tokens=train["train_tokens"],
        train_flops=train["train_flops"],
        rl_completions=completions,
        rl_flops=rl.get("rl_flops", 0.0) * rows["rl_prompts"] / max(rl.get("rl_prompts", 1), 1),
        in_train_range=rows["difficulty"].between(*run.train.difficulties),
    )


def range_table(rows: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Mean and spread over seeds of accuracy inside and above the training range, per ``by``."""
    per_seed = rows.groupby([*by, "in_train_range", "seed"], sort=False, dropna=False)["value"].mean()
    table = per_seed.groupby([*by, "in_train_range"], sort=False, dropna=False).agg(["mean", "std"])
    table = table.unstack("in_train_range")
    table.columns = [f"{'in_range' if inside else 'above_range'}_{stat}" for stat, inside in table.columns]
    order = [c for c in ("in_range_mean", "in_range_std", "above_range_mean", "above_range_std") if c in table]
    return table[order].reset_index()


def summary(results: pd.DataFrame) -> pd.DataFrame:
    """Final greedy accuracy per point (mean and spread over seeds), inside and above the training range."""
    greedy = results[(results["source"] == "eval") & (results["strategy"] == "greedy")]
    axes = [c for c in results.columns if c.startswith("axis:") and c != "axis:models"]
    return range_table(greedy, ["point", "model", "params", *axes])
