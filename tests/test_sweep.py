"""Sweeps: config validation, stage sharing, kill-and-resume, two workers, failures, compile counts."""

import contextlib
import itertools
import json
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scaling import io
from scaling.config import ConfigError
from scaling.errors import ScalingError
from scaling.plan import make_plan
from scaling.store import status_doc, status_text
from scaling.sweep import run_sweep
from scaling.track import read_metrics
from tests.conftest import documented_json_fields, json_keys

SWEEP = """
task: sum
models: [d32, d48]
seeds: [0, 1]
train: {steps: 40, batch_size: 16, chunk_steps: 10, difficulties: [1, 2]}
eval: {difficulties: [1, 3], n_per_difficulty: 8}
rl: {prompts: 16, prompts_per_step: 4, group_size: 2, chunk_steps: 2, ladder_points: 2}
axes:
  rl.reward_flip: [0.0, 0.2]
"""


RUNNING_FIELDS = {"worker", "host", "pid", "latest", "step", "metrics", "steps_per_s", "seconds_since"}


def write(tmp_path: Path, text: str, name: str = "sweep.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def scaling_cli(*args, timeout=600, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scaling", *map(str, args)], capture_output=True, text=True, timeout=timeout, **kw
    )


def runs_per_stage(out: Path) -> dict[str, int]:
    """Attempts per stage directory (its ``start`` records)."""
    return {
        d.name: sum(json.loads(line)["event"] == "start" for line in open(d / "runs.jsonl"))
        for d in (out / "stages").iterdir()
        if (d / "runs.jsonl").is_file()
    }


def test_plan_shares_upstream_stages_and_expands_helpers(tmp_path):
    plan = base_plan = make_plan(write(tmp_path, SWEEP))
    assert len(plan.points) == 4 and plan.axis_names == ["models", "rl.reward_flip"]
    kinds = [s.kind for s in plan.stages.values()]
    assert kinds.count("train") == 2 and kinds.count("rl") == 4 and kinds.count("eval") == 4
    # one supervised model per preset serves both reward-noise levels
    assert (
        plan.points[0].groups[0].stages["train"]
        == plan.points[1].groups[0].stages["train"]
        != plan.points[2].groups[0].stages["train"]
    )
    text = SWEEP.replace("rl.reward_flip: [0.0, 0.2]", "train.steps: {logspace: [10, 1000, 3]}")
    plan = make_plan(write(tmp_path, text + "zip:\n  train.lr: [0.001, 0.003]\n  train.batch_size: [8, 16]\n"))
    assert sorted({p.run.train.steps for p in plan.points}) == [10, 100, 1000]
    typed = make_plan(write(tmp_path, SWEEP), ["axes.rl.reward_flip=[0, 1e-1]"])  # YAML reads 1e-1 as a string
    assert [p.axes["rl.reward_flip"] for p in typed.points[:2]] == [0.0, 0.1]
    assert all(isinstance(p.axes["rl.reward_flip"], float) for p in typed.points)
    from scaling import specs

    for revision in ("ARCHITECTURE", "CHECKPOINT_FORMAT"):  # a new layout on disk: every stage is new
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(f"scaling.plan.{revision}", getattr(specs, revision) + 1)
            assert not set(make_plan(write(tmp_path, SWEEP)).stages) & set(base_plan.stages), revision
    assert not set(make_plan(write(tmp_path, SWEEP + "positions: none\n")).stages) & set(base_plan.stages)
    assert set(make_plan(write(tmp_path, SWEEP + "positions: rope\n")).stages) == set(base_plan.stages)  # the default
    assert not set(make_plan(write(tmp_path, SWEEP + "init: fan_in\n")).stages) & set(base_plan.stages)
    assert set(make_plan(write(tmp_path, SWEEP + "init: normal\n")).stages) == set(base_plan.stages)
    assert {(p.run.train.lr, p.run.train.batch_size) for p in plan.points} == {(0.001, 8), (0.003, 16)}
    assert len(plan.points) == 2 * 3 * 2
    only = make_plan(write(tmp_path, SWEEP), ["rl.models=[d48]"])  # RL for some presets only
    assert [sorted(p.groups[0].stages) for p in only.points] == [["eval", "train"]] * 2 + [["eval", "rl", "train"]] * 2
    assert (
        only.points[2].groups[0].stages["rl"] == base_plan.points[2].groups[0].stages["rl"]
    )  # the selection is not hashed
    # --set overrides a setting and changes the stage keys that read it
    other = make_plan(write(tmp_path, SWEEP), ["eval.n_per_difficulty=16"])
    base = make_plan(write(tmp_path, SWEEP))
    assert other.points[0].run.eval.n_per_difficulty == 16
    assert other.points[0].groups[0].stages["train"] == base.points[0].groups[0].stages["train"]
    assert other.points[0].groups[0].stages["eval"] != base.points[0].groups[0].stages["eval"]
    # an axis is overridden as a whole (its key is a setting path); a swept setting cannot be set alone
    axis = make_plan(write(tmp_path, SWEEP), ["axes.rl.reward_flip=[0.1]"])
    assert {p.run.rl.reward_flip for p in axis.points} == {0.1}
    with pytest.raises(ConfigError, match=r"swept by axes.rl.reward_flip; override the sweep instead"):
        make_plan(write(tmp_path, SWEEP), ["rl.reward_flip=0.1"])


