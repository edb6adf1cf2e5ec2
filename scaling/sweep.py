"""Execute a plan: cached, resumable stages shared among worker processes, then one results table.

Layout of the output directory:
    config.yaml, plan.json         the sweep as run (after --set) and its points and stages
    environment.json               package versions, devices, git revision
    stages/<kind>-<key>/           one directory per stage:
        settings.json              what its key hashes
        log.txt, runs.jsonl        a log line per chunk; one line per attempt (worker, pid, start)
        claim                      held by the worker computing it (stale claims are taken over)
        done.json | failed.json    written last and atomically: a stage without done.json is redone
    results.csv, results.parquet   tidy: one row per (point, seed, difficulty, source, strategy, budget, k)

Workers share the directory: a stage is computed by whoever first creates its ``claim`` file
(``O_CREAT | O_EXCL``), only once its inputs are done. A claim whose process is gone (same host) or
whose heartbeat is older than ``stale_after`` seconds is taken over, so a killed worker's stage is redone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import threading
import time
import traceback
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from tqdm import tqdm

from scaling.laws.law import atomic_write_text
from scaling.plan import Plan, Stage, describe, make_plan
from scaling.stages import is_writer

HOST = socket.gethostname()


def stage_dir(out: Path, name: str) -> Path:
    return out / "stages" / name


def stage_status(out: Path, name: str) -> str:
    d = stage_dir(out, name)
    if (d / "done.json").is_file():
        return "done"
    if (d / "failed.json").is_file():
        return "failed"
    if (d / "claim").is_file():
        return "claimed"
    return "pending"


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale(claim: Path, stale_after: float) -> bool:
    try:
        age = time.time() - claim.stat().st_mtime
        holder = _read_json(claim)
    except FileNotFoundError:
        return True
    except json.JSONDecodeError:  # being written right now, or cut short by a kill between create and write
        return age > 5.0
    if holder.get("host") == HOST and not _pid_alive(int(holder.get("pid", -1))):
        return True
    return age > stale_after


def try_claim(d: Path, worker: int, stale_after: float) -> bool:
    """Atomically claim stage directory ``d``; take over a stale claim. True if this process holds it."""
    d.mkdir(parents=True, exist_ok=True)
    claim = d / "claim"
    for _ in range(2):
        try:
            fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            if not _stale(claim, stale_after):
                return False
            with contextlib.suppress(FileNotFoundError):  # only one taker wins the rename
                claim.rename(d / f"claim.stale.{uuid.uuid4().hex[:8]}")
            continue
        with os.fdopen(fd, "w") as f:
            json.dump({"worker": worker, "host": HOST, "pid": os.getpid(), "time": time.time()}, f)
        return True
    return False


@contextlib.contextmanager
def heartbeat(claim: Path, every: float):
    """Touch ``claim`` every ``every`` seconds while the body runs."""
    stop = threading.Event()

    def beat():
        while not stop.wait(every):
            with contextlib.suppress(FileNotFoundError):
                os.utime(claim)

    t = threading.Thread(target=beat, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join()


def _clear_partial(d: Path, kind: str) -> None:
    """Remove what a killed attempt left, keeping the training checkpoint (resumed chunk-exactly) and logs."""
    import shutil

    for p in d.iterdir():
        if p.name in ("claim", "log.txt", "runs.jsonl") or p.name.startswith("claim.stale"):
            continue
        if p.name == "checkpoint" and kind == "train":
            continue
        shutil.rmtree(p) if p.is_dir() else p.unlink()


def execute(plan: Plan, stage: Stage, out: Path, worker: int, bar: tqdm | None) -> bool:
    """Run one claimed stage; record done.json or failed.json. True if it succeeded.

    Every process of a multi-host job runs the stage; only the leader writes files."""
    from scaling.stages import STAGES

    d = stage_dir(out, stage.name)
    leader = is_writer()
    if leader:
        _clear_partial(d, stage.kind)
        with open(d / "runs.jsonl", "a") as f:
            f.write(json.dumps({"worker": worker, "host": HOST, "pid": os.getpid(), "start": time.time()}) + "\n")
        atomic_write_text(d / "settings.json", json.dumps(stage.settings, indent=1, default=str) + "\n")

    def log(msg: str) -> None:
        if leader:
            with open(d / "log.txt", "a") as f:
                f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}\n")

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.total, bar.n = total, done
            bar.refresh()

    if bar is not None:
        bar.reset()
        bar.set_description(stage.name)
    log(f"start {stage.name} (worker {worker}, pid {os.getpid()})")
    inputs = [stage_dir(out, dep) for dep in stage.deps]
    try:
        summary = STAGES[stage.kind](plan.runs[stage.name], d, inputs, log, progress)
    except Exception as e:  # recorded; the sweep goes on with the stages that do not need this one
        reason = f"{type(e).__name__}: {e}"
        log(f"failed: {reason}\n{traceback.format_exc()}")
        if leader:
            atomic_write_text(d / "failed.json", json.dumps({"reason": reason, "worker": worker}) + "\n")
        return False
    log(f"done in {summary.get('seconds', 0):.1f}s")
    if leader:
        atomic_write_text(d / "done.json", json.dumps(summary) + "\n")
    return True


def environment() -> dict:
    import importlib.metadata as md
    import platform
    import subprocess

    import jax

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
        "host": HOST,
        "git_revision": rev or None,
    }


def enable_compilation_cache() -> None:
    """Persistent XLA cache shared by runs and workers (``SCALING_JAX_CACHE``, default ~/.cache/scaling/jax)."""
    import jax

    path = os.environ.get("SCALING_JAX_CACHE", str(Path.home() / ".cache" / "scaling" / "jax"))
    if path:
        jax.config.update("jax_compilation_cache_dir", path)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def write_plan(plan: Plan, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", yaml.safe_dump(plan.raw, sort_keys=False))
    doc = {
        "source": plan.source,
        "axes": plan.axis_names,
        "points": [
            {"index": p.index, "axes": p.axes, "stages": p.stages, "config": dataclasses.asdict(p.run)}
            for p in plan.points
        ],
        "stages": {n: {"kind": s.kind, "deps": list(s.deps)} for n, s in plan.stages.items()},
    }
    atomic_write_text(out / "plan.json", json.dumps(doc, indent=1, default=str) + "\n")


def _agree(code: int) -> int:
    """Every process of a multi-host job takes process 0's decision (one stage runs on all hosts)."""
    import jax

    if jax.process_count() == 1:
        return code
    from jax.experimental import multihost_utils

    return int(multihost_utils.broadcast_one_to_all(np.int32(code)))


