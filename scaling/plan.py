"""Sweep configs -> points -> a graph of stages keyed by content hashes.

A sweep config is a run config (see ``scaling.config.RunConfig``) plus axes:

    models: [d32, d48, d64]            # several presets: an implicit grid axis
    seeds: [0, 1, 2]                   # one program per seed group (see ``split_seeds``)
    axes:                              # grid: every combination
      train.tokens_per_param: {logspace: [5, 40, 4]}
      rl.reward_flip: [0.0, 0.1]
    zip:                               # zipped: lists of one length, varied together (one more grid axis)
      train.lr: [1e-3, 3e-3]
      train.batch_size: [32, 64]

    track: [tensorboard]               # trackers (``scaling.track``): not part of any stage's key

Value helpers: ``{logspace: [lo, hi, n]}`` (geometric), ``{linspace: [lo, hi, n]}``; integers for
integer settings. ``--set key.path=value`` overrides any setting (YAML syntax for the value).

A stage's key hashes its kind, its own settings, the versions of its code and its inputs' keys, so
points that share an upstream stage (one supervised model per preset, seed group and training settings)
share its directory.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import itertools
import json
import typing
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from scaling.config import RunConfig, from_dict, read_yaml
from scaling.errors import ConfigError
from scaling.settings import total_steps
from scaling.specs import ARCHITECTURE, CHECKPOINT_FORMAT, MODEL_CHOICES, ModelConfig, flops_per_token, get_preset
from scaling.tasks import get_task
from scaling.track import check as check_trackers
from scaling.versions import versions_of

HELPERS = {"logspace": np.geomspace, "linspace": np.linspace}


@dataclass(frozen=True)
class Stage:
    kind: str  # train | rl | eval
    key: str
    deps: tuple[str, ...]  # names of input stages
    settings: dict  # what the key hashes (besides kind and deps)

    @property
    def name(self) -> str:
        return f"{self.kind}-{self.key}"


@dataclass(frozen=True)
class SeedGroup:
    """Seeds trained together in one program, and the chain of stages (kind -> name) that computes them.
    A point reports ``used``, the seeds of the group it asked for."""

    seeds: tuple[int, ...]
    used: tuple[int, ...]
    stages: dict[str, str]


@dataclass(frozen=True)
class Point:
    index: int
    axes: dict[str, Any]  # axis key path -> value, typed as the setting is
    run: RunConfig  # one preset, every seed the point asks for
    groups: tuple[SeedGroup, ...]  # the point's seeds, split over the stage chains that compute them

    @property
    def stage_names(self) -> list[str]:
        return [name for g in self.groups for name in g.stages.values()]


@dataclass
class Plan:
    source: str
    raw: dict  # the config after --set, axes included
    axis_names: list[str]
    points: list[Point]
    stages: dict[str, Stage]  # name -> stage, in dependency order
    runs: dict[str, RunConfig]  # stage name -> a run config that has it (seeds: the stage's seed group)
    track: tuple[str, ...] = ()  # trackers every stage reports to, beside metrics.jsonl
    wandb: dict = dataclasses.field(default_factory=dict)  # W&B settings (scaling.track)

    def users(self, name: str) -> list[int]:
        return [p.index for p in self.points if name in p.stage_names]


def _setting_type(path: str, where: str) -> Any:
    """The annotation of a dotted setting path of RunConfig, or a ConfigError with a did-you-mean."""
    cls: Any = RunConfig
    parts = path.split(".")
    for i, part in enumerate(parts):
        hints = typing.get_type_hints(cls)
        if part not in hints:
            prefix = ".".join(parts[:i])
            known = [f"{prefix}.{n}" if prefix else n for n in hints]
            close = difflib.get_close_matches(path, known, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; settings here: {known}"
            raise ConfigError(f"{where}: {path!r} names no setting{hint}")
        tp = hints[part]
        classes = [a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)]
        if len(classes) == 1:
            tp = classes[0]  # X | None, or the mapping form of a setting that may also be a name (task)
        if i < len(parts) - 1:
            if not dataclasses.is_dataclass(tp):
                raise ConfigError(f"{where}: {path!r} names no setting ({'.'.join(parts[: i + 1])} has no sub-keys)")
            cls = tp
    return tp


def _set(d: dict, path: str, value: Any) -> None:
    """``d[a][b][c] = value`` for ``a.b.c``; under ``axes`` and ``zip`` the rest is one key (a setting path)."""
    head, _, rest = path.partition(".")
    *parents, leaf = [head, rest] if head in ("axes", "zip") and rest else path.split(".")
    for p in parents:
        node = d.get(p)
        if not isinstance(node, dict):
            node = d[p] = {}
        d = node
    d[leaf] = value


def axis_values(spec: Any, path: str, where: str) -> list:
    """The values of one axis: a non-empty list, or a ``{logspace|linspace: [lo, hi, n]}`` helper."""
    tp = _setting_type(path, where)
    if isinstance(spec, dict) and len(spec) == 1 and next(iter(spec)) in HELPERS:
        ((name, args),) = spec.items()
        ok = isinstance(args, list) and len(args) == 3 and all(isinstance(a, (int, float)) for a in args)
        if not ok or args[2] < 1 or int(args[2]) != args[2] or (name == "logspace" and min(args[:2]) <= 0):
            raise ConfigError(
                f"{where}: {path}: {name}: expected [lo, hi, n] with n >= 1 (and lo, hi > 0), got {args!r}"
            )
        values = HELPERS[name](args[0], args[1], int(args[2])).tolist()
        if tp is int or (typing.get_origin(tp) is not None and int in typing.get_args(tp)):
            values = sorted({round(v) for v in values})
        return values
    if not isinstance(spec, list):
        raise ConfigError(f"{where}: {path}: expected a list of values or {{logspace: [lo, hi, n]}}, got {spec!r}")
    if not spec:
        raise ConfigError(f"{where}: {path}: empty axis (expected at least one value)")
    return spec


def parse_override(text: str) -> tuple[str, Any]:
    """``key.path=value`` (value in YAML syntax) -> (path, value)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key.path=value")
    path, value = text.split("=", 1)
    try:
        return path.strip(), yaml.safe_load(value)
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {text!r}: invalid YAML value ({e})") from None


