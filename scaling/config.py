"""Run configuration: a frozen dataclass of the stage settings (``scaling.settings``), loaded from YAML
and validated before any compute, without loading jax.

Every error names the file, the key path and what was expected, e.g.
    experiments/x.yaml: train.batch_size: expected an integer >= 1, got -4
    experiments/x.yaml: train.lr_rate: unknown key (did you mean 'lr'?)
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from scaling.errors import ConfigError, TaskError
from scaling.settings import ADVANTAGES, EvalConfig, ProblemsTask, RLConfig, TestTimeConfig, TrainConfig
from scaling.specs import MODEL_CHOICES, PRESETS
from scaling.tasks import TASKS, Task, get_task

__all__ = ["ConfigError", "EvalConfig", "RLConfig", "RunConfig", "TestTimeConfig", "TrainConfig", "load_run_config"]


@dataclass(frozen=True)
class RunConfig:
    task: str | ProblemsTask = "sum"  # a built-in task's name, or a problem set
    models: tuple[str, ...] = ("d48",)
    seeds: tuple[int, ...] = (0,)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    testtime: TestTimeConfig = field(default_factory=TestTimeConfig)
    rl: RLConfig | None = None  # an RL stage after supervised training
    positions: str = "rope"  # the models' position scheme (``scaling.specs.POSITIONS``)
    init: str = "normal"  # the models' initial weights (``scaling.specs.INITS``)
    inputs: str = "token"  # what the models' first layer reads (``scaling.specs.INPUTS``)

    def validate(self, where: str = "config") -> RunConfig:
        """This config, or a ConfigError naming ``where``, the key and what was expected."""
        validate_run(self, where)
        return self


def _bad(where: str, key: str, expected: str, value: Any) -> ConfigError:
    return ConfigError(f"{where}: {key}: expected {expected}, got {value!r}")


def _check_ranges(where: str, checks: list[tuple[str, Any, str, Callable]]) -> None:
    """Each (key, value, expectation, ok) must satisfy ``ok(value)`` (None values are skipped)."""
    for key, value, expected, ok in checks:
        if value is not None and not ok(value):
            raise _bad(where, key, expected, value)


def validate_run(run: RunConfig, where: str = "config") -> None:
    """Task, presets and seeds, then every stage's settings (``validate_train`` ... ``validate_rl``)."""
    if isinstance(run.task, str) and run.task not in TASKS:
        raise _bad(where, "task", f"one of {sorted(TASKS)}, or a mapping {{jsonl: PATH}}", run.task)
    for m in run.models:
        if m not in PRESETS:
            raise _bad(where, "models", f"preset names from {list(PRESETS)}", m)
    if not run.models:
        raise _bad(where, "models", "at least one preset", list(run.models))
    if not run.seeds or len(set(run.seeds)) != len(run.seeds):
        raise _bad(where, "seeds", "a non-empty list of distinct integers", list(run.seeds))
    for name, choices in MODEL_CHOICES.items():
        if getattr(run, name) not in choices:
            raise _bad(where, name, f"one of {list(choices)}", getattr(run, name))
    validate_train(run.train, where)
    validate_eval(run.eval, run.testtime, where)
    if run.rl is not None:
        validate_rl(run.rl, where)
    _validate_difficulties(run, where)


def validate_train(t: TrainConfig, where: str) -> None:
    if (t.steps is None) == (t.tokens_per_param is None):
        both = {"steps": t.steps, "tokens_per_param": t.tokens_per_param}
        raise _bad(where, "train", "exactly one of steps or tokens_per_param", both)
    integers = ("steps", "min_steps", "batch_size", "chunk_steps")
    positives = ("tokens_per_param", "lr", "grad_clip")
    fractions = ("warmup_frac", "curriculum_frac", "cut_frac", "corrupt_frac", "easy_frac")
    _check_ranges(
        where,
        [
            *[(f"train.{k}", getattr(t, k), "an integer >= 1", lambda v: v >= 1) for k in integers],
            *[(f"train.{k}", getattr(t, k), "a positive number", lambda v: v > 0) for k in positives],
            *[(f"train.{k}", getattr(t, k), "a fraction in [0, 1]", lambda v: 0 <= v <= 1) for k in fractions],
            ("train.weight_decay", t.weight_decay, "a number >= 0", lambda v: v >= 0),
        ],
    )