def next_stage(plan: Plan, out: Path, names: list[str], final: dict[str, str], worker: int, stale_after: float):
    """Index in ``names`` of a stage this worker has just claimed, -1 to wait for others, -2 when all are
    final (done, failed, or blocked by a failed input). Updates ``final``."""
    for i, name in enumerate(names):
        if name in final:
            continue
        status = stage_status(out, name)
        deps = plan.stages[name].deps
        if status in ("done", "failed"):
            final[name] = status
        elif any(final.get(dep) in ("failed", "blocked") for dep in deps):
            final[name] = "blocked"
        elif all(final.get(dep) == "done" for dep in deps) and try_claim(stage_dir(out, name), worker, stale_after):
            if stage_status(out, name) == "claimed":  # not finished by another worker meanwhile
                return i
            (stage_dir(out, name) / "claim").unlink(missing_ok=True)
            final[name] = stage_status(out, name)
    return -2 if len(final) == len(names) else -1


def work(
    plan: Plan,
    out: Path,
    worker: int = 0,
    stale_after: float = 120.0,
    poll: float = 1.0,
    progress: bool = True,
) -> dict[str, str]:
    """Compute every stage this worker can claim until all are done, failed or blocked by a failure.

    In a multi-host job, process 0 claims and every process computes the claimed stage together."""
    names = list(plan.stages)
    # Workers start at different stages of each kind, so they rarely race for the same claim.
    names = names[worker % len(names) :] + names[: worker % len(names)]
    names.sort(key=lambda n: ["train", "rl", "eval"].index(plan.stages[n].kind))
    final: dict[str, str] = {}
    leader = is_writer()
    progress = progress and leader
    sweep_bar = tqdm(total=len(names), desc="sweep", unit="stage", disable=not progress, position=0)
    stage_bar = tqdm(total=1, desc="stage", unit="chunk", disable=not progress, position=1, leave=False)
    while (i := _agree(next_stage(plan, out, names, final, worker, stale_after) if leader else 0)) != -2:
        if i == -1:
            time.sleep(poll)
            continue
        name = names[i]
        claim = stage_dir(out, name) / "claim"
        try:
            with heartbeat(claim, stale_after / 4) if leader else contextlib.nullcontext():
                execute(plan, plan.stages[name], out, worker, stage_bar if progress else None)
        finally:
            if leader:
                claim.unlink(missing_ok=True)
        final[name] = stage_status(out, name)
        sweep_bar.n = len(final)
        sweep_bar.refresh()
    stage_bar.close()
    sweep_bar.close()
    return final


def collect(plan: Plan, out: Path) -> tuple[pd.DataFrame, list[str]]:
    """The results table of every point whose stages are done, and a line per point left out."""
    from scaling.stages import result_rows

    tables, missing = [], []
    for p in plan.points:
        status = {k: stage_status(out, n) for k, n in p.stages.items()}
        if any(s != "done" for s in status.values()):
            missing.append(f"point {p.index} ({p.axes}): " + ", ".join(f"{k} {s}" for k, s in status.items()))
            continue
        dirs = {k: stage_dir(out, n) for k, n in p.stages.items()}
        summaries = {k: _read_json(dirs[k] / "done.json") for k in dirs}
        rows = result_rows(p.run, dirs, summaries)
        axes = {"point": p.index} | {f"axis:{k}": v for k, v in p.axes.items()}
        tables.append(pd.concat([pd.DataFrame(axes, index=rows.index), rows], axis=1))
    results = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    return results, missing