@pytest.mark.parametrize(
    "text, overrides, message",
    [
        ("task: sum\nmodels: [d32\n", [], r"sweep.yaml: invalid YAML"),
        (
            SWEEP.replace("chunk_steps: 10", "chunk_stesp: 10"),
            [],
            r"train.chunk_stesp: unknown key \(did you mean 'chunk_steps'\?\)",
        ),
        (SWEEP.replace("batch_size: 16", "batch_size: sixteen"), [], r"train.batch_size: expected int, got 'sixteen'"),
        (SWEEP.replace("[0.0, 0.2]", "[]"), [], r"axes: rl.reward_flip: empty axis"),
        (
            SWEEP.replace("rl.reward_flip", "rl.reward_flp"),
            [],
            r"'rl.reward_flp' names no setting \(did you mean 'rl.reward_flip'\?\)",
        ),
        (
            SWEEP.replace("[0.0, 0.2]", "[0.0, 1.5]"),
            [],
            r"at models=d32, rl.reward_flip=1.5: rl.reward_flip: expected a fraction",
        ),
        (SWEEP.replace("[0.0, 0.2]", "{logspace: [0, 1, 3]}"), [], r"logspace: expected \[lo, hi, n\]"),
        (SWEEP, ["train.steps=-1"], r"train.steps: expected an integer >= 1, got -1"),
        (SWEEP, ["train.stepz=3"], r"--set: 'train.stepz' names no setting"),
        (SWEEP, ["train.steps"], r"--set 'train.steps': expected key.path=value"),
    ],
)
def test_bad_sweep_configs_name_file_key_and_expectation(tmp_path, text, overrides, message):
    with pytest.raises(ConfigError, match=message):
        make_plan(write(tmp_path, text), overrides)


def test_cli_reports_config_errors_without_traceback(tmp_path):
    r = scaling_cli("run", write(tmp_path, SWEEP.replace("[0.0, 0.2]", "[]")), "--out", tmp_path / "o", timeout=120)
    assert r.returncode == 2 and "empty axis" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()  # nothing ran
    # A difficulty the task cannot generate (sum has a field of 8 numbers) is bad input, found before compute.
    r = scaling_cli("run", write(tmp_path, SWEEP), "--out", tmp_path / "o", "--set", "eval.difficulties=[1, 9]")
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "eval.difficulties: expected [lo, hi] with 1 <= lo <= hi <= 8" in r.stderr
    r = scaling_cli("run", write(tmp_path, "task: sum\nmodels: [d32\n"), "--out", tmp_path / "o")  # YAML: multi-line
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "invalid YAML" in r.stderr, r.stderr


