"""What a stage reports while it runs: ``metrics.jsonl`` always, and the trackers a sweep asks for.

    track: [tensorboard, wandb]                  # in the sweep config, or --track NAME (repeatable)
    wandb: {project: scaling, mode: offline}     # optional W&B settings: project, entity, group, mode

A stage hands each chunk's rows (one per (step, seed): ``step``, ``seed``, ``time`` and its scalars) to
``Metrics``, which appends them to the stage's ``metrics.jsonl`` and then gives the same rows to every
tracker:

    tensorboard  event files under OUT/tensorboard/<stage>/seed<s>/ (tensorboardX, extra
                 ``scaling[tensorboard]``): one TensorBoard run per seed, so a stage's seeds overlay;
                 tags <kind>/<scalar>
    wandb        one W&B run per stage, id and name the stage's, group the output directory's name,
                 config the stage's settings; scalars <scalar>/seed<s> at their step (extra
                 ``scaling[wandb]``; ``mode: offline`` for clusters without network, then ``wandb sync``)

A resumed stage recomputes from the step it restored: ``metrics.jsonl`` keeps its lines before that
step and writes no step twice, TensorBoard hides the events from that step on (``purge_step``), and
W&B resumes the stage's run (``resume="allow"``; it drops steps it already has).
Tracking is not part of a stage's identity: turning a tracker on recomputes nothing.
"""

from __future__ import annotations

import importlib
import json
import os
import time
from pathlib import Path
from typing import Protocol

from scaling import io
from scaling.errors import ConfigError

TRACKERS = {"tensorboard": ("tensorboardX", "scaling[tensorboard]"), "wandb": ("wandb", "scaling[wandb]")}
WANDB_KEYS = {"project": str, "entity": str, "group": str, "mode": str}
WANDB_MODES = ("online", "offline", "disabled")
_NOT_SCALARS = ("step", "seed", "time")


class Tracker(Protocol):
    def log(self, rows: list[dict]) -> None: ...

    def close(self) -> None: ...


def _scalars(row: dict) -> dict[str, float]:
    return {k: float(v) for k, v in row.items() if k not in _NOT_SCALARS and isinstance(v, (int, float))}


def check(names, wandb: dict | None, where: str) -> tuple[tuple[str, ...], dict]:
    """The tracker names (deduplicated, in order) and W&B settings, validated, with the tracker
    libraries importable; a ConfigError naming the key, the value and the extra to install otherwise."""
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, (list, tuple)):
        raise ConfigError(f"{where}: track: expected a list of tracker names, got {names!r}")
    for name in names:
        if name not in TRACKERS:
            raise ConfigError(f"{where}: track: expected one of {sorted(TRACKERS)}, got {name!r}")
        module, extra = TRACKERS[name]
        try:
            importlib.import_module(module)
        except ImportError:
            raise ConfigError(
                f"{where}: track: {name} needs the {module} package, not installed: pip install '{extra}'"
            ) from None
    wandb = {} if wandb is None else wandb
    if not isinstance(wandb, dict):
        raise ConfigError(f"{where}: wandb: expected a mapping of W&B settings, got {wandb!r}")
    for key, value in wandb.items():
        if key not in WANDB_KEYS:
            raise ConfigError(f"{where}: wandb.{key}: unknown key; known keys: {sorted(WANDB_KEYS)}")
        if not isinstance(value, str) or (key == "mode" and value not in WANDB_MODES):
            expected = f"one of {list(WANDB_MODES)}" if key == "mode" else "a string"
            raise ConfigError(f"{where}: wandb.{key}: expected {expected}, got {value!r}")
    return tuple(dict.fromkeys(names)), wandb


class TensorBoard:
    """One tensorboardX writer per seed under ``directory/seed<s>``, opened at the first rows with
    ``purge_step`` at their first step (a resumed stage hides what a killed attempt wrote after it)."""

    def __init__(self, directory: Path, kind: str):
        self.directory, self.kind, self.writers = directory, kind, {}

    def log(self, rows: list[dict]) -> None:
        from tensorboardX import SummaryWriter
        from tensorboardX.proto.summary_pb2 import Summary

        first = min(row["step"] for row in rows)
        for row in rows:
            seed = row["seed"]
            if seed not in self.writers:
                path = self.directory / f"seed{seed}"
                unique = f".{os.getpid()}.{time.time_ns()}"  # two attempts within a second keep both files
                self.writers[seed] = SummaryWriter(str(path), purge_step=first, flush_secs=3600, filename_suffix=unique)
            # One event per (step, seed) carrying all its scalars: a quarter of add_scalar's cost per value.
            values = [Summary.Value(tag=f"{self.kind}/{k}", simple_value=v) for k, v in _scalars(row).items()]
            self.writers[seed]._get_file_writer().add_summary(Summary(value=values), row["step"], row.get("time"))
        for writer in self.writers.values():
            writer.flush()

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()