def failures(plan: Plan, out: Path) -> list[str]:
    lines = []
    for name in plan.stages:
        f = stage_dir(out, name) / "failed.json"
        if f.is_file():
            lines.append(f"{name}: {_read_json(f)['reason']} (log: {stage_dir(out, name) / 'log.txt'})")
    return lines


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
    import jax

    multi_slurm = int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_ARRAY_TASK_ID" not in os.environ
    multi_tpu = "," in os.environ.get("TPU_WORKER_HOSTNAMES", "")
    if multi_slurm or multi_tpu or os.environ.get("JAX_COORDINATOR_ADDRESS"):
        # A hand-launched job names its size and rank (cluster managers are detected by JAX itself).
        n, rank = os.environ.get("JAX_NUM_PROCESSES"), os.environ.get("JAX_PROCESS_ID")
        jax.config.update("jax_cpu_collectives_implementation", "gloo")  # for CPU hosts; others ignore it
        jax.distributed.initialize(num_processes=int(n) if n else None, process_id=int(rank) if rank else None)


def run_sweep(
    config: str | Path,
    out: str | Path,
    overrides: list[str] = (),
    worker: int | None = None,
    workers: int | None = None,
    retry_failed: bool = False,
    dry_run: bool = False,
    progress: bool = True,
    stale_after: float = 120.0,
) -> pd.DataFrame | None:
    """Plan, compute what is not cached, and write the results table. Returns it (None on a dry run)."""
    plan = make_plan(config, overrides)  # every config error surfaces here, before any compute
    out = Path(out)
    if worker is None and workers is None and (slurm := slurm_worker()) is not None:
        worker, workers = slurm
    worker, workers = worker or 0, workers or 1
    if not 0 <= worker < workers:
        from scaling.errors import ScalingError

        raise ScalingError(f"--worker {worker} --workers {workers}: expected 0 <= worker < workers")
    if dry_run:
        print(describe(plan, {n: stage_status(out, n) for n in plan.stages}))
        return None
    leader = is_writer()
    if leader:
        write_plan(plan, out)
        if retry_failed:
            for name in plan.stages:
                (stage_dir(out, name) / "failed.json").unlink(missing_ok=True)
        atomic_write_text(out / "environment.json", json.dumps(environment(), indent=1) + "\n")
    _agree(0)  # followers start once the leader has written the plan
    enable_compilation_cache()
    t0 = time.perf_counter()
    final = work(plan, out, worker, stale_after=stale_after, progress=progress)
    _agree(0)  # the leader's last done.json is written
    results, missing = collect(plan, out)
    if not results.empty and leader:
        from scaling.stages import write_table

        write_table(results, out / "results")
    if progress and leader:
        counts = {s: list(final.values()).count(s) for s in ("done", "failed", "blocked")}
        print(
            f"sweep: {counts['done']} stages done, {counts['failed']} failed, {counts['blocked']} blocked "
            f"({time.perf_counter() - t0:.0f}s in this process)"
        )
        for line in failures(plan, out):
            print(f"  failed {line}")
        for line in missing:
            print(f"  left out {line}")
        if not results.empty:
            print(f"results: {out / 'results.csv'} ({len(results)} rows)")
    return results


def status_text(out: str | Path) -> str:
    """``scaling status DIR``: stage counts by kind and status, failures, points with results."""
    from scaling.errors import ScalingError

    out = Path(out)
    if not (out / "plan.json").is_file():
        raise ScalingError(f"{out}: no plan.json (not a sweep output directory)")
    doc = _read_json(out / "plan.json")
    table: dict[str, dict[str, int]] = {}
    lines = []
    for name, s in doc["stages"].items():
        st = stage_status(out, name)
        table.setdefault(s["kind"], {}).setdefault(st, 0)
        table[s["kind"]][st] += 1
        if st == "failed":
            lines.append(f"  failed {name}: {_read_json(stage_dir(out, name) / 'failed.json')['reason']}")
        if st == "claimed":
            try:
                holder = _read_json(stage_dir(out, name) / "claim")
                lines.append(f"  running {name}: worker {holder['worker']} on {holder['host']} (pid {holder['pid']})")
            except (FileNotFoundError, json.JSONDecodeError):  # released or being written just now
                lines.append(f"  running {name}")
    done_points = sum(all(stage_status(out, n) == "done" for n in p["stages"].values()) for p in doc["points"])
    head = [f"{out}: {len(doc['points'])} points ({done_points} complete), {len(doc['stages'])} stages"]
    for kind, counts in table.items():
        head.append(f"  {kind:6s} " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    return "\n".join(head + lines)