def _claim_holders(out: Path) -> set[int]:
    pids = set()
    for claim in out.glob("stages/*/claim"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            pids.add(int(json.loads(claim.read_text())["pid"]))
    return pids


def _untimed(rows: list[dict]) -> list[dict]:
    """metrics.jsonl rows without their timings, ordered by (step, seed)."""
    rows = [{k: v for k, v in r.items() if k not in ("time", "tokens_per_s")} for r in rows]
    return sorted(rows, key=lambda r: (r["step"], r["seed"]))


def test_chaos_workers_killed_at_random_give_the_uninterrupted_results(tmp_path):
    """3 workers, SIGKILLed at seeded random moments (the holder of a claim when there is one) and
    restarted, until the sweep completes: the results equal an uninterrupted run's; every stage's
    attempts (runs.jsonl: each starts with its claim token and pid, and ends with a record or with the
    kill of its process) never overlap in time, so no stage was computed by two processes at once; and
    its metrics.jsonl has every step once, with the uninterrupted run's numbers."""
    config = write(tmp_path, SWEEP.replace("models: [d32, d48]", "models: [d32]").replace("steps: 40", "steps: 60"))
    reference = run_sweep(config, tmp_path / "ref", progress=False).results
    out, rng, kills, killed_at = tmp_path / "chaos", np.random.default_rng(0), 0, {}

    def start(i):
        cmd = [sys.executable, "-m", "scaling", "run", config, "--out", out, "--worker", str(i), "--workers", "3"]
        cmd += ["--stale-after", "5", "--no-analyze"]
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    workers = [start(i) for i in range(3)]
    deadline = time.time() + 240
    while kills < 10 and time.time() < deadline:
        time.sleep(rng.uniform(0.5, 3.0))
        running = [i for i, w in enumerate(workers) if w.poll() is None]
        if not running:
            break
        holding = [i for i in running if workers[i].pid in _claim_holders(out)]
        i = int(rng.choice(holding or running))
        killed_at[workers[i].pid] = time.time()  # it computes nothing after this; no one takes over before
        workers[i].send_signal(signal.SIGKILL)
        workers[i].wait()
        kills += 1
        workers[i] = start(i)
    for w in workers:
        _, err = w.communicate(timeout=max(10, deadline - time.time()))
        assert w.returncode == 0, err[-3000:]
    assert kills >= 10
    resumed = pd.read_parquet(out / "results.parquet")
    pd.testing.assert_frame_equal(resumed, reference.reset_index(drop=True), check_dtype=False)
    assert resumed.loc[resumed["strategy"] != "budget", "budget"].isna().all()  # null where it does not apply
    assert resumed["axis:rl.reward_flip"].dtype == float
    restarts, cut_short = 0, 0.0
    for d in (out / "stages").iterdir():
        records = [json.loads(line) for line in open(d / "runs.jsonl")]
        events = [e["event"] for e in records]
        assert events.count("done") == 1 and events[-1] == "done", (d.name, events)  # never redone once done
        attempts = {}  # token -> [start, end]: the end record, or the kill of the attempt's process
        for e in records:
            if e["event"] == "start":
                attempts[e["token"]] = [e["time"], killed_at.get(e["pid"])]
            else:
                attempts[e["token"]][1] = e["time"]
        spans = sorted(attempts.values())
        assert all(end is not None for _, end in spans), (d.name, records)  # every attempt ended or was killed
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start >= end, (d.name, spans)  # never two attempts computing at once
        if not d.name.startswith("eval"):  # every step once, with the uninterrupted run's numbers
            rows, ref = (read_metrics(root / "stages" / d.name / "metrics.jsonl") for root in (out, tmp_path / "ref"))
            assert len(rows) == len({(r["step"], r["seed"]) for r in rows}), d.name  # no step written twice
            assert _untimed(rows) == _untimed(ref), d.name
        restarts += len(spans) - 1
        cut_short += sum(end - start for start, end in spans[:-1])  # an upper bound on the compute repeated
    stages = len(list((out / "stages").iterdir()))
    print(f"chaos: {kills} kills survived, {stages} stages, {restarts} restarts, {cut_short:.1f}s of attempts killed")
    r = scaling_cli("run", config, "--out", out, "--dry-run")
    assert r.returncode == 0 and "to compute: 0 stages" in r.stdout


def test_a_paused_worker_whose_claim_is_taken_over_stops_with_a_record(tmp_path):
    from scaling.claims import _locked

    """Worker A is paused (SIGSTOP) mid-stage past the staleness limit; B takes the claim over and
    finishes the stage. A, resumed, finds at its next chunk that the claim is no longer its own and
    stops, recording ``lost``; the stage's log never shows the two interleaved."""
    text = (
        SWEEP.replace("models: [d32, d48]", "models: [d32]").replace("rl:", "#rl:").replace("steps: 40", "steps: 200")
    )
    config, out = write(tmp_path, text.replace("axes:\n  rl.reward_flip: [0.0, 0.2]", "")), tmp_path / "out"

    def start(i):
        cmd = [sys.executable, "-m", "scaling", "run", config, "--out", out, "--worker", str(i), "--workers", "2"]
        return subprocess.Popen([*cmd, "--stale-after", "2", "--no-analyze"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)  # fmt: skip

    def train_log() -> str:
        return "".join(p.read_text() for p in out.glob("stages/train-*/log.txt"))

    a, deadline, seen = start(0), time.time() + 240, set()
    while "chunk 4/" not in train_log() and time.time() < deadline:
        for path in out.glob("stages/train-*/metrics.jsonl"):
            seen.add(len(path.read_text().splitlines()))
        time.sleep(0.01)
    assert len(seen) >= 2 and all(n % (10 * 2) == 0 for n in seen), seen  # it grows chunk by chunk (10 steps x 2)
    (early,) = out.glob("stages/train-*/metrics.jsonl")
    with _locked(early.parent):  # A is stopped outside a beat's critical section (see scaling.claims)
        a.send_signal(signal.SIGSTOP)
    assert 0 < len(early.read_text().splitlines()) < 2 * 200  # written as the stage runs
    (running,) = status_doc(out)["running"]  # status shows the paused stage's last chunk and rate
    assert RUNNING_FIELDS <= {*running, *running["latest"]} <= documented_json_fields("status")  # as the README says
    assert running["pid"] == a.pid and running["latest"]["step"] >= 19 and running["latest"]["steps_per_s"] > 0
    assert running["latest"]["metrics"]["loss"] > 0 and " steps/s, last chunk " in status_text(out)
    b = start(1)
    while train_log().count("] start") < 2 and time.time() < deadline:
        time.sleep(0.05)  # B has taken the claim over
    a.send_signal(signal.SIGCONT)
    for w in (a, b):
        _, err = w.communicate(timeout=max(10, deadline - time.time()))
        assert w.returncode == 0, err[-3000:]
    (train,) = out.glob("stages/train-*")
    events = [json.loads(line) for line in open(train / "runs.jsonl")]
    assert [e["event"] for e in events if e["pid"] == a.pid] == ["start", "lost"]
    assert [e["event"] for e in events if e["pid"] == b.pid] == ["start", "done"]
    tokens = re.findall(r"^\S+ \S+ \[(\w{8})\]", (train / "log.txt").read_text(), re.M)
    owners = [t for j, t in enumerate(tokens) if j == 0 or t != tokens[j - 1]]
    assert len(owners) == 2  # A, then B: never interleaved
    rows = [json.loads(line) for line in open(train / "metrics.jsonl")]  # B resumed A's checkpoint ...
    assert sorted((r["step"], r["seed"]) for r in rows) == [(s, seed) for s in range(200) for seed in (0, 1)]
    assert all(r["loss"] > 0 and r["grad_norm"] > 0 and r["lr"] > 0 and r["tokens_per_s"] > 0 for r in rows)
    assert len(pd.read_parquet(out / "results.parquet")) > 0


def test_stale_claims_are_judged_on_the_watchers_clock_and_taken_over_once(tmp_path):
    from scaling.claims import Watcher, heartbeat, owns, release, try_claim

    d = tmp_path / "stage"
    d.mkdir()
    (d / "claim").write_text(json.dumps({"token": "dead", "host": os.uname().nodename, "pid": 2**22 + 7}))
    mine = try_claim(d, worker=0, stale_after=3600)  # its process on this host is gone
    assert mine and owns(mine) and (d / "claim.stale.dead").is_file()
    assert try_claim(d, worker=2, stale_after=3600) is None  # held by a live process
    other = {"token": "remote", "host": "elsewhere", "pid": 1, "beat": 0}
    release(mine)
    (d / "claim").write_text(json.dumps(other))
    os.utime(d / "claim", (0, 0))  # an mtime from another clock means nothing ...
    watcher = Watcher()
    assert try_claim(d, 2, stale_after=0.3, watcher=watcher) is None  # ... only what this watcher saw
    time.sleep(0.2)
    (d / "claim").write_text(json.dumps(other | {"beat": 1}))  # its heartbeat moved on
    time.sleep(0.2)
    assert try_claim(d, 2, stale_after=0.3, watcher=watcher) is None
    time.sleep(0.4)  # unchanged for longer than stale_after
    taker = try_claim(d, 2, stale_after=0.3, watcher=watcher)
    assert taker and owns(taker)
    with heartbeat(taker, every=0.05):
        beats = json.loads((d / "claim").read_text())["beat"]
        time.sleep(0.3)
        assert json.loads((d / "claim").read_text())["beat"] > beats  # the holder beats ...
        (d / "claim").write_text(json.dumps(other))  # ... until another worker holds the claim
        time.sleep(0.3)
        assert taker.lost.is_set() and json.loads((d / "claim").read_text()) == other  # not overwritten
    release(taker)
    assert json.loads((d / "claim").read_text()) == other  # a release never removes another's claim


def _race_for_the_claim(d: Path, barrier, rounds: int, results) -> None:
    from scaling.claims import Watcher, try_claim

    watcher = Watcher()
    for r in range(rounds):
        barrier.wait()  # every process looks at the same dead claim ...
        claim = try_claim(d / str(r), worker=os.getpid(), stale_after=3600, watcher=watcher)
        results.put((r, claim.token if claim else None))  # ... and says whether it won


def test_exactly_one_of_eight_processes_takes_over_a_stale_claim(tmp_path):
    import multiprocessing

    rounds, n = 50, 8
    for r in range(rounds):  # a claim of a process on this host that is gone
        (tmp_path / str(r)).mkdir()
        dead = {"token": f"dead{r}", "host": os.uname().nodename, "pid": 2**22 + 7, "beat": 0}
        (tmp_path / str(r) / "claim").write_text(json.dumps(dead))
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_race_for_the_claim, args=(tmp_path, barrier, rounds, results)) for _ in range(n)]
    for p in procs:
        p.start()
    got = [results.get(timeout=60) for _ in range(rounds * n)]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    for r in range(rounds):
        winners = [token for rr, token in got if rr == r and token]
        assert len(winners) == 1, (r, winners)
        assert json.loads((tmp_path / str(r) / "claim").read_text())["token"] == winners[0]


