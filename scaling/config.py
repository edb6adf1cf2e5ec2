"""Run configuration: frozen dataclasses, loaded from YAML and validated before any compute.

Every error names the file, the key path and what was expected, e.g.
    experiments/x.yaml: train.batch_size: expected an integer >= 1, got -4
    experiments/x.yaml: train.lr_rate: unknown key (did you mean 'lr'?)
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from scaling.errors import ScalingError


class ConfigError(ScalingError):
    """A configuration value is missing, unknown, of the wrong type or impossible."""


@dataclass(frozen=True)
class TrainConfig:
    """Supervised training on reasoning traces.

    Length: ``steps``, or a compute budget of ``tokens_per_param`` training tokens per model
    parameter (steps = ceil(tokens_per_param * params / (batch_size * seq_len)), at least
    ``min_steps``). Learning rate: ``lr``, or the size rule of ``scaling.train.lr_for``.
    """

    steps: int | None = None
    tokens_per_param: float | None = None
    min_steps: int = 200
    batch_size: int = 64
    lr: float | None = None
    warmup_frac: float = 0.05
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    difficulties: tuple[int, int] = (1, 6)  # inclusive range trained on
    curriculum_frac: float = 0.5  # grow the hardest difficulty over this fraction, then mix all
    cut_frac: float = 0.3  # share of traces cut short before <eot>
    corrupt_frac: float = 0.0  # share of traces replaced by another problem's (supervised data quality)
    chunk_steps: int = 100  # steps per compiled scan chunk (metrics and checkpoints per chunk)


@dataclass(frozen=True)
class EvalConfig:
    difficulties: tuple[int, int] = (1, 8)  # inclusive; above the training range measures generalisation
    n_per_difficulty: int = 128
    seed: int = 1234
    # Besides greedy accuracy: pass@1 at ``temperature`` from ``samples`` samples per problem (0: off),
    # the policy's own accuracy, which RL optimises.
    samples: int = 0
    temperature: float = 1.0


@dataclass(frozen=True)
class TestTimeConfig:
    """Test-time compute after training: greedy accuracy per thinking budget, and majority vote,
    pass@k, best-of-n and re-thinking over k samples at ``temperature``. Empty lists skip them."""

    budgets: tuple[int, ...] = ()
    ks: tuple[int, ...] = ()
    temperature: float = 1.0
    n_per_difficulty: int = 64  # on the eval difficulties


@dataclass(frozen=True)
class RLConfig:
    """On-policy RL with verifiable rewards (see ``scaling.rl``)."""

    group_size: int = 8
    prompts_per_step: int = 16
    lr: float = 1e-4
    advantage: str = "dr_grpo"
    clip: float | None = None  # PPO clip epsilon; None is a plain on-policy step
    inner_epochs: int = 1
    kl_coef: float = 0.0
    temperature: float = 1.0
    band: tuple[float, float] = (0.2, 0.8)  # pass-rate band of prompts at the edge of competence
    reward_flip: float = 0.0  # fraction of rewards flipped (noisy feedback)
    # The RL stage of a run (none if prompts = 0): RL data volume is counted in distinct prompts; held-out accuracy is
    # measured at each ``ladder`` volume (empty: 0 and ``ladder_points`` log-spaced volumes up to ``prompts``).
    prompts: int = 1024
    ladder: tuple[int, ...] = ()
    ladder_points: int = 6
    difficulties: tuple[int, int] | None = None  # RL prompt difficulties; None: the supervised range
    chunk_steps: int = 8  # RL steps per compiled chunk (pass rates and the ladder update per chunk)
    models: tuple[str, ...] = ()  # presets that get the RL stage (empty: every preset of the sweep)

    def validate(self, where: str = "config", prefix: str = "rl.") -> RLConfig:
        from scaling.rl import ADVANTAGES

        def bad(key: str, expected: str, value: Any) -> ConfigError:
            return ConfigError(f"{where}: {prefix}{key}: expected {expected}, got {value!r}")

        if self.group_size < 2:
            raise bad("group_size", "an integer >= 2 (advantages compare completions within a group)", self.group_size)
        if self.prompts_per_step < 1 or self.inner_epochs < 1:
            raise bad(
                "prompts_per_step" if self.prompts_per_step < 1 else "inner_epochs",
                "an integer >= 1",
                self.prompts_per_step if self.prompts_per_step < 1 else self.inner_epochs,
            )
        if self.advantage not in ADVANTAGES:
            raise bad("advantage", f"one of {list(ADVANTAGES)}", self.advantage)
        lo, hi = self.band
        if not (0 <= lo <= hi <= 1):
            raise bad("band", "[lo, hi] with 0 <= lo <= hi <= 1", [lo, hi])
        if not 0 <= self.reward_flip <= 1:
            raise bad("reward_flip", "a fraction in [0, 1]", self.reward_flip)
        if not self.lr > 0 or not self.temperature > 0 or self.kl_coef < 0:
            raise bad(
                "lr/temperature/kl_coef",
                "lr > 0, temperature > 0, kl_coef >= 0",
                [self.lr, self.temperature, self.kl_coef],
            )
        if self.clip is not None and not 0 < self.clip < 1:
            raise bad("clip", "a clip epsilon in (0, 1) or null", self.clip)
        if self.prompts != 0 and self.prompts < self.prompts_per_step:
            raise bad(
                "prompts", f"0 (no RL stage) or an integer >= prompts_per_step ({self.prompts_per_step})", self.prompts
            )
        if any(not 0 <= v <= self.prompts for v in self.ladder):
            raise bad("ladder", f"prompt counts in [0, prompts={self.prompts}]", list(self.ladder))
        if self.ladder_points < 1 or self.chunk_steps < 1:
            raise bad("ladder_points/chunk_steps", "integers >= 1", [self.ladder_points, self.chunk_steps])
        if self.difficulties is not None and not 1 <= self.difficulties[0] <= self.difficulties[1]:
            raise bad("difficulties", "[lo, hi] with 1 <= lo <= hi, or null", list(self.difficulties))
        return self

    @property
    def steps(self) -> int:
        """RL steps: whole chunks covering ``prompts``."""
        chunk_prompts = self.chunk_steps * self.prompts_per_step
        return -(-self.prompts // chunk_prompts) * self.chunk_steps

    def ladder_volumes(self) -> list[int]:
        """Prompt counts at which held-out accuracy is measured (0 is the supervised start)."""
        if self.ladder:
            return sorted(set(self.ladder))
        chunk_prompts = self.chunk_steps * self.prompts_per_step
        points = np.geomspace(chunk_prompts, max(self.prompts, chunk_prompts), self.ladder_points)
        return [0, *sorted({round(float(v) / chunk_prompts) * chunk_prompts for v in points})]


@dataclass(frozen=True)
class RunConfig:
    task: str = "sum"
    models: tuple[str, ...] = ("d48",)
    seeds: tuple[int, ...] = (0,)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    testtime: TestTimeConfig = field(default_factory=TestTimeConfig)
    rl: RLConfig | None = None  # an RL stage after supervised training

    def validate(self, where: str = "config") -> RunConfig:
        from scaling.model import PRESETS
        from scaling.tasks import TASKS

        def bad(key: str, expected: str, value: Any) -> ConfigError:
            return ConfigError(f"{where}: {key}: expected {expected}, got {value!r}")

        if self.task not in TASKS:
            raise bad("task", f"one of {sorted(TASKS)}", self.task)
        for m in self.models:
            if m not in PRESETS:
                raise bad("models", f"preset names from {list(PRESETS)}", m)
        if not self.models:
            raise bad("models", "at least one preset", list(self.models))
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise bad("seeds", "a non-empty list of distinct integers", list(self.seeds))
        t, e = self.train, self.eval
        if (t.steps is None) == (t.tokens_per_param is None):
            raise bad(
                "train",
                "exactly one of steps or tokens_per_param",
                {"steps": t.steps, "tokens_per_param": t.tokens_per_param},
            )
        for key, value, lo in [
            ("train.steps", t.steps, 1),
            ("train.min_steps", t.min_steps, 1),
            ("train.batch_size", t.batch_size, 1),
            ("train.chunk_steps", t.chunk_steps, 1),
            ("eval.n_per_difficulty", e.n_per_difficulty, 1),
            ("eval.samples", e.samples, 0),
        ]:
            if value is not None and value < lo:
                raise bad(key, f"an integer >= {lo}", value)
        for key, value in [
            ("train.tokens_per_param", t.tokens_per_param),
            ("train.lr", t.lr),
            ("train.grad_clip", t.grad_clip),
            ("eval.temperature", e.temperature),
        ]:
            if value is not None and not value > 0:
                raise bad(key, "a positive number", value)
        for key, value in [
            ("train.warmup_frac", t.warmup_frac),
            ("train.curriculum_frac", t.curriculum_frac),
            ("train.cut_frac", t.cut_frac),
            ("train.corrupt_frac", t.corrupt_frac),
        ]:
            if not 0 <= value <= 1:
                raise bad(key, "a fraction in [0, 1]", value)
        if t.weight_decay < 0:
            raise bad("train.weight_decay", "a number >= 0", t.weight_decay)
        tt = self.testtime
        if any(b < 0 for b in tt.budgets):
            raise bad("testtime.budgets", "thinking budgets >= 0", list(tt.budgets))
        if any(k < 1 for k in tt.ks):
            raise bad("testtime.ks", "sample counts k >= 1", list(tt.ks))
        if tt.ks and not tt.temperature > 0:
            raise bad("testtime.temperature", "a temperature > 0 for sampling", tt.temperature)
        if tt.n_per_difficulty < 1:
            raise bad("testtime.n_per_difficulty", "an integer >= 1", tt.n_per_difficulty)
        if self.rl is not None:
            self.rl.validate(where)
            for m in self.rl.models:
                if m not in PRESETS:
                    raise bad("rl.models", f"preset names from {list(PRESETS)}", m)
        task = TASKS[self.task]
        for key, (lo, hi) in [("train.difficulties", t.difficulties), ("eval.difficulties", e.difficulties)]:
            if not (task.min_difficulty <= lo <= hi):
                raise bad(key, f"[lo, hi] with {task.min_difficulty} <= lo <= hi", [lo, hi])
        return self


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