class WandB:
    """One W&B run per stage, resumed by id when the stage is."""

    def __init__(self, out: Path, stage: str, kind: str, settings: dict, options: dict):
        import wandb

        self.run = wandb.init(
            id=stage,
            name=stage,
            project=options.get("project", "scaling"),
            entity=options.get("entity"),
            group=options.get("group", out.resolve().name),
            job_type=kind,
            mode=options.get("mode"),
            dir=str(out),
            config={"stage": stage, "kind": kind, **settings},
            resume="allow",
        )

    def log(self, rows: list[dict]) -> None:
        by_step: dict[int, dict] = {}
        for row in rows:
            values = {f"{key}/seed{row['seed']}": v for key, v in _scalars(row).items()}
            by_step.setdefault(row["step"], {}).update(values)
        for step in sorted(by_step):
            self.run.log(by_step[step], step=step)

    def close(self) -> None:
        self.run.finish()


def open_trackers(names, out: Path, stage: str, kind: str, settings: dict, wandb: dict) -> list[Tracker]:
    """The trackers ``names`` for one stage of the sweep in ``out``."""
    made: list[Tracker] = []
    for name in names:
        if name == "tensorboard":
            made.append(TensorBoard(out / "tensorboard" / stage, kind))
        elif name == "wandb":
            made.append(WandB(out, stage, kind, settings, wandb))
    return made


class Metrics:
    """A stage's ``metrics.jsonl`` and trackers. ``append`` writes a chunk's rows as JSON lines and
    flushes them (``tail -f`` works; a kill loses at most the chunk being computed), then hands the
    rows it wrote to the trackers. The first append trims the file to the lines before its first step
    (a resumed stage recomputes from the step it restored, whatever a killed attempt wrote after it),
    and no (step, seed) is written twice. Only a ``writer`` (process 0 of a job) writes."""

    def __init__(self, path: Path, trackers: list[Tracker] = (), *, writer: bool = True):
        self.path, self.trackers, self.writer, self.written = path, list(trackers), writer, None

    def append(self, rows: list[dict]) -> None:
        if self.written is None:
            first = min(row["step"] for row in rows)
            kept = [row for row in read_metrics(self.path) if row["step"] < first]
            if self.writer:
                io.atomic_write_text(self.path, "".join(io.dumps(row, indent=None) for row in kept))
            self.written = {(row["step"], row["seed"]) for row in kept}
        new = [row for row in rows if (row["step"], row["seed"]) not in self.written]
        self.written |= {(row["step"], row["seed"]) for row in new}
        if new and self.writer:
            io.append_text(self.path, "".join(io.dumps(row, indent=None) for row in new))
            for tracker in self.trackers:
                tracker.log(new)

    def close(self) -> None:
        for tracker in self.trackers:
            tracker.close()


def read_metrics(path: Path, tail_bytes: int | None = None) -> list[dict]:
    """The rows of a ``metrics.jsonl`` (with ``tail_bytes``, of its last bytes only; a line cut short,
    by a kill or by the tail, is skipped)."""
    if not path.is_file():
        return []
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        f.seek(max(0, size - tail_bytes) if tail_bytes is not None else 0)
        text = f.read().decode("utf-8", errors="replace")
    rows = []
    for line in text.splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return [row for row in rows if isinstance(row, dict) and "step" in row]


def latest(path: Path, now: float) -> dict | None:
    """A running stage at a glance, from the tail of its ``metrics.jsonl``: the last step written, each
    scalar's mean over seeds at that step, the rate in steps per second between the last two chunks
    (null after one chunk) and the seconds since the last chunk was written (at time ``now``)."""
    rows = read_metrics(path, tail_bytes=1 << 18)
    if not rows:
        return None
    step = max(row["step"] for row in rows)
    last = [row for row in rows if row["step"] == step]
    keys = dict.fromkeys(k for row in last for k in _scalars(row))
    means = {k: sum(_scalars(row).get(k, 0.0) for row in last) / len(last) for k in keys}
    chunks: dict[float, int] = {}  # a chunk's rows share its time
    for row in rows:
        if isinstance(row.get("time"), (int, float)):
            chunks[row["time"]] = max(chunks.get(row["time"], row["step"]), row["step"])
    times = sorted(chunks)
    rate = None
    if len(times) >= 2 and times[-1] > times[-2]:
        rate = (chunks[times[-1]] - chunks[times[-2]]) / (times[-1] - times[-2])
    return {
        "step": step,
        "metrics": means,
        "steps_per_s": rate,
        "seconds_since": now - times[-1] if times else None,
    }