def test_failed_stage_is_recorded_and_the_sweep_goes_on(tmp_path):
    text = SWEEP.replace("rl:", "#rl:").replace(
        "axes:\n  rl.reward_flip: [0.0, 0.2]", "axes:\n  train.lr: [0.003, 1e30]"
    )
    config = write(tmp_path, text)
    out = tmp_path / "out"
    r = scaling_cli("run", config, "--out", out, "--no-analyze")
    assert r.returncode == 1, r.stderr  # a stage failed: exit 1, and the sweep went on
    assert "non-finite training loss" in r.stderr and "left out point" in r.stderr  # diagnostics
    assert "results: " in r.stdout and "non-finite" not in r.stdout  # results
    results = pd.read_parquet(out / "results.parquet")
    assert set(results["point"]) == {0, 2}  # lr 1e30 diverged for both presets; the others finished
    assert "2 failed" in status_text(out) and "non-finite training loss" in status_text(out)
    status = json.loads(scaling_cli("status", out, "--json").stdout)
    assert (
        status["points"] == 4
        and status["points_complete"] == 2
        and status["by_kind"]["train"] == {"done": 2, "failed": 2}
    )
    assert len(status["failed"]) == 2 and all("non-finite" in f["reason"] for f in status["failed"])
    fields = documented_json_fields("status")  # the README's table of --json fields, as the output has them
    assert set(status) <= fields and fields - json_keys(status) == RUNNING_FIELDS  # nothing runs now
    dry = json.loads(scaling_cli("run", config, "--out", out, "--dry-run", "--json").stdout)
    assert set(dry) <= documented_json_fields("run --dry-run") <= json_keys(dry)
    assert dry["cached"] == {"done": 4, "failed": 2, "claimed": 0} and dry["to_compute"]["stages"] == 4
    assert [p["axes"]["train.lr"] for p in dry["points"]] == [0.003, 1e30, 0.003, 1e30]
    assert {s["status"] for s in dry["stages"] if s["kind"] == "eval"} == {"done", "pending"}
    failed = [d for d in (out / "stages").iterdir() if (d / "failed.json").exists()]
    assert len(failed) == 2 and all("non-finite" in (d / "log.txt").read_text() for d in failed)
    run_sweep(config, out, progress=False)  # failures are kept ...
    assert all(runs_per_stage(out)[d.name] == 1 for d in failed)
    run_sweep(config, out, retry_failed=True, progress=False)  # ... until asked to retry
    assert all(runs_per_stage(out)[d.name] == 2 for d in failed)
    stopped = run_sweep(config, tmp_path / "fast", progress=False, fail_fast=True)  # stops at the first failure
    assert list(stopped.final.values()).count("failed") == 1 and "pending" in stopped.final.values()