def expand(raw: dict, where: str) -> tuple[list[str], list[tuple[dict, RunConfig]]]:
    """Axis names and, per point, its axis values and validated one-preset RunConfig."""
    raw = copy.deepcopy(raw)
    grid, zipped = raw.pop("axes", None) or {}, raw.pop("zip", None) or {}
    for name, block in (("axes", grid), ("zip", zipped)):
        if not isinstance(block, dict):
            raise ConfigError(f"{where}: {name}: expected a mapping of setting paths to values, got {block!r}")
    models = raw.get("models", ["d48"])
    models = models if isinstance(models, list) else [models]
    if "models" in grid or "models" in zipped:
        raise ConfigError(f"{where}: axes.models: list the presets under the top-level 'models' key")
    dims: list[tuple[list[str], list[tuple]]] = []
    if len(models) > 1:
        dims.append((["models"], [(m,) for m in models]))
    for path, spec in grid.items():
        dims.append(([path], [(v,) for v in axis_values(spec, path, f"{where}: axes")]))
    if zipped:
        cols = {p: axis_values(s, p, f"{where}: zip") for p, s in zipped.items()}
        lengths = {p: len(v) for p, v in cols.items()}
        if len(set(lengths.values())) != 1:
            raise ConfigError(f"{where}: zip: expected lists of one length, got lengths {lengths}")
        dims.append((list(cols), list(zip(*cols.values()))))
    names = [n for paths, _ in dims for n in paths]
    points = []
    for combo in itertools.product(*[values for _, values in dims]):
        d = copy.deepcopy(raw)
        if len(models) > 1:
            d["models"] = [models[0]]
        axes = {}
        for (paths, _), values in zip(dims, combo):
            for p, v in zip(paths, values):
                _set(d, p, [v] if p == "models" else v)
                axes[p] = v
        label = where + (" at " + ", ".join(f"{k}={v}" for k, v in axes.items()) if axes else "")
        run = from_dict(RunConfig, d, label).validate(label)
        points.append(({p: _typed_value(run, p) for p in axes}, run))
    return names, points