def validate_eval(e: EvalConfig, tt: TestTimeConfig, where: str) -> None:
    _check_ranges(
        where,
        [
            ("eval.n_per_difficulty", e.n_per_difficulty, "an integer >= 1", lambda v: v >= 1),
            ("eval.samples", e.samples, "an integer >= 0", lambda v: v >= 0),
            ("eval.temperature", e.temperature, "a positive number", lambda v: v > 0),
            ("testtime.budgets", list(tt.budgets), "thinking budgets >= 0", lambda v: all(b >= 0 for b in v)),
            ("testtime.ks", list(tt.ks), "sample counts k >= 1", lambda v: all(k >= 1 for k in v)),
            ("testtime.n_per_difficulty", tt.n_per_difficulty, "an integer >= 1", lambda v: v >= 1),
            ("testtime.rounds", tt.rounds, "an integer >= 0 (0: no re-thinking in context)", lambda v: v >= 0),
        ],
    )
    if (tt.ks or tt.rounds) and not tt.temperature > 0:
        raise _bad(where, "testtime.temperature", "a temperature > 0 for sampling", tt.temperature)


GROUP = "advantages compare completions within a group"


def validate_rl(rc: RLConfig, where: str = "config") -> None:
    """RL settings; errors name ``rl.<key>``."""
    _check_ranges(
        where,
        [
            ("rl.group_size", rc.group_size, f"an integer >= 2 ({GROUP})", lambda v: v >= 2),
            ("rl.prompts_per_step", rc.prompts_per_step, "an integer >= 1", lambda v: v >= 1),
            ("rl.inner_epochs", rc.inner_epochs, "an integer >= 1", lambda v: v >= 1),
            ("rl.advantage", rc.advantage, f"one of {list(ADVANTAGES)}", lambda v: v in ADVANTAGES),
            ("rl.band", list(rc.band), "[lo, hi] with 0 <= lo <= hi <= 1", lambda v: 0 <= v[0] <= v[1] <= 1),
            ("rl.reward_flip", rc.reward_flip, "a fraction in [0, 1]", lambda v: 0 <= v <= 1),
            ("rl.lr", rc.lr, "a positive number", lambda v: v > 0),
            ("rl.temperature", rc.temperature, "a positive number", lambda v: v > 0),
            ("rl.kl_coef", rc.kl_coef, "a number >= 0", lambda v: v >= 0),
            ("rl.clip", rc.clip, "a clip epsilon in (0, 1) or null", lambda v: 0 < v < 1),
            ("rl.prompts", rc.prompts, f"0 (no RL stage) or an integer >= prompts_per_step ({rc.prompts_per_step})",
             lambda v: v == 0 or v >= rc.prompts_per_step),
            ("rl.ladder", list(rc.ladder), f"prompt counts in [0, prompts={rc.prompts}]",
             lambda v: all(0 <= x <= rc.prompts for x in v)),
            ("rl.ladder_points", rc.ladder_points, "an integer >= 1", lambda v: v >= 1),
            ("rl.chunk_steps", rc.chunk_steps, "an integer >= 1", lambda v: v >= 1),
            ("rl.difficulties", None if rc.difficulties is None else list(rc.difficulties),
             "[lo, hi] with 1 <= lo <= hi, or null", lambda v: 1 <= v[0] <= v[1]),
        ],
    )  # fmt: skip
    for m in rc.models:
        if m not in PRESETS:
            raise _bad(where, "rl.models", f"preset names from {list(PRESETS)}", m)


