"""KV-cache decoding: one jitted prefill over left-padded prompts, then a scanned decode loop.

Prompts of different lengths share one compiled program: they are left-padded to a common
width and the padding is masked out of attention (rotary positions are relative, so a shifted
prompt attends exactly as an unshifted one).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from scaling.model import ModelConfig, apply, empty_cache
from scaling.tasks.tokenizer import PAD


def left_pad(tokens: np.ndarray, prompt_len: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Prompts (the first ``prompt_len`` tokens of each row) right-aligned in a (B, P_max) array,
    and the (B, P_max) mask of real tokens."""
    P = int(prompt_len.max())
    offset = P - prompt_len
    cols = np.arange(P)[None, :] - offset[:, None]
    prompts = np.where(cols >= 0, np.take_along_axis(tokens, np.maximum(cols, 0), axis=1), PAD)
    return prompts.astype(np.int32), cols >= 0


@functools.partial(jax.jit, static_argnames=("cfg", "max_new"))
def greedy(cfg: ModelConfig, params, prompts_BxP, valid_BxP, *, max_new: int):
    """Greedy continuation of left-padded prompts: (B, max_new) token ids."""
    B, P = prompts_BxP.shape
    if P + max_new > cfg.max_len:
        raise ValueError(f"prompt {P} + {max_new} new tokens exceed the model's max_len {cfg.max_len}")
    key_valid_BxS = jnp.zeros((B, cfg.max_len), bool).at[:, :P].set(valid_BxP).at[:, P:].set(True)
    logits_BxPxV, cache = apply(cfg, params, prompts_BxP, cache=empty_cache(cfg, B), pos=0, key_valid_BxS=key_valid_BxS)
    first_B = jnp.argmax(logits_BxPxV[:, -1], axis=-1).astype(jnp.int32)

    def step(carry, i):
        token_B, cache = carry
        logits_Bx1xV, cache = apply(cfg, params, token_B[:, None], cache=cache, pos=P + i, key_valid_BxS=key_valid_BxS)
        nxt = jnp.argmax(logits_Bx1xV[:, 0], axis=-1).astype(jnp.int32)
        return (nxt, cache), token_B

    (_, _), out_NxB = jax.lax.scan(step, (first_B, cache), jnp.arange(max_new))
    return out_NxB.T
