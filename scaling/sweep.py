"""Execute a plan: cached, resumable stages shared among worker processes, then one results table.

Workers share the output directory (layout in ``scaling.store``): a worker claims a stage whose inputs
are done (``scaling.claims``), runs it, and records ``done.json`` or ``failed.json``; a sweep goes on past
a failed stage with every stage that does not need it. A multi-host job runs as one worker: process 0
claims and writes, every process computes each stage on the global mesh.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import yaml
from tqdm import tqdm

from scaling import claims, io, store, track
from scaling.errors import ScalingError
from scaling.plan import Plan, Stage, make_plan
from scaling.stages import STAGES, is_writer, point_rows, write_table
from scaling.store import corruption, failure_reason, seed_groups, stage_dir, stage_status

KINDS = ("train", "rl", "eval")  # the order stages run in


def _clear_partial(d: Path, kind: str) -> None:
    """Remove what a killed attempt left, keeping the training checkpoint (resumed chunk-exactly) and its
    metrics.jsonl (trimmed to the restored step by the stage), the
    logs and the claim files (and any writer's temporary file, whose name starts with a dot)."""
    for p in d.iterdir():
        if p.name in ("log.txt", "runs.jsonl", "settings.json") or p.name.startswith(("claim", ".")):
            continue
        if p.name in ("checkpoint", "metrics.jsonl") and kind == "train":
            continue
        shutil.rmtree(p) if p.is_dir() else p.unlink()


class OwnershipLost(Exception):
    """Another worker took this stage's claim over (this one was judged stale): stop without a record."""


@dataclass
class Attempt:
    """One process's attempt at a claimed stage: its records. Only the leader (the claim's holder; None
    on the other processes of a multi-host job) writes; each record carries the claim's token."""

    directory: Path
    claim: claims.Claim | None

    @property
    def leader(self) -> bool:
        return self.claim is not None

    def event(self, kind: str, **extra) -> None:
        """A line of ``runs.jsonl``: the attempt's start and its end (done, failed or lost)."""
        if self.leader:
            c = self.claim
            doc = {"token": c.token, "event": kind, "worker": c.worker, "host": claims.HOST, "pid": os.getpid()}
            io.append_text(self.directory / "runs.jsonl", io.dumps(doc | {"time": time.time()} | extra, indent=None))

    def mine(self) -> bool:
        """Whether the claim is still this worker's; read at every chunk, so a worker paused past its
        staleness learns at once."""
        return not self.claim.lost.is_set() and claims.owns(self.claim)

    def log(self, msg: str) -> None:
        if self.leader and self.mine():
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            io.append_text(self.directory / "log.txt", f"{stamp} [{self.claim.token[:8]}] {msg}\n")

    def check(self, name: str) -> None:
        """Raise OwnershipLost where another worker holds the claim now (on every process of a multi-host
        job together)."""
        lost = self.leader and not self.mine()
        if jax.process_count() > 1:
            lost = bool(_agree(int(lost)))
        if lost:
            raise OwnershipLost(f"{name}: claim taken over by another worker")


def execute(plan: Plan, stage: Stage, out: Path, claim: claims.Claim | None, bar: tqdm | None) -> bool:
    """Run one claimed stage; record done.json or failed.json. True if it succeeded.

    Every process of a multi-host job runs the stage; only the leader (which holds ``claim``) writes
    files. Each attempt appends its start and end, with the claim's token, to ``runs.jsonl``, and every
    log line carries the token, so a stage's history shows who computed it when."""
    d = stage_dir(out, stage.name)
    attempt, leader = Attempt(d, claim), claim is not None
    log = attempt.log

    def progress(done: int, total: int) -> None:
        attempt.check(stage.name)
        if bar is not None:
            bar.total, bar.n = total, done
            bar.refresh()

    if leader:
        if problem := corruption(out, stage.name):
            log(f"redoing {stage.name}: {problem}")
        _clear_partial(d, stage.kind)
        attempt.event("start")
        io.write_json(d / "settings.json", stage.settings)
    if bar is not None:
        bar.reset()
        bar.set_description(stage.name)
    log(f"start {stage.name} (worker {claim.worker if leader else '-'}, pid {os.getpid()})")
    inputs = [stage_dir(out, dep) for dep in stage.deps]
    metrics = None
    try:
        trackers = (
            track.open_trackers(plan.track, out, stage.name, stage.kind, stage.settings, plan.wandb)
            if leader and stage.kind != "eval"
            else []
        )
        metrics = track.Metrics(d / "metrics.jsonl", trackers, writer=leader)
        summary = STAGES[stage.kind](plan.runs[stage.name], d, inputs, log, progress, metrics)
        progress(1, 1)  # a last ownership check before the record
    except OwnershipLost as e:
        attempt.event("lost", reason=str(e))
        return False
    except Exception as e:  # recorded; the sweep goes on with the stages that do not need this one
        reason = f"{type(e).__name__}: {e}"
        log(f"failed: {reason}\n{traceback.format_exc()}")
        if leader:
            io.write_json(d / "failed.json", {"reason": reason, "worker": claim.worker})
            attempt.event("failed", reason=reason)
        return False
    finally:
        if metrics is not None:
            metrics.close()
    log(f"done in {summary.get('seconds', 0):.1f}s")
    if leader:
        io.write_json(d / "done.json", store.record(stage.name, summary, d))
        attempt.event("done")
    return True


def environment() -> dict:
    """Python and package versions, devices, host and git revision of this run."""
    import importlib.metadata as md
    import platform
    import subprocess

    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        rev = ""
    packages = ["jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "scipy", "pandas"]
    return {
        "python": platform.python_version(),
        "packages": {p: md.version(p) for p in packages},
        "devices": [str(d) for d in jax.devices()],
        "process_count": jax.process_count(),
        "host": claims.HOST,
        "git_revision": rev or None,
    }


def enable_compilation_cache() -> None:
    """Persistent XLA cache shared by runs and workers (``SCALING_JAX_CACHE``, default ~/.cache/scaling/jax)."""
    path = os.environ.get("SCALING_JAX_CACHE", str(Path.home() / ".cache" / "scaling" / "jax"))
    if path:
        jax.config.update("jax_compilation_cache_dir", path)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def write_plan(plan: Plan, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    io.atomic_write_text(out / "config.yaml", yaml.safe_dump(plan.raw, sort_keys=False))
    doc = {
        "source": plan.source,
        "axes": plan.axis_names,
        "points": [
            {
                "index": p.index,
                "axes": p.axes,
                "stages": p.stage_names,
                "seed_groups": [{"seeds": g.seeds, "used": g.used, "stages": g.stages} for g in p.groups],
                "config": dataclasses.asdict(p.run),
            }
            for p in plan.points
        ],
        "stages": {n: {"kind": s.kind, "deps": list(s.deps)} for n, s in plan.stages.items()},
    }
    io.write_json(out / "plan.json", doc)
    for name, stage in plan.stages.items():  # so that later plans find every seed group (store.seed_groups)
        if not (stage_dir(out, name) / "settings.json").is_file():
            io.write_json(stage_dir(out, name) / "settings.json", stage.settings)


def _agree(code: int) -> int:
    """Every process of a multi-host job takes process 0's decision (one stage runs on all hosts)."""
    if jax.process_count() == 1:
        return code
    from jax.experimental import multihost_utils

    return int(multihost_utils.broadcast_one_to_all(np.int32(code)))


def next_stage(plan: Plan, out: Path, names: list[str], final: dict[str, str], worker: int, stale_after: float):
    """(index in ``names``, claim) of a stage this worker has just claimed; index -1 to wait for others,
    -2 when all are final (done, failed, or blocked by a failed input). Updates ``final``."""
    for i, name in enumerate(names):
        if name in final:
            continue
        status = stage_status(out, name)
        deps = plan.stages[name].deps
        if status in ("done", "failed"):
            final[name] = status
        elif any(final.get(dep) in ("failed", "blocked") for dep in deps):
            final[name] = "blocked"
        elif all(final.get(dep) == "done" for dep in deps) and (
            claim := claims.try_claim(stage_dir(out, name), worker, stale_after)
        ):
            if (now := stage_status(out, name)) not in ("done", "failed"):  # not finished by another meanwhile
                return i, claim
            claims.release(claim)
            final[name] = now
    return (-2 if len(final) == len(names) else -1), None


def work(
    plan: Plan,
    out: Path,
    worker: int = 0,
    *,
    stale_after: float = 120.0,
    poll: float = 1.0,
    progress: bool = True,
    fail_fast: bool = False,
) -> dict[str, str]:
    """Compute every stage this worker can claim until all are done, failed or blocked by a failure
    (with ``fail_fast``, until this worker's first failed stage).

    In a multi-host job, process 0 claims and every process computes the claimed stage together."""
    names = list(plan.stages)
    # Workers start at different stages of each kind, so they rarely race for the same claim.
    names = names[worker % len(names) :] + names[: worker % len(names)]
    names.sort(key=lambda n: KINDS.index(plan.stages[n].kind))
    final: dict[str, str] = {}
    leader = is_writer()
    progress = progress and leader
    sweep_bar = tqdm(total=len(names), desc="sweep", unit="stage", disable=not progress, position=0)
    stage_bar = tqdm(total=1, desc="stage", unit="chunk", disable=not progress, position=1, leave=False)
    while True:
        i, claim = next_stage(plan, out, names, final, worker, stale_after) if leader else (0, None)
        if (i := _agree(i)) == -2:
            break
        if i == -1:
            time.sleep(poll)
            continue
        name = names[i]
        try:
            with claims.heartbeat(claim, stale_after / 4) if leader else contextlib.nullcontext():
                execute(plan, plan.stages[name], out, claim, stage_bar if progress else None)
        finally:
            if leader:
                claims.release(claim)
        status = stage_status(out, name)
        if status in ("done", "failed"):
            final[name] = status
        sweep_bar.n = len(final)
        sweep_bar.refresh()
        if fail_fast and _agree(int(status == "failed")):
            break
    stage_bar.close()
    sweep_bar.close()
    return final


def collect(plan: Plan, out: Path) -> tuple[pd.DataFrame, list[str]]:
    """The results table of every point whose stages are done, and a line per point left out. A point's
    rows are its seeds' rows of each seed group's stages."""
    tables, missing = [], []
    for p in plan.points:
        status = {n: stage_status(out, n) for n in p.stage_names}
        if any(s != "done" for s in status.values()):
            missing.append(f"point {p.index} ({p.axes}): " + ", ".join(f"{n} {s}" for n, s in status.items()))
            continue
        parts = []
        for g in p.groups:
            dirs = {k: stage_dir(out, n) for k, n in g.stages.items()}
            summaries = {k: io.read_json(dirs[k] / "done.json", "stage record") for k in dirs}
            rows = point_rows(p.run, dirs, summaries)
            parts.append(rows[rows["seed"].isin(g.used)])
        rows = pd.concat(parts, ignore_index=True)
        axes = {"point": p.index} | {f"axis:{k}": v for k, v in p.axes.items()}
        tables.append(pd.concat([pd.DataFrame(axes, index=rows.index), rows], axis=1))
    results = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    return results, missing


def failures(plan: Plan, out: Path) -> list[str]:
    return [
        f"{name}: {failure_reason(out, name)} (log: {stage_dir(out, name) / 'log.txt'})"
        for name in plan.stages
        if stage_status(out, name) == "failed"
    ]


def slurm_worker() -> tuple[int, int] | None:
    """(worker, workers) of a SLURM array task, from its environment."""
    if "SLURM_ARRAY_TASK_ID" not in os.environ:
        return None
    lo = int(os.environ.get("SLURM_ARRAY_TASK_MIN", 0))
    count = int(os.environ.get("SLURM_ARRAY_TASK_COUNT", 1))
    return int(os.environ["SLURM_ARRAY_TASK_ID"]) - lo, count


def maybe_initialize_distributed() -> None:
    """Join a multi-host JAX job when a cluster manager launched several processes of one job step
    (SLURM with more than one task, a multi-host TPU slice), or by hand: JAX_COORDINATOR_ADDRESS,
    JAX_NUM_PROCESSES and JAX_PROCESS_ID set. Process 0 then claims stages and writes files; every
    process computes each stage on the global device mesh."""
    multi_slurm = int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_ARRAY_TASK_ID" not in os.environ
    multi_tpu = "," in os.environ.get("TPU_WORKER_HOSTNAMES", "")
    if multi_slurm or multi_tpu or os.environ.get("JAX_COORDINATOR_ADDRESS"):
        # A hand-launched job names its size and rank (cluster managers are detected by JAX itself).
        n, rank = os.environ.get("JAX_NUM_PROCESSES"), os.environ.get("JAX_PROCESS_ID")
        jax.config.update("jax_cpu_collectives_implementation", "gloo")  # for CPU hosts; others ignore it
        jax.distributed.initialize(num_processes=int(n) if n else None, process_id=int(rank) if rank else None)


@dataclass
class SweepResult:
    """What a sweep computed: the results table, every stage's final status, the points left out."""

    results: pd.DataFrame
    final: dict[str, str] = field(default_factory=dict)  # stage -> done | failed | blocked
    missing: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every stage is done (none failed or was blocked by a failed input)."""
        return all(s == "done" for s in self.final.values())


def resolve_worker(worker: int | None, workers: int | None) -> tuple[int, int]:
    """(worker, workers) from the arguments, else a SLURM array's environment, else (0, 1)."""
    if worker is None and workers is None and (slurm := slurm_worker()) is not None:
        worker, workers = slurm
    worker, workers = worker or 0, workers or 1
    if not 0 <= worker < workers:
        raise ScalingError(f"--worker {worker} --workers {workers}: expected 0 <= worker < workers")
    return worker, workers


def run_sweep(
    config: str | Path,
    out: str | Path,
    overrides: list[str] = (),
    *,
    worker: int | None = None,
    workers: int | None = None,
    retry_failed: bool = False,
    progress: bool = True,
    stale_after: float = 120.0,
    fail_fast: bool = False,
    track: list[str] = (),
) -> SweepResult:
    """Plan, compute what is not cached, and write the results table. With ``fail_fast``, stop at this
    worker's first failed stage (the stages not reached stay pending); ``track`` adds trackers
    (``scaling.track``) to the config's."""
    out = Path(out)
    plan = make_plan(config, overrides, seed_groups(out), track)  # every config error surfaces here, before any compute
    worker, _ = resolve_worker(worker, workers)
    leader = is_writer()
    if leader:
        write_plan(plan, out)
        if retry_failed:
            for name in plan.stages:
                (stage_dir(out, name) / "failed.json").unlink(missing_ok=True)
        io.write_json(out / "environment.json", environment())
    _agree(0)  # followers start once the leader has written the plan
    enable_compilation_cache()
    t0 = time.perf_counter()
    reached = work(plan, out, worker, stale_after=stale_after, progress=progress, fail_fast=fail_fast)
    _agree(0)  # the leader's last done.json is written
    # Read back from disk, so every process of a multi-host job reports the same: a stage neither done
    # nor failed once the sweep is over was blocked by a failed input (or not reached, after --fail-fast).
    stopped = fail_fast and len(reached) < len(plan.stages)
    final = {
        n: s if (s := stage_status(out, n)) in ("done", "failed") else "pending" if stopped else "blocked"
        for n in plan.stages
    }
    results, missing = collect(plan, out)
    if not results.empty and leader:
        write_table(results, out / "results")
    if progress and leader:
        counts = {s: list(final.values()).count(s) for s in ("done", "failed", "blocked", "pending")}
        print(  # diagnostics on stderr, results on stdout
            f"sweep: {counts['done']} stages done, {counts['failed']} failed, {counts['blocked']} blocked"
            + (f", {counts['pending']} not reached (--fail-fast)" if stopped else "")
            + f" ({time.perf_counter() - t0:.0f}s in this process)",
            file=sys.stderr,
        )
        for line in failures(plan, out):
            print(f"  failed {line}", file=sys.stderr)
        for line in missing:
            print(f"  left out {line}", file=sys.stderr)
        if not results.empty:
            print(f"results: {out / 'results.csv'} ({len(results)} rows)")
    return SweepResult(results, final, missing)