def _validate_difficulties(run: RunConfig, where: str) -> None:
    """Every difficulty range lies within what the task can generate (e.g. its field width)."""
    task = load_task(run.task, where)
    ranges = [("train.difficulties", run.train.difficulties), ("eval.difficulties", run.eval.difficulties)]
    if run.rl is not None and run.rl.difficulties is not None:
        ranges.append(("rl.difficulties", run.rl.difficulties))
    top = task.max_difficulty
    for key, (lo, hi) in ranges:
        if not task.min_difficulty <= lo <= hi or (top is not None and hi > top):
            limit = f" <= {top} (the task's largest difficulty)" if top is not None else ""
            raise _bad(where, key, f"[lo, hi] with {task.min_difficulty} <= lo <= hi{limit}", [lo, hi])
    if task.problem_counts("train") is not None:  # a finite problem set: each level must have problems
        for key, (lo, hi) in ranges:
            split = "eval" if key == "eval.difficulties" else "train"
            have = task.problem_counts(split)
            missing = [d for d in range(lo, hi + 1) if not have.get(d)]
            if missing:
                raise _bad(where, key, f"difficulties with {split} problems in {task.source} ({have})", [lo, hi])


def load_task(spec, where: str) -> Task:
    """The task of a run's ``task`` setting; a problem file's errors (line and field) as ConfigErrors."""
    try:
        return get_task(spec)
    except TaskError as e:
        raise ConfigError(f"{where}: task: {e}") from None


def task_setting(value: Any, where: str) -> str | ProblemsTask:
    """``task:`` as a built-in name, or a mapping ``{jsonl: PATH, ...}`` / ``{reasoning_gym: {name: ...}}``."""
    if isinstance(value, str):
        return value
    if not isinstance(value, dict):
        raise _bad(where, "task", "a task name or a mapping {jsonl: PATH} or {reasoning_gym: {name: ...}}", value)
    value = dict(value)
    gym = value.get("reasoning_gym")
    if isinstance(gym, dict):
        gym = dict(gym)
        for key in ("config", "levels"):
            if key in gym:
                if not isinstance(gym[key], dict):
                    raise _bad(where, f"task.reasoning_gym.{key}", "a mapping", gym[key])
                gym[key] = json.dumps(gym[key], sort_keys=True)
        value["reasoning_gym"] = gym
    spec = from_dict(ProblemsTask, value, where, prefix="task.")
    if (spec.jsonl is None) == (spec.reasoning_gym is None):
        raise _bad(where, "task", "exactly one of jsonl or reasoning_gym", value)
    return spec


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str, where: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (int, float, str, X | None, tuple[...], dataclass)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(value, inner, key, where)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {key}: expected a mapping of {tp.__name__} settings, got {value!r}")
        return from_dict(tp, value, where, prefix=f"{key}.")
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: {key}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{key}[{i}]", where) for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{where}: {key}: expected a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, f"{key}[{i}]", where) for i, (v, a) in enumerate(zip(value, args)))
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is str and isinstance(value, str):
        return value
    if tp is bool and isinstance(value, bool):
        return value
    raise ConfigError(f"{where}: {key}: expected {_type_name(tp)}, got {value!r}")


def from_dict(cls, data: dict, where: str = "config", prefix: str = ""):
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys (with a did-you-mean)."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.6) or [
                n for n in names if str(key).startswith(n) or n.startswith(str(key))
            ]
            hint = f" (did you mean {close[0]!r}?)" if close else f"; known keys: {names}"
            raise ConfigError(f"{where}: {prefix}{key}: unknown key{hint}")
        if key in ("models", "seeds") and not isinstance(value, list):
            value = [value]
        if cls is RunConfig and key == "task":
            kwargs[key] = task_setting(value, where)
            continue
        kwargs[key] = _coerce(value, hints[key], f"{prefix}{key}", where)
    return cls(**kwargs)


def read_yaml(path: str | Path) -> dict:
    """The top-level mapping of a YAML config file (ConfigError naming the file otherwise)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level, got {type(data).__name__}")
    return data


def load_run_config(path: str | Path) -> RunConfig:
    """Read and validate a single-run config YAML file (sweeps: ``scaling.plan.make_plan``)."""
    return from_dict(RunConfig, read_yaml(path), str(path)).validate(str(path))
