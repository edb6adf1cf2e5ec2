"""Trackers: a resumed stage writes no step twice to metrics.jsonl or TensorBoard, status reads the latest
metrics, and a tracker that is missing or misnamed is a config error before any compute (the scalars of
a real sweep in TensorBoard and W&B: tests/test_analysis.py)."""

import json
import sys

import numpy as np
import pytest

from scaling.errors import ConfigError
from scaling.plan import make_plan
from scaling.track import Metrics, TensorBoard, latest, read_metrics


def test_a_resumed_stage_writes_each_step_once_to_jsonl_and_tensorboard(tmp_path):
    """A killed attempt wrote steps 0-5 and checkpointed at 3; the resumed attempt recomputes from 3."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def attempt(steps, scale):
        metrics = Metrics(tmp_path / "metrics.jsonl", [TensorBoard(tmp_path / "tb", "train")])
        for s in steps:
            metrics.append([{"step": s, "seed": r, "time": 100.0 + s, "loss": scale / (s + 1)} for r in (0, 1)])
        metrics.close()

    attempt(range(6), 1.0)
    attempt(range(3, 10), 2.0)  # what the resumed attempt computes (different values: easy to tell apart)
    rows = read_metrics(tmp_path / "metrics.jsonl")
    assert sorted((r["step"], r["seed"]) for r in rows) == [(s, r) for s in range(10) for r in (0, 1)]
    for seed in (0, 1):
        events = EventAccumulator(str(tmp_path / "tb" / f"seed{seed}"))
        events.Reload()
        scalars = events.Scalars("train/loss")
        assert [e.step for e in scalars] == list(range(10))  # purged from step 3 on, then rewritten once
        want = [1.0 / (s + 1) if s < 3 else 2.0 / (s + 1) for s in range(10)]
        np.testing.assert_allclose([e.value for e in scalars], want, rtol=1e-6)
        assert [e.wall_time for e in scalars] == [100.0 + s for s in range(10)]


def test_latest_gives_the_last_step_its_metrics_and_the_rate(tmp_path):
    path = tmp_path / "metrics.jsonl"
    assert latest(path, now=0.0) is None
    metrics = Metrics(path)
    for chunk in range(3):  # chunks of 10 steps, 5 s apart
        metrics.append([{"step": 10 * chunk + k, "seed": r, "time": 5.0 * chunk, "loss": 1.0 + r} for k in range(10)
                        for r in (0, 1)])  # fmt: skip
    with open(path, "a") as f:
        f.write('{"step": 30, "se')  # a line cut short by a kill
    now = latest(path, now=12.0)
    assert now["step"] == 29 and now["metrics"] == {"loss": 1.5}
    assert now["steps_per_s"] == pytest.approx(2.0) and now["seconds_since"] == pytest.approx(2.0)


@pytest.mark.parametrize(
    "text, track, message",
    [
        ("track: [tensorbord]", [], "track: expected one of ['tensorboard', 'wandb'], got 'tensorbord'"),
        ("", ["wandb"], "track: wandb needs the wandb package, not installed: pip install 'scaling[wandb]'"),
        ("wandb: {mode: cloudy}", [], "wandb.mode: expected one of ['online', 'offline', 'disabled'], got 'cloudy'"),
        ("wandb: {projet: x}", [], "wandb.projet: unknown key"),
    ],
)
def test_tracker_config_errors_name_the_key_and_the_extra(tmp_path, monkeypatch, text, track, message):
    monkeypatch.setitem(sys.modules, "wandb", None)  # not installed, whatever this machine has
    config = tmp_path / "sweep.yaml"
    config.write_text(f"task: sum\nmodels: [d32]\n{text}\n")
    with pytest.raises(ConfigError, match=None) as e:
        make_plan(config, track=track)
    where = "the command line (--track)" if track else str(config)  # the error names where the bad name came from
    assert str(e.value).startswith(f"{where}: ") and message in str(e.value)


def test_tracking_changes_no_stage_key(tmp_path):
    config = tmp_path / "sweep.yaml"
    config.write_text("task: sum\nmodels: [d32]\ntrain: {steps: 10}\n")
    plain, tracked = make_plan(config), make_plan(config, track=["tensorboard", "tensorboard"])
    assert list(plain.stages) == list(tracked.stages) and tracked.track == ("tensorboard",)
    config.write_text("task: sum\nmodels: [d32]\ntrain: {steps: 10}\ntrack: tensorboard\n")  # one name, not a list
    assert make_plan(config).track == ("tensorboard",)
    assert json.loads(json.dumps(tracked.raw))["track"] == ["tensorboard"]