def _typed_value(run: RunConfig, path: str) -> Any:
    """The value of setting ``path`` as the validated config holds it (``'1e-3'`` in YAML -> 0.001)."""
    if path == "models":
        return run.models[0]
    value: Any = run
    for part in path.split("."):
        value = getattr(value, part)
    return list(value) if isinstance(value, tuple) else value


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def seed_family(train_settings: dict) -> str:
    """What training stages that differ only in their seeds share: the hash of their other settings."""
    return _digest(["train", {k: v for k, v in train_settings.items() if k != "seeds"}])


def point_stages(run: RunConfig) -> list[Stage]:
    """train -> [rl] -> eval for one point and the seeds of ``run``. Each stage hashes only the settings
    it reads, the versions of the code it runs (``scaling.versions``), and the revisions of the
    architecture and of the checkpoint layout that its outputs depend on."""
    base = {
        "task": get_task(run.task).identity,
        "model": run.models[0],
        "architecture": ARCHITECTURE,
        "checkpoint_format": CHECKPOINT_FORMAT,
        "seeds": list(run.seeds),
    }
    for name, choices in MODEL_CHOICES.items():  # only where not the default: default models keep their names
        if getattr(run, name) != choices[0]:
            base[name] = getattr(run, name)
    train = {**base, "train": dataclasses.asdict(run.train), "versions": versions_of("train")}
    stages = [Stage("train", _digest(["train", train]), (), train)]
    if has_rl(run):
        settings = dataclasses.asdict(run.rl)
        settings.pop("models")  # which presets get RL is a selection, not a setting of the stage
        rl = {**base, "rl": settings, "eval": dataclasses.asdict(run.eval), "versions": versions_of("rl")}
        rl["max_len"] = model_max_len(run)
        rl["train_difficulties"] = list(run.train.difficulties)
        deps = (stages[-1].name,)
        stages.append(Stage("rl", _digest(["rl", rl, deps]), deps, rl))
    ev = {**base, "eval": dataclasses.asdict(run.eval), "testtime": dataclasses.asdict(run.testtime)}
    ev["versions"] = versions_of("eval")
    ev["max_len"] = model_max_len(run)
    deps = (stages[-1].name,)
    stages.append(Stage("eval", _digest(["eval", ev, deps]), deps, ev))
    return stages


def split_seeds(seeds, existing: list[tuple[int, ...]]) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """(group, used) pairs covering ``seeds``: existing seed groups first, most useful first (the most
    asked-for seeds, then the smallest group), then one new group of the seeds no group has. A seed's
    results do not depend on the group it is trained in, so adding seeds trains only the new ones and
    removing seeds reuses what exists."""
    remaining, out = list(seeds), []
    for group in sorted(existing, key=lambda g: (-len(set(g) & set(seeds)), len(g), g)):
        used = tuple(s for s in remaining if s in group)
        if used:
            out.append((tuple(group), used))
            remaining = [s for s in remaining if s not in group]
    if remaining:
        out.append((tuple(sorted(remaining)), tuple(remaining)))
    return out


def has_rl(run: RunConfig) -> bool:
    """Whether the point's preset gets an RL stage."""
    return run.rl is not None and run.rl.prompts > 0 and (not run.rl.models or run.models[0] in run.rl.models)


def train_seq_len(run: RunConfig) -> int:
    """Tokens of the longest supervised training example."""
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
    rounds = max(1, run.testtime.rounds)  # re-thinking in context keeps every round in the context
    return max(train_seq_len(run), prompt + max(rounds * task.max_new_tokens(range(lo, hi + 1)), budgets))


def model_config(run: RunConfig, kind: str) -> ModelConfig:
    """The preset of ``run`` with the sequence length a stage of ``kind`` needs. Training needs only its
    examples' length; the cache length of decoding stages does not change the parameters (rotary
    positions), so one trained model serves every eval setting."""
    max_len = train_seq_len(run) if kind == "train" else model_max_len(run)
    vocab = get_task(run.task).tokenizer.vocab_size
    settings = {name: getattr(run, name) for name in MODEL_CHOICES}
    return get_preset(run.models[0], max_len=max_len, vocab_size=vocab, **settings)


def epochs(run: RunConfig, kind: str) -> float | None:
    """Passes a train or rl stage makes over the training problems of a finite problem set in its
    difficulty range (examples or prompts drawn / problems); None for a generated task or another kind."""
    task = get_task(run.task)
    have = task.problem_counts("train")
    if kind not in ("train", "rl") or have is None:
        return None
    if kind == "train":
        (lo, hi), drawn = run.train.difficulties, run.train.batch_size
        drawn *= total_steps(run.train, model_config(run, "train"), train_seq_len(run))
    else:
        (lo, hi), drawn = run.rl.difficulties or run.train.difficulties, run.rl.steps * run.rl.prompts_per_step
    return drawn / max(1, sum(have.get(d, 0) for d in range(lo, hi + 1)))