class CompileCounter(logging.Handler):
    """Counts XLA compilations per jitted function from JAX's compile log."""

    def __init__(self):
        super().__init__()
        self.counts: dict[str, int] = {}

    def emit(self, record):
        m = re.match(r"Compiling jit\((\w+)\)", record.getMessage())
        if m:
            self.counts[m.group(1)] = self.counts.get(m.group(1), 0) + 1


def test_one_compilation_per_model_shape(tmp_path):
    """Learning rates and reward noise are traced values: one training and one RL program per preset."""
    import jax

    from scaling.rl import rl_chunk
    from scaling.train import train_chunk

    train_chunk.clear_cache()
    rl_chunk.clear_cache()
    counter = CompileCounter()
    logger = logging.getLogger("jax._src.interpreters.pxla")
    logger.addHandler(counter)
    jax.config.update("jax_log_compiles", True)
    try:
        text = SWEEP.replace("models: [d32, d48]", "models: [d32]") + "  train.lr: [0.001, 0.003]\n"
        run_sweep(write(tmp_path, text), tmp_path / "out", progress=False)  # 2 lr x 2 reward noise, 1 preset
        assert counter.counts["train_chunk"] == 1 and counter.counts["rl_chunk"] == 1
        run_sweep(write(tmp_path, SWEEP), tmp_path / "out2", progress=False)
        assert counter.counts["train_chunk"] == 2 and counter.counts["rl_chunk"] == 2  # d48 added one of each
        cached = [p.name for p in Path(os.environ["SCALING_JAX_CACHE"]).iterdir()]
        assert any(name.startswith("jit_train_chunk") for name in cached)  # the persistent cache is used
    finally:
        jax.config.update("jax_log_compiles", False)
        logger.removeHandler(counter)


