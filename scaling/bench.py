"""``scaling bench``: speed figures measured in one run, as ratios against references timed alongside."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import optimize

CHINCHILLA_CSV = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "chinchilla_fig4_points.csv"


def chinchilla_points(path: str | Path = CHINCHILLA_CSV):
    """The 240 points of the replication protocol: N, D = C / (6N), loss; 5 highest losses dropped."""
    from scaling.tables import read_table

    df = read_table(path)
    df = df.sort_values("loss", kind="stable").iloc[:-5].copy()
    df["N"] = df["Model Size"]
    df["D"] = df["Training FLOP"] / (6.0 * df["N"])
    return df


def _timed(fn: Callable[[], object]) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def _chinchilla_objective(theta, logN, logD, logL, delta=1e-3):
    """Summed Huber loss of the published protocol and its gradient, in numpy (for scipy)."""
    a, b, e, alpha, beta = theta
    terms = np.stack([a - alpha * logN, b - beta * logD, np.full_like(logN, e)])
    m = terms.max(axis=0)
    w = np.exp(terms - m)
    s = w.sum(axis=0)
    r = logL - (m + np.log(s))
    absr = np.abs(r)
    f = np.sum(np.where(absr <= delta, 0.5 * r * r, delta * (absr - 0.5 * delta)))
    dr = -np.clip(r, -delta, delta)  # d rho / d lse
    w = w / s
    grad = np.array(
        [
            np.sum(dr * w[0]),
            np.sum(dr * w[1]),
            np.sum(dr * w[2]),
            np.sum(dr * w[0] * -logN),
            np.sum(dr * w[1] * -logD),
        ]
    )
    return f, grad


def bench_fit(n_scipy_starts: int = 24) -> dict[str, float]:
    """Chinchilla grid (4,500 starts, 240 points) against a scipy BFGS loop with the exact
    gradient on a sample of the same starts; a 1,000-resample bootstrap of a 20-point law."""
    from scaling import laws
    from scaling.laws.forms import FORMS

    df = chinchilla_points()
    first_s, _ = _timed(lambda: laws.fit(df, ["N", "D"], "loss", "chinchilla"))
    grid_s, law = _timed(lambda: laws.fit(df, ["N", "D"], "loss", "chinchilla"))
    n_starts = law.fit_info["starts"]

    grid = FORMS["chinchilla"].starts(None, None, None)
    theta0 = np.column_stack([np.log(grid[:, 0]), np.log(grid[:, 1]), np.log(grid[:, 2]), grid[:, 3], grid[:, 4]])
    rng = np.random.default_rng(0)
    sample = theta0[rng.choice(len(theta0), n_scipy_starts, replace=False)]
    logs = np.log(df["N"].to_numpy()), np.log(df["D"].to_numpy()), np.log(df["loss"].to_numpy())

    def scipy_loop():
        best = np.inf
        for th in sample:
            # BFGS, as in the replication; L-BFGS-B's relative-f stop (denominator max(|f|, 1))
            # halts at f ~ 1e-3 long before the optimum: the known pitfall.
            res = optimize.minimize(
                _chinchilla_objective, th, args=logs, jac=True, method="BFGS", options={"gtol": 1e-12, "maxiter": 5000}
            )
            best = min(best, res.fun)
        return best

    scipy_s, scipy_best = _timed(scipy_loop)
    scipy_per_start = scipy_s / n_scipy_starts

    rng = np.random.default_rng(1)
    x = np.logspace(3, 7, 20)
    y = (0.05 + 3.0 * x**-0.3) * np.exp(rng.normal(0.0, 0.02, x.size))
    data = {"x": x, "y": y}
    laws.fit(data, "x", "y", "saturating_power", bootstrap=1000)  # compile
    boot_s, _ = _timed(lambda: laws.fit(data, "x", "y", "saturating_power", bootstrap=1000))
    return {
        "chinchilla_grid_s": grid_s,
        "chinchilla_grid_first_call_s": first_s,
        "chinchilla_starts": n_starts,
        "chinchilla_objective": law.fit_info["objective"],
        "per_start_s": grid_s / n_starts,
        "scipy_loop_s_per_start": scipy_per_start,
        "scipy_starts_timed": n_scipy_starts,
        "scipy_best_objective": scipy_best,
        "speedup_per_start": scipy_per_start / (grid_s / n_starts),
        "bootstrap_1000_s": boot_s,
    }


def _dense_matmul(n: int = 2048) -> tuple[Callable[[], object], float]:
    """A jitted float32 n x n matmul (compiled) and its FLOPs: the machine's practical peak."""
    import jax
    import jax.numpy as jnp

    a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), jnp.float32)
    f = jax.jit(lambda a: a @ a)
    return (lambda: f(a)), 2.0 * n**3


