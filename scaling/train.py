"""Supervised training on reasoning traces: AdamW, warmup + cosine, curriculum, seeds in one program.

The whole step loop of a chunk is one compiled ``lax.scan``; seeds (and their numeric
hyperparameters, which are traced values) go through ``over_seeds``, so one program serves every
seed and learning rate of a model shape. The batch axis is sharded over a data-parallel device mesh that
collapses to a single device on a CPU. Data for chunk c of seed s comes from
``numpy.random.default_rng([s, c])``, so a run restored from a checkpoint continues bit-identically.

On a CPU, XLA's batched (per-seed) matmuls run slower per element than unbatched ones, so
``over_seeds`` loops over seeds there (``scaling bench`` measures both layouts).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from scaling import checkpoint
from scaling.errors import CheckpointMismatch, ConfigError, ScalingError
from scaling.model import init_params, token_logprobs
from scaling.optim import OptimizerHP, TrainState, learning_rate, optimizer
from scaling.settings import TrainConfig, total_steps
from scaling.specs import MODEL_CHOICES, ModelConfig, lr_for
from scaling.tasks import Task, generate

B2 = 0.98  # Adam's second-moment decay for supervised training


def over_seeds(fn: Callable, *args_R, how: str | None = None):
    """``fn`` applied to each slice of ``args_R`` along their leading seed axis R, in one program:
    ``how="vmap"`` batches the seeds, ``"map"`` loops over them (``lax.map``). By default vmap on
    accelerators and map on a CPU, where it measured faster (see the module docstring)."""
    how = how or ("map" if jax.default_backend() == "cpu" else "vmap")
    if how == "map":
        return jax.lax.map(lambda args: fn(*args), args_R)
    return jax.vmap(fn)(*args_R)


def hyperparams(tc: TrainConfig, cfg: ModelConfig, steps: int, n_seeds: int) -> OptimizerHP:
    """Per-seed optimiser settings as (R,) arrays: traced, so changing them never recompiles."""
    lr = tc.lr if tc.lr is not None else lr_for(cfg)
    values = (lr, max(1.0, tc.warmup_frac * steps), float(steps), tc.weight_decay, tc.grad_clip)
    return OptimizerHP(*(jnp.full((n_seeds,), v, jnp.float32) for v in values))


def loss_fn(cfg: ModelConfig, params, tokens_BxT, mask_BxT1) -> jax.Array:
    """Mean next-token negative log-likelihood over the masked (thinking and answer) positions."""
    nll_BxT1 = -token_logprobs(cfg, params, tokens_BxT)
    return jnp.sum(nll_BxT1 * mask_BxT1) / jnp.maximum(jnp.sum(mask_BxT1), 1.0)


def init_state(cfg: ModelConfig, seeds, hp: OptimizerHP) -> TrainState:
    """Training state of every seed, stacked on a leading axis R."""
    keys_R = jax.vmap(jax.random.key)(jnp.asarray(seeds, jnp.uint32))
    params_R = jax.vmap(lambda k: init_params(cfg, k))(keys_R)
    opt_R = jax.vmap(lambda p, h: optimizer(h, b2=B2).init(p))(params_R, hp)
    return TrainState(jnp.zeros((len(seeds),), jnp.int32), params_R, opt_R)


def train_step(cfg: ModelConfig, state: TrainState, tokens_BxT, mask_BxT1, hp: OptimizerHP):
    """One AdamW step of one seed: the new state and its loss, gradient norm and learning rate."""
    loss, grads = jax.value_and_grad(lambda p: loss_fn(cfg, p, tokens_BxT, mask_BxT1))(state.params)
    updates, opt_state = optimizer(hp, b2=B2).update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), "lr": learning_rate(hp, state.step)}
    return TrainState(state.step + 1, params, opt_state), metrics


@functools.partial(jax.jit, static_argnames=("cfg", "seeds_how"), donate_argnames=("state",))
def train_chunk(
    cfg: ModelConfig, state: TrainState, tokens_RxCxBxT, mask_RxCxBxT1, hp: OptimizerHP, seeds_how: str | None = None
) -> tuple[TrainState, dict]:
    """C steps for every seed: scan over steps inside, ``over_seeds`` outside; metrics (R, C)."""

    def one_seed(state, tokens_CxBxT, mask_CxBxT1, hp):
        return jax.lax.scan(lambda s, batch: train_step(cfg, s, *batch, hp), state, (tokens_CxBxT, mask_CxBxT1))

    return over_seeds(one_seed, state, tokens_RxCxBxT, mask_RxCxBxT1, hp, how=seeds_how)


def max_difficulty(tc: TrainConfig, step: np.ndarray, steps: int) -> np.ndarray:
    """Curriculum: the hardest difficulty grows linearly over ``curriculum_frac`` of training."""
    lo, hi = tc.difficulties
    if tc.curriculum_frac == 0:
        return np.full_like(step, hi)
    progress = np.minimum(step / (tc.curriculum_frac * steps), 1.0)
    return np.minimum(lo + np.floor(progress * (hi - lo + 1)).astype(int), hi)


def chunk_batches(task: Task, tc: TrainConfig, seed: int, chunk: int, steps: int, seq_len: int):
    """Tokens (C, B, T) and loss mask (C, B, T-1) for chunk ``chunk`` of seed ``seed``."""
    C, B = tc.chunk_steps, tc.batch_size
    rng = np.random.default_rng([seed, chunk])
    step_C = chunk * C + np.arange(C)
    d_CxB = rng.integers(tc.difficulties[0], max_difficulty(tc, step_C, steps)[:, None] + 1, (C, B))
    ex = generate(
        task,
        d_CxB.ravel(),
        rng,
        split="train",
        cut_frac=tc.cut_frac,
        corrupt_frac=tc.corrupt_frac,
        easy_frac=tc.easy_frac,
        seq_len=seq_len,
    )
    return ex.tokens.reshape(C, B, seq_len), ex.loss_mask.reshape(C, B, seq_len - 1)


def data_mesh(batch_size: int | None = None) -> Mesh:
    """A 1-D 'data' mesh over all devices (one device on a CPU); a batch to shard over it must divide."""
    devices = jax.devices()
    if batch_size is not None and batch_size % len(devices):
        raise ConfigError(
            f"train.batch_size {batch_size} must be divisible by the {len(devices)} devices of the data mesh"
        )
    return Mesh(np.array(devices), ("data",))


def replicated() -> NamedSharding:
    """Every device holds the whole array (parameters, optimiser states, hyperparameters)."""
    return NamedSharding(data_mesh(), PartitionSpec())


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
        **{name: getattr(cfg, name) for name in MODEL_CHOICES},  # the model settings
        "seeds": [int(s) for s in seeds],
    }


def abstract_state(cfg: ModelConfig, n_seeds: int, sharding=None) -> TrainState:
    """Shapes and dtypes (``jax.eval_shape``) of the training state of ``n_seeds`` seeds: what a
    checkpoint is restored against."""
    tc = TrainConfig(steps=1)
    shapes = jax.eval_shape(lambda: init_state(cfg, range(n_seeds), hyperparams(tc, cfg, 1, n_seeds)))
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), shapes)


def load_params(checkpoint_dir: str | Path, cfg: ModelConfig, task: Task, seeds):
    """Parameters of every seed from the newest step of a checkpoint (checked against the task,
    vocabulary and model shape the caller expects): a training state, or parameters alone (after RL)."""
    if not Path(checkpoint_dir).is_dir():
        raise ScalingError(f"{checkpoint_dir}: no checkpoint found")
    state = abstract_state(cfg, len(seeds), replicated())
    expect = checkpoint_meta(cfg, task, seeds)
    with checkpoint.Checkpoints(checkpoint_dir) as ckpt:
        if (step := ckpt.latest_step()) is None:
            raise ScalingError(f"{checkpoint_dir}: no checkpoint found")
        if checkpoint.layout(checkpoint_dir) == "params":
            return ckpt.restore(step, {"params": state.params}, expect)["params"]
        return ckpt.restore(step, {"state": state}, expect)["state"].params


def _resume(ckpt: checkpoint.Checkpoints, like: TrainState, meta: dict, log, restart: bool) -> tuple | None:
    """(state, [loss history], next chunk) from the newest checkpoint step, or None where there is none.
    A checkpoint made for another run raises (CheckpointMismatch), or with ``restart`` is named through
    ``log``, deleted, and training starts again; so is a step that cannot be read (cut short)."""
    if (found := ckpt.latest_step()) is None:
        return None
    try:
        restored = ckpt.restore(found, {"state": like, "loss": None}, expect=meta)
    except CheckpointMismatch as e:  # made for another run: never trained over
        if not restart:
            raise
        if log is not None:
            log(f"{e}; retraining from the start")
        ckpt.clear()
        return None
    except ScalingError:
        raise
    except Exception as e:  # a step cut short: never trusted
        if log is not None:
            log(f"checkpoint step {found} in {ckpt.directory} is unreadable ({type(e).__name__}); retraining")
        ckpt.discard(found)
        return None
    return restored["state"], [np.asarray(restored["loss"])], found + 1


@dataclass
class TrainResult:
    state: TrainState
    loss_RxN: np.ndarray  # per seed, per step
    steps: int
    seq_len: int
    resumed_from: int  # chunk a restored checkpoint resumed at (0: fresh)


def train(
    cfg: ModelConfig,
    task: Task,
    tc: TrainConfig,
    seeds: list[int],
    *,
    checkpoint_dir: str | Path | None = None,
    on_chunk: Callable[[int, int, dict], None] | None = None,
    stop_after_chunks: int | None = None,
    log: Callable[[str], None] | None = None,
    restart_if_mismatched: bool = False,
) -> TrainResult:
    """Train one model shape for every seed; resume from ``checkpoint_dir`` if it holds a chunk.
    ``on_chunk(done, total, metrics)`` gets each chunk's (R, C) ``loss``, ``grad_norm`` and ``lr`` and its
    (C,) ``step`` numbers. A checkpoint step that cannot be restored (cut short) is named through
    ``log``, dropped, and trained again from the start. A checkpoint made for another run (task, shape,
    seeds, schedule) raises CheckpointMismatch, or with ``restart_if_mismatched`` is deleted and retrained."""
    seq_len = task.seq_len(range(tc.difficulties[0], tc.difficulties[1] + 1))
    steps = total_steps(tc, cfg, seq_len)
    n_chunks = steps // tc.chunk_steps
    mesh = data_mesh(tc.batch_size)
    everywhere = replicated()
    batch_sharding = NamedSharding(mesh, PartitionSpec(None, None, "data", None))
    hp = jax.device_put(hyperparams(tc, cfg, steps, len(seeds)), everywhere)
    state = jax.device_put(init_state(cfg, seeds, hp), everywhere)
    losses: list[np.ndarray] = []
    start = 0
    # Resuming also requires the same schedule and data stream, not just the same shapes.
    meta = checkpoint_meta(cfg, task, seeds) | {
        "layout": "state",
        "steps": steps,
        "batch_size": tc.batch_size,
        "lr": float(hp.lr[0]),
        "difficulties": list(tc.difficulties),
        "cut_frac": tc.cut_frac,
        "corrupt_frac": tc.corrupt_frac,
        "easy_frac": tc.easy_frac,
        "chunk_steps": tc.chunk_steps,
    }
    with checkpoint.Checkpoints(checkpoint_dir) if checkpoint_dir is not None else contextlib.nullcontext() as ckpt:
        like = abstract_state(cfg, len(seeds), everywhere)
        if ckpt is not None and (restored := _resume(ckpt, like, meta, log, restart_if_mismatched)):
            state, losses, start = restored
        for chunk in range(start, n_chunks):
            batches = [chunk_batches(task, tc, s, chunk, steps, seq_len) for s in seeds]
            tokens = global_array(np.stack([b[0] for b in batches]), batch_sharding)
            mask = global_array(np.stack([b[1] for b in batches]), batch_sharding)
            state, metrics = train_chunk(cfg, state, tokens, mask, hp)
            metrics_RxC = jax.device_get(metrics)  # the one host fetch per chunk
            losses.append(metrics_RxC["loss"])
            if on_chunk is not None:  # first: it may stop the stage (its claim lost) before anything is saved
                steps_C = np.arange(chunk * tc.chunk_steps, (chunk + 1) * tc.chunk_steps)
                on_chunk(chunk + 1, n_chunks, metrics_RxC | {"step": steps_C})
            if ckpt is not None:
                ckpt.save(chunk, {"state": state, "loss": np.concatenate(losses, axis=1)}, meta)
            if stop_after_chunks is not None and chunk + 1 - start >= stop_after_chunks:
                break
    loss_RxN = np.concatenate(losses, axis=1) if losses else np.zeros((len(seeds), 0))
    return TrainResult(state, loss_RxN, steps, seq_len, start)