def test_submitit_job_signalled_sigusr2_is_requeued_and_the_sweep_finishes(tmp_path):
    """As SLURM does before a preemption or the time limit: the job gets SIGUSR2 mid-stage, submitit
    requeues it, and the requeued worker resumes; a --slurm key never collides with our own."""
    from scaling.submit import submit

    text = (
        SWEEP.replace("models: [d32, d48]", "models: [d32]").replace("rl:", "#rl:").replace("steps: 40", "steps: 120")
    )
    config, out = write(tmp_path, text.replace("axes:\n  rl.reward_flip: [0.0, 0.2]", "")), tmp_path / "out"
    jobs, _ = submit(str(config), str(out), workers=1, executor="local", slurm={"timeout_min": "30"})
    deadline = time.time() + 300
    while not list(out.glob("stages/train-*/checkpoint/[0-9]*")) and time.time() < deadline:
        time.sleep(0.05)  # the training stage has saved a chunk
    (claim,) = out.glob("stages/*/claim")
    os.kill(json.loads(claim.read_text())["pid"], signal.SIGUSR2)
    assert jobs[0].result() > 0  # the requeued job finished the sweep
    events = [json.loads(line) for d in (out / "stages").iterdir() for line in open(d / "runs.jsonl")]
    assert len({e["pid"] for e in events}) == 2  # two processes: the signalled one and the requeued one
    assert "Requeued job" in jobs[0].stderr() or "Requeued job" in (jobs[0].stdout() or "")
    with pytest.raises(ScalingError, match="--slurm"):
        submit(str(config), str(out), executor="local", slurm={"no_such_parameter": "1"})
    with pytest.raises(ScalingError, match='--slurm: Parameter "timeout_min" expected type'):  # not a traceback
        submit(str(config), str(out), executor="local", slurm={"timeout_min": "90.5", "name": "123"})

    # corrupted state is named and redone, never trusted
    from scaling.tables import read_table

    before, runs = pd.read_parquet(out / "results.parquet"), runs_per_stage(out)
    (train,) = out.glob("stages/train-*")
    (evaluation,) = out.glob("stages/eval-*")
    step = max((p for p in train.rglob("*") if p.is_file() and "checkpoint" in str(p)), key=lambda p: p.stat().st_size)
    for path in (step, evaluation / "done.json", out / "results.parquet"):
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ScalingError, match=r"results.parquet: cannot read"):
        read_table(out / "results.parquet")
    text = status_text(out)
    assert f"corrupt {train.name}: checkpoint/" in text and f"corrupt {evaluation.name}: done.json is cut short" in text
    after = run_sweep(config, out, progress=False).results
    assert runs_per_stage(out) == {name: n + 1 for name, n in runs.items()}  # both redone, once
    assert "is unreadable" in (train / "log.txt").read_text() and "redoing" in (evaluation / "log.txt").read_text()
    pd.testing.assert_frame_equal(after, before, check_dtype=False)
    # a stage directory written by another version: a record or a checkpoint that is not this version's
    record = json.loads((evaluation / "done.json").read_text())
    io.write_json(evaluation / "done.json", record | {"record_format": 0})
    meta = json.loads((train / "checkpoint" / "meta.json").read_text())
    io.write_json(train / "checkpoint" / "meta.json", meta | {"layout": "another"})
    (train / "done.json").unlink()  # the training stage is redone from its checkpoint, which does not match
    assert f"corrupt {evaluation.name}: done.json was written by another version" in status_text(out)
    again = run_sweep(config, out, progress=False).results
    assert "checkpoint does not match: layout='another'" in (train / "log.txt").read_text()
    pd.testing.assert_frame_equal(again, before, check_dtype=False)