def _train_chunk_runner(name: str, n_seeds: int, steps: int = 20, batch: int = 64, seeds_how: str | None = None):
    """A compiled chunk of ``steps`` training steps of preset ``name`` for ``n_seeds`` seeds in one
    program: (run, seq_len, cfg), where ``run()`` executes the chunk once more."""
    from scaling.settings import TrainConfig
    from scaling.specs import get_preset
    from scaling.tasks import get_task
    from scaling.train import chunk_batches, hyperparams, init_state, train_chunk

    task = get_task("add")
    tc = TrainConfig(steps=steps, chunk_steps=steps, batch_size=batch, difficulties=(1, 6))
    seq_len = task.seq_len(range(1, 7))
    cfg = get_preset(name, max_len=seq_len)
    hp = hyperparams(tc, cfg, steps, n_seeds)
    state = init_state(cfg, list(range(n_seeds)), hp)
    data = [chunk_batches(task, tc, s, 0, steps, seq_len) for s in range(n_seeds)]
    tokens, mask = np.stack([d[0] for d in data]), np.stack([d[1] for d in data])

    def run():
        nonlocal state  # donated: each run continues from the last
        state, metrics = train_chunk(cfg, state, tokens, mask, hp, seeds_how)
        return metrics

    return run, seq_len, cfg


def bench_train(steps: int = 20, presets: tuple[str, ...] | None = None, repeats: int = 7) -> dict:
    """Training throughput of the CPU presets against a dense matmul timed in the same run."""
    from scaling.specs import CPU_PRESETS, flops_per_token, param_counts

    presets = presets or CPU_PRESETS
    matmul, matmul_flops = _dense_matmul()
    out: dict = {"batch": 64, "dense_matmul_gflops": 0.0}
    for name in presets:
        run, seq_len, cfg = _train_chunk_runner(name, 1, steps)
        chunk_s, matmul_s = _best_of(run, matmul, repeats=repeats)
        step_s, peak = chunk_s / steps, matmul_flops / matmul_s
        out["dense_matmul_gflops"] = max(out["dense_matmul_gflops"], peak / 1e9)
        tokens = 64 * (seq_len - 1)
        model_flops = flops_per_token(cfg, seq_len - 1)["train"] * tokens / step_s
        out[name] = {
            "params": param_counts(cfg)["total"],
            "step_ms": step_s * 1e3,
            "tokens_per_s": tokens / step_s,
            "model_gflops": model_flops / 1e9,
            "fraction_of_matmul": model_flops / peak,  # against the matmul timed alongside
        }
    # 8 seeds in one program over 1, as the toolkit batches them here (``train.over_seeds``), and
    # with each of its two layouts forced.
    one, seq_len, cfg = _train_chunk_runner(presets[0], 1, steps)
    eights = [_train_chunk_runner(presets[0], 8, steps, seeds_how=how)[0] for how in (None, "vmap", "map")]
    one_s, *eight_s = _best_of(one, *eights, repeats=repeats)
    for key, s in zip(("vmap_seeds_cost", "seeds_cost_vmap", "seeds_cost_map"), eight_s, strict=True):
        out[key] = s / one_s
    # The most that batching seeds can buy here: the same ratio for the step's largest matmul
    # (the MLP up-projection of 64 x (T-1) tokens) alone, the op that gains most from a batch axis.
    rows = 64 * (seq_len - 1)
    eight_mm, one_mm = _best_of(*(_batched_matmul(n, rows, cfg.d_model, cfg.d_ff) for n in (8, 1)), repeats=4 * repeats)
    out["vmap_matmul_cost"] = eight_mm / one_mm
    return out


def _batched_matmul(n: int, rows: int, d_in: int, d_out: int) -> Callable[[], object]:
    """``n`` independent (rows, d_in) @ (d_in, d_out) float32 matmuls in one jitted program."""
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((n, rows, d_in)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((n, d_in, d_out)), jnp.float32)
    f = jax.jit(lambda x, w: jnp.einsum("nrd,ndf->nrf", x, w))
    return lambda: f(x, w)


