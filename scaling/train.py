"""Supervised training on reasoning traces: AdamW, warmup + cosine, curriculum, seeds in one program.

The whole step loop of a chunk is one compiled ``lax.scan``; seeds (and their numeric
hyperparameters, which are traced values) go through ``over_seeds``, so one program serves every
seed and learning rate of a model shape. The batch axis is sharded over a data-parallel device mesh that
collapses to a single device on a CPU. Data for chunk c of seed s comes from
``numpy.random.default_rng([s, c])``, so a run restored from a checkpoint continues bit-identically.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from scaling.config import ConfigError, TrainConfig
from scaling.model import ModelConfig, apply, init_params, param_counts
from scaling.tasks import Task, generate

# Performance notes (2-core AVX-512 CPU, XLA 0.10; figures from ``scaling bench``): the d96 step
# reaches 0.35-0.37 of a dense matmul's FLOP rate, about 1.4x faster than with XLA's autodiff of the
# attention and a GELU MLP (see model.attention and model.relu_squared). On a CPU, XLA's batched
# (per-seed) matmuls run slower per element than unbatched ones: 8 vmapped seeds of d32 cost
# ~9.8x one seed, lax.map over seeds ~7.7x, and even the step's largest matmul alone costs 5.8x
# for 8 batched copies. ``over_seeds`` therefore maps on CPUs.

HYPERPARAMS = ("lr", "warmup", "total", "weight_decay", "grad_clip")


def over_seeds(fn: Callable, *args_S, how: str | None = None):
    """``fn`` applied to each slice of ``args_S`` along their leading seed axis, in one program:
    ``how="vmap"`` batches the seeds, ``"map"`` loops over them (``lax.map``). By default vmap on
    accelerators and map on a CPU, where it measured faster (see above)."""
    how = how or ("map" if jax.default_backend() == "cpu" else "vmap")
    if how == "map":
        return jax.lax.map(lambda args: fn(*args), args_S)
    return jax.vmap(fn)(*args_S)


HYPERPARAMS = ("lr", "warmup", "total", "weight_decay", "grad_clip")


def lr_for(cfg: ModelConfig) -> float:
    """Peak learning rate from width (muP-like 1/sqrt(width) decay): 3e-3 * sqrt(64 / d_model)."""
    return 3e-3 * math.sqrt(64.0 / cfg.d_model)


def total_steps(tc: TrainConfig, cfg: ModelConfig, seq_len: int) -> int:
    """Steps from ``steps`` or the token budget, rounded up to whole chunks."""
    steps = tc.steps
    if steps is None:
        tokens = tc.tokens_per_param * param_counts(cfg)["total"]
        steps = max(tc.min_steps, math.ceil(tokens / (tc.batch_size * seq_len)))
    return math.ceil(steps / tc.chunk_steps) * tc.chunk_steps


def hyperparams(tc: TrainConfig, cfg: ModelConfig, steps: int, n_seeds: int) -> dict[str, jax.Array]:
    """Per-seed numeric hyperparameters as arrays: traced, so changing them never recompiles."""
    lr = tc.lr if tc.lr is not None else lr_for(cfg)
    values = {
        "lr": lr,
        "warmup": max(1.0, tc.warmup_frac * steps),
        "total": float(steps),
        "weight_decay": tc.weight_decay,
        "grad_clip": tc.grad_clip,
    }
    return {k: jnp.full((n_seeds,), v, jnp.float32) for k, v in values.items()}


def make_tx(hp: dict[str, jax.Array]) -> optax.GradientTransformation:
    """Clipping, then AdamW (no decay on norm scales) with linear warmup and cosine decay to 0."""

    def schedule(count):
        count = count.astype(jnp.float32)
        warm = (count + 1.0) / hp["warmup"]
        progress = jnp.clip((count - hp["warmup"]) / jnp.maximum(hp["total"] - hp["warmup"], 1.0), 0.0, 1.0)
        return hp["lr"] * jnp.where(count < hp["warmup"], warm, 0.5 * (1.0 + jnp.cos(jnp.pi * progress)))

    return optax.chain(
        optax.clip_by_global_norm(hp["grad_clip"]),
        optax.adamw(
            schedule,
            b1=0.9,
            b2=0.98,
            weight_decay=hp["weight_decay"],
            mask=lambda p: jax.tree.map(lambda x: x.ndim > 1, p),
        ),
    )


def loss_fn(cfg: ModelConfig, params, tokens_BxT, mask_BxT1) -> jax.Array:
    """Mean next-token cross-entropy over the masked (thinking and answer) positions."""
    logits_BxT1xV = apply(cfg, params, tokens_BxT[:, :-1])
    targets_BxT1xV = jax.nn.one_hot(tokens_BxT[:, 1:], cfg.vocab_size, dtype=logits_BxT1xV.dtype)
    nll_BxT1 = jax.nn.logsumexp(logits_BxT1xV, axis=-1) - jnp.sum(targets_BxT1xV * logits_BxT1xV, axis=-1)
    return jnp.sum(nll_BxT1 * mask_BxT1) / jnp.maximum(jnp.sum(mask_BxT1), 1.0)


def init_state(cfg: ModelConfig, seeds, hp) -> dict:
    """Training state of every seed, stacked on a leading axis."""
    keys = jax.vmap(jax.random.key)(jnp.asarray(seeds, jnp.uint32))
    params = jax.vmap(lambda k: init_params(cfg, k))(keys)
    opt = jax.vmap(lambda p, h: make_tx(h).init(p))(params, hp)
    return {"params": params, "opt": opt, "step": jnp.zeros((len(seeds),), jnp.int32)}


def train_step(cfg: ModelConfig, state: dict, tokens_BxT, mask_BxT1, hp) -> tuple[dict, dict]:
    loss, grads = jax.value_and_grad(lambda p: loss_fn(cfg, p, tokens_BxT, mask_BxT1))(state["params"])
    updates, opt = make_tx(hp).update(grads, state["opt"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    return {"params": params, "opt": opt, "step": state["step"] + 1}, {
        "loss": loss,
        "grad_norm": optax.tree.norm(grads),
    }


@functools.partial(jax.jit, static_argnames=("cfg", "seeds_how"), donate_argnames=("state",))
def train_chunk(
    cfg: ModelConfig, state: dict, tokens_SxKxBxT, mask_SxKxBxT1, hp, seeds_how: str | None = None
) -> tuple[dict, dict]:
    """K steps for every seed: scan over steps inside, ``over_seeds`` outside; metrics (S, K)."""

    def one_seed(state, tokens_KxBxT, mask_KxBxT1, hp):
        return jax.lax.scan(lambda s, batch: train_step(cfg, s, *batch, hp), state, (tokens_KxBxT, mask_KxBxT1))

    return over_seeds(one_seed, state, tokens_SxKxBxT, mask_SxKxBxT1, hp, how=seeds_how)


def max_difficulty(tc: TrainConfig, step: np.ndarray, steps: int) -> np.ndarray:
    """Curriculum: the hardest difficulty grows linearly over ``curriculum_frac`` of training."""
    lo, hi = tc.difficulties
    if tc.curriculum_frac == 0:
        return np.full_like(step, hi)
    progress = np.minimum(step / (tc.curriculum_frac * steps), 1.0)
    return np.minimum(lo + np.floor(progress * (hi - lo + 1)).astype(int), hi)


def chunk_batches(task: Task, tc: TrainConfig, seed: int, chunk: int, steps: int, seq_len: int):
    """Tokens (K, B, T) and loss mask (K, B, T-1) for chunk ``chunk`` of seed ``seed``."""
    K, B = tc.chunk_steps, tc.batch_size
    rng = np.random.default_rng([seed, chunk])
    step = chunk * K + np.arange(K)
    d = rng.integers(tc.difficulties[0], max_difficulty(tc, step, steps)[:, None] + 1, (K, B))
    ex = generate(
        task, d.ravel(), rng, split="train", cut_frac=tc.cut_frac, corrupt_frac=tc.corrupt_frac, seq_len=seq_len
    )
    return ex.tokens.reshape(K, B, seq_len), ex.loss_mask.reshape(K, B, seq_len - 1)


def data_mesh(batch_size: int) -> Mesh:
    """A 1-D 'data' mesh over all local devices (one device on a CPU)."""
    devices = jax.devices()
    if batch_size % len(devices):
        raise ConfigError(
            f"train.batch_size {batch_size} must be divisible by the {len(devices)} devices of the data mesh"
        )
    return Mesh(np.array(devices), ("data",))


def global_array(x: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """A global array from the full host batch: every process generates the same batch from the
    seed and contributes only its own shards, so the same code runs on one device or many hosts."""
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def checkpoint_meta(cfg: ModelConfig, task: Task, seeds) -> dict:
    """What a checkpoint must agree on to be resumed or evaluated: task, vocabulary, shape, seeds."""
    return {
        "task": task.name,
        "vocab_size": cfg.vocab_size,
        "d_model": cfg.d_model,
        "n_layers": cfg.n_layers,
        "n_heads": cfg.n_heads,
        "d_ff": cfg.d_ff,
        "seeds": [int(s) for s in seeds],
    }


def load_params(checkpoint_dir: str | Path, cfg: ModelConfig, task: Task, seeds) -> object:
    """Parameters of every seed from the newest chunk of a training checkpoint (checked against
    the task, vocabulary and model shape the caller expects)."""
    from scaling.checkpoint import latest_chunk, restore
    from scaling.errors import ScalingError

    chunk = latest_chunk(checkpoint_dir)
    if chunk is None:
        raise ScalingError(f"{checkpoint_dir}: no checkpoint chunk found")
    tc = TrainConfig(steps=1)
    like = init_state(cfg, seeds, hyperparams(tc, cfg, 1, len(seeds)))
    meta_path = Path(checkpoint_dir) / "meta.json"
    if meta_path.is_file() and json.loads(meta_path.read_text()).get("layout") == "params":
        like = {"params": like["params"]}  # parameters only (e.g. after RL)
    state, _ = restore(checkpoint_dir, chunk, like, expect=checkpoint_meta(cfg, task, seeds))
    return state["params"]


@dataclass
class TrainResult:
    state: dict
    loss_SxN: np.ndarray  # per seed, per step
    steps: int
    seq_len: int
    resumed_from: int  # chunk a restored checkpoint resumed at (0: fresh)


def train(
    cfg: ModelConfig,
    task: Task,
    tc: TrainConfig,
    seeds: list[int],
    checkpoint_dir: str | Path | None = None,
    on_chunk: Callable[[int, int, np.ndarray], None] | None = None,
    stop_after_chunks: int | None = None,
) -> TrainResult:
    """Train one model shape for every seed; resume from ``checkpoint_dir`` if it holds a chunk."""
    from scaling.checkpoint import latest_chunk, restore, save

    seq_len = task.seq_len(range(tc.difficulties[0], tc.difficulties[1] + 1))
    steps = total_steps(tc, cfg, seq_len)
    n_chunks = steps // tc.chunk_steps
    mesh = data_mesh(tc.batch_size)
    replicated = NamedSharding(mesh, P())
    batch_sharding = NamedSharding(mesh, P(None, None, "data", None))
    hp = jax.device_put(hyperparams(tc, cfg, steps, len(seeds)), replicated)
    state = jax.device_put(init_state(cfg, seeds, hp), replicated)
    losses: list[np.ndarray] = []
    start = 0
    # Resuming also requires the same schedule and data stream, not just the same shapes.
    meta = checkpoint_meta(cfg, task, seeds) | {
        "steps": steps,
        "batch_size": tc.batch_size,
        "lr": float(hp["lr"][0]),
        "difficulties": list(tc.difficulties),
        "cut_frac": tc.cut_frac,
        "corrupt_frac": tc.corrupt_frac,
        "chunk_steps": tc.chunk_steps,
    }
    if checkpoint_dir is not None and (found := latest_chunk(checkpoint_dir)) is not None:
        state, losses = restore(checkpoint_dir, found, state, expect=meta)
        state = jax.device_put(state, replicated)
        losses = [losses]
        start = found + 1
    for chunk in range(start, n_chunks):
        batches = [chunk_batches(task, tc, s, chunk, steps, seq_len) for s in seeds]
        tokens = global_array(np.stack([b[0] for b in batches]), batch_sharding)
        mask = global_array(np.stack([b[1] for b in batches]), batch_sharding)
        state, metrics = train_chunk(cfg, state, tokens, mask, hp)
        loss = np.asarray(metrics["loss"])  # the one host fetch per chunk
        losses.append(loss)
        if checkpoint_dir is not None:
            save(checkpoint_dir, chunk, state, np.concatenate(losses, axis=1), meta)
        if on_chunk is not None:
            on_chunk(chunk + 1, n_chunks, loss)
        if stop_after_chunks is not None and chunk + 1 - start >= stop_after_chunks:
            break
    loss_SxN = np.concatenate(losses, axis=1) if losses else np.zeros((len(seeds), 0))
    return TrainResult(state, loss_SxN, steps, seq_len, start)