def _warn_repeats(plan: Plan) -> None:
    """One warning per stage kind whose budget draws a finite problem set's training split more than once,
    and one where an evaluation asks for more problems of a difficulty than its held-out split has (the
    held-out problems are then scored more than once, and intervals count them as independent)."""
    for kind, what in (("train", "supervised training"), ("rl", "RL")):
        passes = [(epochs(plan.runs[n], kind) or 0.0, plan.runs[n]) for n, s in plan.stages.items() if s.kind == kind]
        most, run = max(passes, key=lambda p: p[0], default=(0.0, None))
        if most > 1:
            task = get_task(run.task)
            warnings.warn(
                f"{plan.source}: {what} repeats the training problems of task {task.name!r} "
                f"({task.source}) up to {most:.1f} times (epochs); `--dry-run` lists them per stage",
                stacklevel=3,
            )
    short = {}
    for name, stage in plan.stages.items():
        run = plan.runs[name]
        task = get_task(run.task)
        held_out = task.problem_counts("eval") if stage.kind == "eval" else None
        if held_out is None:
            continue
        lo, hi = run.eval.difficulties
        tt = run.testtime
        want = max(run.eval.n_per_difficulty, tt.n_per_difficulty if tt.budgets or tt.ks or tt.rounds else 0)
        for d in range(lo, hi + 1):
            if held_out.get(d, 0) < want:
                short.setdefault((task.name, task.source), {})[d] = (held_out.get(d, 0), want)
    for (name, source), by_level in short.items():
        levels = ", ".join(f"difficulty {d}: {have} < {want}" for d, (have, want) in by_level.items())
        warnings.warn(
            f"{plan.source}: evaluation scores some held-out problems of task {name!r} ({source}) more than once, "
            f"since it asks for more problems than the held-out split has ({levels}); lower eval.n_per_difficulty",
            stacklevel=3,
        )


def estimate_flops(run: RunConfig, kind: str) -> float:
    """Model FLOPs of a stage over all seeds (``scaling.specs.flops_per_token`` convention)."""
    cfg, R = model_config(run, kind), len(run.seeds)
    if kind == "train":
        T = train_seq_len(run)
        return R * total_steps(run.train, cfg, T) * run.train.batch_size * T * flops_per_token(cfg, T)["train"]
    ec = run.eval
    levels = range(ec.difficulties[0], ec.difficulties[1] + 1)
    L = model_max_len(run)
    eval_tokens = len(levels) * ec.n_per_difficulty * L * (1 + ec.samples)
    if kind == "rl":
        rc = run.rl
        fwd = flops_per_token(cfg, L)["forward"]
        rollout = rc.prompts_per_step * rc.group_size * L
        per_step = rollout * fwd * (1 + 3 * rc.inner_epochs)
        return R * (rc.steps * per_step + len(rc.ladder_volumes()) * eval_tokens * fwd)
    tt = run.testtime
    tt_tokens = len(levels) * tt.n_per_difficulty * L * (bool(tt.budgets) + max(tt.ks, default=0) + tt.rounds)
    return R * (eval_tokens + tt_tokens) * flops_per_token(cfg, L)["forward"]