def bench_tasks(n: int = 20_000) -> dict:
    """Examples generated per second by each task (difficulty 4, 30% cut traces, train split; ``path_long``,
    whose graphs have 100 nodes there, on a twentieth as many)."""
    from scaling.tasks import TASKS, generate

    out = {}
    for name, task in TASKS.items():
        d = np.full(n // 20 if name == "path_long" else n, 4)
        generate(task, d[:1000], np.random.default_rng(0), cut_frac=0.3)
        seconds, _ = _timed(lambda task=task, d=d: generate(task, d, np.random.default_rng(1), cut_frac=0.3))
        out[f"{name}_examples_per_s"] = len(d) / seconds
    return out


def _best_of(*fns: Callable[[], object], repeats: int = 7):
    """Best wall time of each function (compiled first) over ``repeats`` rounds. The functions
    alternate within a round, so that drifts in the machine's speed (up to 25% over seconds here)
    hit all of them alike and their ratios hold. One function: a float; several: a list."""
    import jax

    for fn in fns:
        jax.block_until_ready(fn())
    best = [np.inf] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            best[i] = min(best[i], _timed(lambda fn=fn: jax.block_until_ready(fn()))[0])
    return best[0] if len(fns) == 1 else best


def bench_sample(
    batch: int = 64, new_tokens: int = 48, presets: tuple[str, ...] | None = None, repeats: int = 7
) -> dict:
    """Greedy KV-cache decoding speed of the CPU presets, and the cost of 8 thinking budgets from
    one pass (``decode_budgets``) over the largest budget decoded alone."""
    import jax

    from scaling.model import init_params
    from scaling.sample import budgets_width, decode, decode_budgets, left_pad
    from scaling.specs import CPU_PRESETS, get_preset
    from scaling.tasks import generate, get_task

    task = get_task("add")
    ex = generate(task, np.full(batch, 4), np.random.default_rng(0), split="eval")
    prompts, valid = left_pad(ex.tokens, ex.prompt_len)
    out: dict = {"batch": batch}
    presets = presets or CPU_PRESETS
    for name in presets:
        cfg = get_preset(name, max_len=128)
        params = init_params(cfg, jax.random.key(0))
        s = _best_of(
            lambda cfg=cfg, params=params: decode(cfg, params, prompts, valid, jax.random.key(0), max_new=new_tokens),
            repeats=repeats,
        )
        out[f"{name}_decode_tokens_per_s"] = batch * new_tokens / s
    cfg = get_preset(presets[-1], max_len=128)
    params = init_params(cfg, jax.random.key(0))
    budgets, answer_len = (0, 1, 2, 4, 8, 16, 32, 64), 6
    width = budgets_width(budgets, answer_len)
    alone, together = _best_of(
        lambda: decode(cfg, params, prompts, valid, jax.random.key(0), budget=max(budgets), max_new=width),
        lambda: decode_budgets(cfg, params, prompts, valid, budgets=budgets, answer_len=answer_len),
        repeats=repeats,
    )
    out["budgets"] = list(budgets)
    out["budgets_cost"] = together / alone
    out.update(_long_budgets(cfg, params, repeats))
    return out


def _long_budgets(cfg, params, repeats: int, batch: int = 16) -> dict:
    """Every budget from one pass on long search traces (``path`` at its largest graphs, budgets 0-256)
    against the largest budget decoded alone, with the memory the pass holds: the KV cache (keys and
    values, float32, the shared prefix plus every branch's answer slots) and XLA's temporary buffers."""
    from dataclasses import replace

    import jax

    from scaling.sample import budgets_width, decode, decode_budgets, left_pad
    from scaling.tasks import generate, get_task

    task = get_task("path")
    ex = generate(task, np.full(batch, task.max_difficulty), np.random.default_rng(0), split="eval")
    prompts, valid = left_pad(ex.tokens, ex.prompt_len)
    budgets, answer_len = (0, 4, 8, 16, 32, 64, 128, 256), int(ex.answer_len.max()) + 1
    width = budgets_width(budgets, answer_len)
    long = replace(cfg, max_len=prompts.shape[1] + width)
    kw = dict(budgets=budgets, answer_len=answer_len)
    alone, together = _best_of(
        lambda: decode(long, params, prompts, valid, jax.random.key(0), budget=max(budgets), max_new=width),
        lambda: decode_budgets(long, params, prompts, valid, **kw),
        repeats=max(2, repeats // 2),
    )
    slots = long.max_len + len(budgets) * answer_len
    cache_bytes = 2 * long.n_layers * batch * long.n_heads * slots * long.head_dim * 4
    memory = decode_budgets.lower(long, params, prompts, valid, **kw).compile().memory_analysis()
    temp = getattr(memory, "temp_size_in_bytes", None) if memory is not None else None
    return {
        "long_budgets": list(budgets),
        "long_budgets_context": long.max_len,
        "long_budgets_cost": together / alone,
        "long_kv_cache_mb": cache_bytes / 2**20,
        "long_temp_mb": None if temp is None else temp / 2**20,
    }


def _rl_setup(preset: str, prompts: int, group_size: int):
    """An RL step's inputs on addition (difficulty 4) for ``preset``: task, config, params, hyperparameters,
    the prompt batch and the static spec."""
    import jax

    from scaling.model import init_params
    from scaling.optim import constant
    from scaling.rl import PromptBatch, RLHyper, RLSpec
    from scaling.sample import left_pad
    from scaling.specs import get_preset
    from scaling.tasks import generate, get_task

    task = get_task("add")
    max_new = task.max_new_tokens(range(1, 5))
    ex = generate(task, np.full(prompts, 4), np.random.default_rng(0), split="train")
    p, v = left_pad(ex.tokens, ex.prompt_len)
    cfg = get_preset(preset, max_len=p.shape[1] + max_new)
    hp = RLHyper(constant(1e-4), np.float32(1.0), np.float32(0.0), np.float32(0.0))
    spec = RLSpec(group_size=group_size, max_new=max_new)
    return task, cfg, init_params(cfg, jax.random.key(0)), hp, PromptBatch(p, v, ex.key), spec


def bench_rl(preset: str | None = None, prompts: int = 16, group_size: int = 8, repeats: int = 5) -> dict:
    """One RL step (sample Q completions per prompt, check, advantages, update) of ``preset`` (default: the
    largest CPU preset): completions per second, and the share of the step spent sampling (the same decode
    alone)."""
    import jax

    from scaling.optim import TrainState, optimizer
    from scaling.rl import B2, rl_step
    from scaling.sample import decode
    from scaling.specs import CPU_PRESETS

    preset = preset or CPU_PRESETS[-1]
    _, cfg, params, hp, batch, spec = _rl_setup(preset, prompts, group_size)
    state = TrainState(np.int32(0), params, optimizer(hp.optim, b2=B2).init(params))
    key = jax.random.key(1)
    pg, vg = np.repeat(batch.prompts_PxL, group_size, 0), np.repeat(batch.valid_PxL, group_size, 0)
    step, sample = _best_of(
        lambda: rl_step(cfg, state, params, batch, key, hp, spec=spec)[1]["loss"],
        lambda: decode(cfg, params, pg, vg, key, hp.temperature, max_new=spec.max_new),
        repeats=repeats,
    )
    return {
        "model": preset,
        "completions_per_step": prompts * group_size,
        "completions_per_s": prompts * group_size / step,
        "step_ms": step * 1e3,
        "sampling_share": sample / step,
    }


def bench_rl_host(
    preset: str = "d64", prompts: int = 16, group_size: int = 8, chunk: int = 4, repeats: int = 3
) -> dict:
    """RL with the checker on the host: ``host_path_cost``, a chunk of ``chunk`` steps (one seed) that
    samples in one program, scores on the host and updates in another (``rl_chunk_host``) over the same
    steps fused in one program (``rl_chunk``), same task and keys; ``host_check_ms``, the host scoring
    alone of one step's completions of the example problem set."""
    import jax
    import jax.numpy as jnp

    from scaling.optim import TrainState, optimizer
    from scaling.rl import B2, rl_chunk, rl_chunk_host

    _, cfg, params, hp, batch, spec = _rl_setup(preset, prompts, group_size)
    opt = optimizer(hp.optim, b2=B2).init(params)
    state_R = jax.tree.map(lambda x: jnp.asarray(x)[None], TrainState(np.int32(0), params, opt))
    ref_R = jax.tree.map(lambda x: x[None], params)
    batches_R = jax.tree.map(lambda x: np.broadcast_to(x, (1, chunk, *x.shape)), batch)
    keys_R = jax.random.split(jax.random.key(1), chunk)[None]

    def run(chunk_fn):
        return chunk_fn(cfg, jax.tree.map(jnp.copy, state_R), ref_R, batches_R, keys_R, hp, spec=spec)[1]

    fused, host = _best_of(lambda: run(rl_chunk)["loss"], lambda: run(rl_chunk_host)["loss"], repeats=repeats)
    return {
        "model": preset,
        "completions_per_step": prompts * group_size,
        "host_path_cost": host / fused,
        "host_check_ms": _host_check_ms(prompts * group_size) * 1e3,
    }


def _host_check_ms(n: int) -> float:
    """Seconds to score n completions of the example problem set (numeric checker) on the host: the
    reference traces and answers, scored against their own problems for half of the rows and against
    another problem's for the other half."""
    from scaling.tasks import generate
    from scaling.tasks.answers import AnswerChecker
    from scaling.tasks.problems import file_task

    task = file_task(Path(__file__).parents[1] / "examples/word_problems/word_problems.jsonl", AnswerChecker("numeric"))
    ex = generate(task, np.full(n, 2), np.random.default_rng(0), split="train")
    T = ex.tokens.shape[1]
    gen_NxG = np.zeros((n, T), np.int32)
    for i, p in enumerate(ex.prompt_len):
        gen_NxG[i, : T - p] = ex.tokens[i, p:]
    key_NxY = np.where(np.arange(n)[:, None] % 2 == 0, ex.key, np.roll(ex.key, 1, 0))
    return _best_of(lambda: task.check(gen_NxG, key_NxY), repeats=5)


def bench_tracking(preset: str = "d64", steps: int = 400, repeats: int = 3) -> dict:
    """The cost of TensorBoard tracking: one training stage (3 seeds, chunks of 100 steps, checkpoints
    and metrics.jsonl included) with and without the tracker, ``repeats`` pairs after a warm-up that
    compiles and imports the writer, each pair in the order opposite to the one before (a drift of the
    machine's speed favours neither); ``tracking_cost`` = tracked / untracked seconds, summed."""
    import tempfile

    from scaling.config import RunConfig
    from scaling.settings import TrainConfig
    from scaling.stages import train_stage
    from scaling.track import Metrics, TensorBoard

    train = TrainConfig(steps=steps, batch_size=16, difficulties=(1, 4), chunk_steps=min(100, steps))
    run = RunConfig(task="add", models=(preset,), seeds=(0, 1, 2), train=train)

    def stage(tracked: bool) -> float:
        with tempfile.TemporaryDirectory() as d:
            out = Path(d)
            metrics = Metrics(out / "metrics.jsonl", [TensorBoard(out / "tb", "train")] if tracked else [])
            t = time.perf_counter()
            train_stage(run, out, [], lambda msg: None, lambda done, total: None, metrics)
            metrics.close()
            return time.perf_counter() - t

    stage(False)  # compiles
    import tensorboardX  # noqa: F401  (imported before the timings)

    times = {False: [], True: []}
    for i in range(repeats):
        for with_tracker in (False, True) if i % 2 == 0 else (True, False):
            times[with_tracker].append(stage(with_tracker))
    plain, tracked = times[False], times[True]
    return {
        "preset": preset,
        "steps": steps,
        "stage_s": float(np.median(plain)),
        "stage_tracked_s": float(np.median(tracked)),
        "tracking_cost": sum(tracked) / sum(plain),
    }


SECTIONS: dict[str, Callable[[], dict]] = {
    "fit": bench_fit,
    "tasks": bench_tasks,
    "train": bench_train,
    "sample": bench_sample,
    "rl": bench_rl,
    "rl_host": bench_rl_host,
    "tracking": bench_tracking,
}


def run_bench(sections: list[str] | None = None) -> dict[str, dict]:
    """Run the named sections (all by default) and return {section: figures}."""
    from scaling.errors import ScalingError

    names = sections or list(SECTIONS)
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        raise ScalingError(f"unknown bench section(s) {unknown}; known: {sorted(SECTIONS)}")
    return {name: SECTIONS[name]() for name in names}