def test_multi_host_job_computes_each_stage_on_all_processes(tmp_path):
    """Two processes of one JAX job (as SLURM tasks or TPU hosts would be): process 0 claims and writes,
    both compute every stage on the 2-device global mesh; the results match a single-process run."""
    import socket

    config = write(tmp_path, SWEEP.replace("models: [d32, d48]", "models: [d32]"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "multi"
    procs = []
    for rank in range(2):
        env = dict(os.environ, JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2")
        env["JAX_PROCESS_ID"] = str(rank)
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "scaling", "run", config, "--out", out, "--no-analyze"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    assert runs_per_stage(out) == {name: 1 for name in make_plan(config).stages}  # claimed once, by process 0
    single = run_sweep(config, tmp_path / "single", progress=False).results
    multi = pd.read_parquet(out / "results.parquet")
    assert len(multi) == len(single)
    (train_multi,) = out.glob("stages/train-*/metrics.json")
    (train_single,) = (tmp_path / "single").glob("stages/train-*/metrics.json")
    loss_multi, loss_single = (json.loads(p.read_text())["loss"] for p in (train_multi, train_single))
    np.testing.assert_allclose(loss_multi, loss_single, rtol=1e-4)  # the batch was sharded over 2 hosts
    assert json.loads((out / "environment.json").read_text())["process_count"] == 2


def test_seeds_are_data_adding_one_trains_only_it_and_removing_reuses(tmp_path):
    text = SWEEP.replace("models: [d32, d48]", "models: [d32]").replace("axes:\n  rl.reward_flip: [0.0, 0.2]\n", "")
    one, both = (write(tmp_path, text.replace("seeds: [0, 1]", f"seeds: {s}"), f"{n}.yaml") for n, s in
                 (("one", "[0]"), ("both", "[0, 1]")))  # fmt: skip
    out, keys = tmp_path / "out", ["seed", "difficulty", "source", "strategy", "rl_prompts"]
    run_sweep(one, out, progress=False)
    before = runs_per_stage(out)
    added = run_sweep(both, out, progress=False).results
    after = runs_per_stage(out)
    assert all(after[name] == 1 for name in after)  # nothing was computed twice
    new = sorted(set(after) - set(before))
    assert [n.split("-")[0] for n in new] == ["eval", "rl", "train"]  # one new chain of stages ...
    assert all(json.loads((out / "stages" / n / "settings.json").read_text())["seeds"] == [1] for n in new)
    fresh = run_sweep(both, tmp_path / "fresh", progress=False).results  # ... equal to both seeds in one program
    sort = lambda df: df.drop(columns="point").sort_values(keys, ignore_index=True)  # noqa: E731
    pd.testing.assert_frame_equal(sort(added), sort(fresh), check_dtype=False, rtol=1e-5)
    removed = run_sweep(write(tmp_path, text.replace("seeds: [0, 1]", "seeds: [1]"), "two.yaml"), out, progress=False)
    assert runs_per_stage(out) == after  # seed 1 alone: reused, nothing computed
    pd.testing.assert_frame_equal(sort(removed.results), sort(fresh[fresh["seed"] == 1]), check_dtype=False, rtol=1e-5)
    fresh_runs = runs_per_stage(tmp_path / "fresh")
    reused = run_sweep(tmp_path / "two.yaml", tmp_path / "fresh", progress=False)
    assert runs_per_stage(tmp_path / "fresh") == fresh_runs  # the stages of the (0, 1) group serve seed 1
    pd.testing.assert_frame_equal(sort(reused.results), sort(fresh[fresh["seed"] == 1]), check_dtype=False)

    # a bumped version redoes the stages of that kind and those downstream, nothing else
    from scaling import versions
    from scaling.store import seed_groups, statuses

    redo = {"tasks": {"train", "rl", "eval"}, "train": {"train", "rl", "eval"}, "rl": {"rl", "eval"}, "eval": {"eval"}}
    for kind, expected in redo.items():
        with pytest.MonkeyPatch.context() as mp:
            mp.setitem(versions.STAGE_VERSIONS, kind, versions.STAGE_VERSIONS[kind] + 1)
            plan = make_plan(both, [], seed_groups(out))
            status = statuses(out, plan.stages)
            assert {plan.stages[n].kind for n, s in status.items() if s != "done"} == expected, kind
            assert {plan.stages[n].kind for n, s in status.items() if s == "done"} == {"train", "rl", "eval"} - expected
            if kind == "eval":
                run_sweep(both, out, progress=False)
                assert sorted(n.split("-")[0] for n in set(runs_per_stage(out)) - set(after)) == ["eval", "eval"]
