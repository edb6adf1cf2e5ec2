"""The three stages of a run, each a function of (run config, its directory, its inputs' directories,
a log, a progress callback, a metrics sink).

    train   supervised training of one preset for all seeds  -> checkpoint/, metrics.json, metrics.jsonl
    rl      on-policy RL from the trained model               -> checkpoint/, ladder.csv, rl_metrics.csv, metrics.jsonl

    eval    greedy accuracy per difficulty, test-time compute -> accuracy.csv, testtime.csv, testtime_summary.csv

Training and RL hand one row per (step, seed) to ``metrics`` (``scaling.track.Metrics``) at the end of
every chunk: ``metrics.jsonl`` and the sweep's trackers see the run as it happens.

A stage returns a small JSON-able summary (counts, seconds) that the sweep stores in ``done.json``;
``point_rows`` turns a point's finished stages into rows of the sweep's results table.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np
import pandas as pd

from scaling import checkpoint, io
from scaling.config import RunConfig
from scaling.errors import StageFailed
from scaling.evaluate import (
    LOSS_COLUMNS,
    accuracy_table,
    budget_rows,
    rethink_context_rows,
    sampling_rows,
    summarize,
    task_loss_table,
)
from scaling.plan import estimate_flops, model_config, train_seq_len
from scaling.rl_train import rl_train
from scaling.specs import flops_per_token, param_counts
from scaling.tasks import get_task
from scaling.track import Metrics
from scaling.train import checkpoint_meta, load_params, train

Log = Callable[[str], None]
Progress = Callable[[int, int], None]


def is_writer() -> bool:
    """Only process 0 of a multi-host job writes stage outputs (every process computes them)."""
    return jax.process_index() == 0


def write_table(df: pd.DataFrame, path_without_suffix: Path) -> None:
    """CSV and Parquet, each written atomically (by process 0 only)."""
    if is_writer():
        io.write_table(df, path_without_suffix)


def _finite_or_fail(values: np.ndarray, what: str, seeds) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        r, i = np.argwhere(bad)[0]
        raise StageFailed(f"non-finite {what} for seed {seeds[r]} at step {i}")


def train_stage(run: RunConfig, out: Path, inputs: list[Path], log: Log, progress: Progress, metrics: Metrics) -> dict:
    task, cfg, seeds = get_task(run.task), model_config(run, "train"), list(run.seeds)
    tokens_per_chunk = run.train.chunk_steps * run.train.batch_size * train_seq_len(run) * len(seeds)
    last = [time.perf_counter()]

    def on_chunk(done, total, m):
        progress(done, total)  # raises if the claim was lost: nothing of this chunk is written
        now, wall = time.perf_counter(), time.time()
        rate, last[0] = tokens_per_chunk / max(now - last[0], 1e-9), now
        rows = []
        for k, step in enumerate(m["step"]):
            for r, seed in enumerate(seeds):
                values = {name: float(m[name][r, k]) for name in ("loss", "grad_norm", "lr")}
                rows.append({"step": int(step), "seed": seed, "time": wall, **values, "tokens_per_s": rate})
        metrics.append(rows)
        log(f"chunk {done}/{total} loss per seed {np.round(m['loss'][:, -1], 4).tolist()}")

    t0 = time.perf_counter()
    # A checkpoint in this stage's directory made for another run (another version wrote it) is never trusted.
    ckpt = {"checkpoint_dir": out / "checkpoint", "restart_if_mismatched": True}
    res = train(cfg, task, run.train, seeds, **ckpt, on_chunk=on_chunk, log=log)
    _finite_or_fail(res.loss_RxN, "training loss", seeds)
    counts = param_counts(cfg)
    tokens = res.steps * run.train.batch_size * res.seq_len
    if is_writer():
        io.write_json(out / "metrics.json", {"seeds": seeds, "loss": res.loss_RxN}, indent=None)
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
    return load_params(stage_dir / "checkpoint", model_config(run, "eval"), get_task(run.task), run.seeds)


def rl_stage(run: RunConfig, out: Path, inputs: list[Path], log: Log, progress: Progress, metrics: Metrics) -> dict:
    task, cfg, seeds, rc = get_task(run.task), model_config(run, "rl"), list(run.seeds), run.rl

    def on_chunk(done, total, pass_rate, rows):
        progress(done, total)  # raises if the claim was lost: nothing of this chunk is written
        wall = time.time()
        metrics.append([{"step": row["step"], "seed": row["seed"], "time": wall, **row} for row in rows])
        log(f"chunk {done}/{total} rollout pass rate {pass_rate:.3f}")

    t0 = time.perf_counter()
    res = rl_train(cfg, _load(run, inputs[0]), task, rc, seeds, run.train.difficulties, run.eval, on_chunk=on_chunk)
    loss = res.metrics.pivot(index="seed", columns="step", values="loss").to_numpy()
    _finite_or_fail(loss, "RL loss", seeds)
    meta = checkpoint_meta(cfg, task, seeds) | {"layout": "params"}
    with checkpoint.Checkpoints(out / "checkpoint") as ckpt:
        ckpt.save(0, {"params": res.params_R}, meta)
    write_table(res.ladder, out / "ladder")
    write_table(res.metrics, out / "rl_metrics")
    prompts = rc.steps * rc.prompts_per_step
    return {
        "rl_prompts": prompts,
        "rl_completions": prompts * rc.group_size,
        "rl_flops": estimate_flops(run, "rl") / len(seeds),
        "seconds": time.perf_counter() - t0,
    }


def eval_stage(run: RunConfig, out: Path, inputs: list[Path], log: Log, progress: Progress, metrics: Metrics) -> dict:
    task, cfg, seeds, tt, ec = get_task(run.task), model_config(run, "eval"), list(run.seeds), run.testtime, run.eval
    t0 = time.perf_counter()
    params_R = _load(run, inputs[0])
    acc = accuracy_table(cfg, params_R, seeds, task, ec)
    if ec.samples:
        sampled = accuracy_table(cfg, params_R, seeds, task, ec, samples=ec.samples, temperature=ec.temperature)
        acc = pd.concat([acc, sampled])
    acc = acc.merge(task_loss_table(cfg, params_R, seeds, task, ec), on=["seed", "difficulty"])
    write_table(acc, out / "accuracy")
    progress(1, 1 + bool(tt.budgets or tt.ks or tt.rounds))
    log(f"greedy accuracy in {time.perf_counter() - t0:.1f}s")
    if tt.budgets or tt.ks or tt.rounds:
        ec = dataclasses.replace(ec, n_per_difficulty=tt.n_per_difficulty)
        parts = []
        if tt.budgets:
            parts.append(budget_rows(cfg, params_R, seeds, task, ec, tt.budgets))
        if tt.ks:
            parts.append(sampling_rows(cfg, params_R, seeds, task, ec, tt.ks, temperature=tt.temperature))
        if tt.rounds:
            parts.append(rethink_context_rows(cfg, params_R, seeds, task, ec, tt.rounds, temperature=tt.temperature))
        rows = pd.concat(parts, ignore_index=True)
        write_table(rows, out / "testtime")
        write_table(summarize(rows), out / "testtime_summary")
        progress(2, 2)
        log(f"test-time strategies in {time.perf_counter() - t0:.1f}s")
    return {"seconds": time.perf_counter() - t0}


STAGES = {"train": train_stage, "rl": rl_stage, "eval": eval_stage}


def point_rows(run: RunConfig, dirs: dict[str, Path], summaries: dict[str, dict]) -> pd.DataFrame:
    """Tidy rows of one point: one per (seed, difficulty, source, strategy, budget, k) with its accuracy.

    ``source`` is ``eval`` (the final model) or ``rl_ladder`` (the model after ``rl_prompts`` RL prompts).
    """
    train, rl = summaries["train"], summaries.get("rl", {})
    acc = pd.read_csv(dirs["eval"] / "accuracy.csv").assign(
        source="eval", budget=None, k=1, rl_prompts=rl.get("rl_prompts", 0)
    )
    parts = [acc.rename(columns={"accuracy": "value"})]
    if (dirs["eval"] / "testtime.csv").is_file():
        tt = pd.read_csv(dirs["eval"] / "testtime.csv")
        by = ["seed", "difficulty", "strategy", "budget", "k"]
        per = tt.groupby(by, as_index=False, dropna=False).agg(
            value=("correct", "mean"),
            n=("correct", "size"),
            thinking_tokens=("thinking_tokens", "mean"),
            total_tokens=("total_tokens", "mean"),
        )
        loss = acc.drop_duplicates(["seed", "difficulty"])[["seed", "difficulty", *LOSS_COLUMNS]]
        parts.append(
            per.merge(loss, on=["seed", "difficulty"]).assign(source="eval", rl_prompts=rl.get("rl_prompts", 0))
        )
    if "rl" in dirs:
        ladder = pd.read_csv(dirs["rl"] / "ladder.csv").rename(
            columns={"accuracy": "value", "prompts_seen": "rl_prompts"}
        )
        parts.append(ladder.assign(source="rl_ladder", budget=None, k=1))
    rows = pd.concat(parts, ignore_index=True)
    completions = rows["rl_prompts"] * (run.rl.group_size if "rl" in dirs else 0)
    history = io.read_json(dirs["train"] / "metrics.json", "training metrics")
    final_loss = {
        s: float(np.mean(loss[-max(1, len(loss) // 10) :])) for s, loss in zip(history["seeds"], history["loss"])
    }
    rows["budget"] = rows["budget"].astype("Int64")  # null where no thinking budget applies
    return rows.assign(
        metric="accuracy",
        task=get_task(run.task).name,
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
        train_loss=rows["seed"].map(final_loss),
    )
