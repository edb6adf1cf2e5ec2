"""The training state and the one optimiser that supervised training and RL share.

    update = -lr(step) * AdamW(clip_by_global_norm(grad, grad_clip); b1 = 0.9, b2, weight decay on matrices)
    lr(step) = lr * (step + 1) / warmup                       for step < warmup
             = lr * (1 + cos(pi * progress)) / 2              after, progress = (step - warmup) / (total - warmup)

Hyperparameters are traced values (``OptimizerHP``), so one compiled program serves every learning rate
of a sweep; RL runs it at a constant rate (``constant``): no warmup, total = inf, no clipping or decay.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax


class TrainState(NamedTuple):
    """What a training step carries: its step count, the parameters and the optimiser state (for several
    seeds, every leaf has a leading seed axis R)."""

    step: jax.Array
    params: object
    opt_state: object


class OptimizerHP(NamedTuple):
    """Traced optimiser settings (scalars, or (R,) arrays with one value per seed)."""

    lr: jax.Array
    warmup: jax.Array
    total: jax.Array
    weight_decay: jax.Array
    grad_clip: jax.Array


def constant(lr) -> OptimizerHP:
    """A constant learning rate with nothing else: plain Adam (RL's policy update)."""
    f32 = jnp.float32
    return OptimizerHP(f32(lr), f32(0.0), f32(math.inf), f32(0.0), f32(math.inf))


def learning_rate(hp: OptimizerHP, count) -> jax.Array:
    """lr(step) of the module docstring: linear warmup, then cosine decay to 0 at ``total``."""
    count = count.astype(jnp.float32)
    warm = (count + 1.0) / hp.warmup
    progress = jnp.clip((count - hp.warmup) / jnp.maximum(hp.total - hp.warmup, 1.0), 0.0, 1.0)
    return hp.lr * jnp.where(count < hp.warmup, warm, 0.5 * (1.0 + jnp.cos(jnp.pi * progress)))


def optimizer(hp: OptimizerHP, *, b2: float) -> optax.GradientTransformation:
    """Clipping, then AdamW (no decay on norm scales and other vectors) at ``learning_rate``."""
    return optax.chain(
        optax.clip_by_global_norm(hp.grad_clip),
        optax.adamw(
            lambda count: learning_rate(hp, count),
            b1=0.9,
            b2=b2,
            weight_decay=hp.weight_decay,
            mask=lambda p: jax.tree.map(lambda x: x.ndim > 1, p),
        ),
    )