def make_plan(
    config_path: str | Path,
    overrides: list[str] = (),
    seed_groups: dict[str, list[tuple[int, ...]]] | None = None,
    track: list[str] = (),
) -> Plan:
    """Read, override, validate and expand a sweep config into points and deduplicated stages.

    ``seed_groups`` (``seed_family`` -> seed groups already in the output directory, from
    ``scaling.store.seed_groups``) lets a point reuse training stages of some of its seeds; ``track``
    adds trackers to the config's ``track`` list."""
    where = str(config_path)
    raw = read_yaml(config_path)
    from_config, wandb = check_trackers(raw.pop("track", None) or [], raw.pop("wandb", None), where)
    trackers = tuple(dict.fromkeys([*from_config, *check_trackers(list(track), None, "the command line (--track)")[0]]))
    for text in overrides:
        path, value = parse_override(text)
        if path.split(".")[0] not in ("axes", "zip"):
            _setting_type(path, f"{where}: --set")
            swept = [k for k in ("axes", "zip") if isinstance(raw.get(k), dict) and path in raw[k]]
            if swept:
                raise ConfigError(
                    f"{where}: --set {path}: the setting is swept by {swept[0]}.{path}; "
                    f"override the sweep instead: --set {swept[0]}.{path}=[...]"
                )
        _set(raw, path, value)
    names, expanded = expand(raw, where)
    stages: dict[str, Stage] = {}
    runs: dict[str, RunConfig] = {}
    points = []
    for i, (axes, run) in enumerate(expanded):
        family = seed_family(point_stages(run)[0].settings)
        groups = []
        for group, used in split_seeds(run.seeds, (seed_groups or {}).get(family, [])):
            group_run = dataclasses.replace(run, seeds=group)
            own = point_stages(group_run)
            for s in own:
                stages.setdefault(s.name, s)
                runs.setdefault(s.name, group_run)
            groups.append(SeedGroup(group, used, {s.kind: s.name for s in own}))
        points.append(Point(i, axes, run, tuple(groups)))
    order = {"train": 0, "rl": 1, "eval": 2}
    ordered = dict(sorted(stages.items(), key=lambda kv: order[kv[1].kind]))
    recorded = raw | ({"track": list(trackers)} if trackers else {}) | ({"wandb": wandb} if wandb else {})
    plan = Plan(where, recorded, names, points, ordered, runs, trackers, wandb)
    _warn_repeats(plan)
    return plan


def dry_run_doc(plan: Plan, status: dict[str, str]) -> dict:
    """``scaling run --dry-run --json``: the points with their axis values, seed groups and stages; every
    stage with its kind, status, estimated FLOPs and the points that use it; what is cached and what is
    left to compute."""
    stages = []
    for name, stage in plan.stages.items():
        stages.append(
            {
                "name": name,
                "kind": stage.kind,
                "status": status.get(name, "pending"),
                "flops": estimate_flops(plan.runs[name], stage.kind),
                "epochs": epochs(plan.runs[name], stage.kind),
                "points": plan.users(name),
            }
        )
    left = [s for s in stages if s["status"] != "done"]
    return {
        "config": plan.source,
        "axes": plan.axis_names,
        "seeds": list(plan.points[0].run.seeds),
        "points": [
            {
                "index": p.index,
                "axes": p.axes,
                "seed_groups": [{"seeds": list(g.seeds), "used": list(g.used), "stages": g.stages} for g in p.groups],
            }
            for p in plan.points
        ],
        "stages": stages,
        "cached": {k: sum(s["status"] == k for s in stages) for k in ("done", "failed", "claimed")},
        "to_compute": {"stages": len(left), "flops": sum(s["flops"] for s in left)},
    }


def describe(plan: Plan, status: dict[str, str]) -> str:
    """The dry-run text: ``dry_run_doc`` as lines."""
    doc = dry_run_doc(plan, status)
    lines = [
        f"{doc['config']}: {len(doc['points'])} points x {len(doc['seeds'])} seeds, "
        f"{len(doc['stages'])} stages; axes: {', '.join(doc['axes']) or '(none)'}"
    ]
    for p in doc["points"]:
        values = ", ".join(f"{k}={v}" for k, v in p["axes"].items()) or "(base)"
        names = [n for g in p["seed_groups"] for n in g["stages"].values()]
        lines.append(f"  point {p['index']:3d}  {values}  -> {' '.join(names)}")
    lines.append(f"  {'stage':24s} {'status':8s} {'est. FLOPs':>10s}  points")
    for s in doc["stages"]:
        passes = "" if s["epochs"] is None else f"  ({s['epochs']:.1f} epochs over the training problems)"
        lines.append(f"  {s['name']:24s} {s['status']:8s} {s['flops']:10.2e}  {len(s['points'])}{passes}")
    cached, left = doc["cached"], doc["to_compute"]
    lines.append(
        f"cached: {cached['done']} done, {cached['failed']} failed, {cached['claimed']} claimed; "
        f"to compute: {left['stages']} stages, about {left['flops']:.2e} FLOPs"
    )
    return "\n".join(lines)
