"""KV-cache decoding: one jitted prefill over left-padded prompts, then a scanned decode loop.

Prompts of different lengths share one compiled program: they are left-padded to a common
width and the padding is masked out of attention (rotary positions are relative, so a shifted
prompt attends exactly as an unshifted one).

Test-time controls, all traced values (one compiled program serves every setting):
- ``temperature``: 0 is greedy, > 0 samples (optionally from the ``top_k`` most likely tokens);
- ``budget``: after this many thinking tokens without <eot>, <eot> is forced (budget forcing);
- ``min_think``: <eot> is suppressed until this many thinking tokens are written.
``decode_budgets`` evaluates many budgets from one greedy pass: under greedy decoding the trace
under budget b is a prefix of the unforced trace, so each budget is a branch off the shared cache
at b that only decodes the short answer.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from scaling.errors import ScalingError
from scaling.model import apply_cached, empty_cache, tokens_before
from scaling.specs import ModelConfig
from scaling.tokenizer import EOT, PAD

NO_BUDGET = 1 << 30


def left_pad(tokens: np.ndarray, prompt_len: np.ndarray, width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Prompts (the first ``prompt_len`` tokens of each row) right-aligned in a (B, L) array, L the
    longest prompt (or ``width``), and the (B, L) mask of real tokens."""
    L = int(prompt_len.max()) if width is None else width
    offset = L - prompt_len
    cols = np.arange(L)[None, :] - offset[:, None]
    prompts = np.where(cols >= 0, np.take_along_axis(tokens, np.maximum(cols, 0), axis=1), PAD)
    return prompts.astype(np.int32), cols >= 0


def _prefill(cfg, params, prompts_BxL, valid_BxL, max_new):
    B, L = prompts_BxL.shape
    if L + max_new > cfg.max_len:
        raise ScalingError(f"prompt {L} + {max_new} new tokens exceed the model's max_len {cfg.max_len}")
    key_valid_BxS = jnp.zeros((B, cfg.max_len), bool).at[:, :L].set(valid_BxL).at[:, L:].set(True)
    prevs = tokens_before(prompts_BxL, jnp.arange(L), cfg.predecessors)
    logits_BxLxV, cache = apply_cached(
        cfg, params, prompts_BxL, empty_cache(cfg, B), pos=0, prevs=prevs, key_valid_BxS=key_valid_BxS
    )
    return logits_BxLxV[:, -1], cache, key_valid_BxS


def _choose(logits_BxV, key, temperature, top_k: int):
    if top_k:
        kth = jax.lax.top_k(logits_BxV, top_k)[0][:, -1:]
        logits_BxV = jnp.where(logits_BxV < kth, -jnp.inf, logits_BxV)
    sampled = jax.random.categorical(key, logits_BxV / jnp.maximum(temperature, 1e-6), axis=-1)
    return jnp.where(temperature > 0, sampled, jnp.argmax(logits_BxV, axis=-1)).astype(jnp.int32)


def _decode(cfg, params, prompts_BxL, valid_BxL, key, *, temperature, budget, min_think, max_new: int, top_k: int):
    B, L = prompts_BxL.shape
    last_BxV, cache, key_valid_BxS = _prefill(cfg, params, prompts_BxL, valid_BxL, max_new)

    def pick(logits_BxV, i, thinking_B, key):
        suppress = thinking_B[:, None] & (i < min_think) & (jnp.arange(cfg.vocab_size) == EOT)
        token_B = _choose(jnp.where(suppress, -jnp.inf, logits_BxV), key, temperature, top_k)
        return jnp.where(thinking_B & (i >= budget), EOT, token_B)

    def step(carry, i):
        logits_BxV, thinking_B, prevs, cache = carry  # prevs: the tokens before this one, nearest first
        token_B = pick(logits_BxV, i, thinking_B, jax.random.fold_in(key, i))
        thinking_B = thinking_B & (token_B != EOT)
        logits_Bx1xV, cache = apply_cached(
            cfg,
            params,
            token_B[:, None],
            cache,
            pos=L + i,
            prevs=[p[:, None] for p in prevs],
            key_valid_BxS=key_valid_BxS,
        )
        prevs = (token_B, *prevs)[: len(prevs)]
        return (logits_Bx1xV[:, 0], thinking_B, prevs, cache), token_B

    start = (last_BxV, jnp.ones((B,), bool), tokens_before(prompts_BxL, L, cfg.predecessors), cache)
    (_, _, _, cache), tokens_GxB = jax.lax.scan(step, start, jnp.arange(max_new))
    return tokens_GxB.T, cache, key_valid_BxS


@functools.partial(jax.jit, static_argnames=("cfg", "max_new", "top_k"))
def decode(
    cfg: ModelConfig,
    params,
    prompts_BxL,
    valid_BxL,
    key,
    temperature=0.0,
    budget=NO_BUDGET,
    min_think=0,
    *,
    max_new: int,
    top_k: int = 0,
):
    """Continue left-padded prompts for ``max_new`` tokens: (B, max_new) token ids.

    ``budget`` and ``min_think`` may be scalars or per-row (B,) arrays.
    """
    controls = {
        "temperature": temperature,
        "budget": budget,
        "min_think": min_think,
        "max_new": max_new,
        "top_k": top_k,
    }
    return _decode(cfg, params, prompts_BxL, valid_BxL, key, **controls)[0]


def greedy(cfg: ModelConfig, params, prompts_BxL, valid_BxL, *, max_new: int):
    """Greedy continuation of left-padded prompts: (B, max_new) token ids."""
    return decode(cfg, params, prompts_BxL, valid_BxL, jax.random.key(0), max_new=max_new)


def budgets_width(budgets, answer_len: int) -> int:
    """Tokens ``decode_budgets`` returns per row: the largest budget, <eot>, the answer."""
    return max(budgets) + answer_len + 1


@functools.partial(jax.jit, static_argnames=("cfg", "budgets", "answer_len"))
def decode_budgets(cfg: ModelConfig, params, prompts_BxL, valid_BxL, *, budgets: tuple[int, ...], answer_len: int):
    """Greedy generations under every thinking budget from one pass: (U, B, G) token ids, U budgets.

    One unforced greedy pass writes G = max(budgets) + answer_len + 1 tokens and keeps its cache.
    Under greedy decoding the trace under budget b is a prefix of that pass, so budget b is a
    branch of a tree: <eot> at position L + b, then ``answer_len`` answer tokens. All U branches
    of a row decode together, U tokens per step: their keys go to U * answer_len slots past the
    shared cache, and each attends to the prefix before L + b and to its own branch, so the
    cache is never copied per budget. Rows that ended thinking on their own before b keep their
    unforced continuation, exactly as a separate forced decode would.
    """
    B, L = prompts_BxL.shape
    U, A, S0 = len(budgets), answer_len, cfg.max_len
    G = budgets_width(budgets, answer_len)
    greedy = {"temperature": 0.0, "budget": NO_BUDGET, "min_think": 0, "max_new": G, "top_k": 0}
    full_BxG, cache, key_valid_BxS = _decode(cfg, params, prompts_BxL, valid_BxL, jax.random.key(0), **greedy)
    budget_U = jnp.asarray(budgets, jnp.int32)
    # Branch u's i-th token lives in slot S0 + i * U + u.
    cache = [tuple(jnp.pad(c, ((0, 0), (0, 0), (0, U * A), (0, 0))) for c in layer) for layer in cache]
    slot_S = jnp.arange(S0 + U * A)
    in_branch_S = slot_S >= S0
    key_valid_BxS = jnp.pad(key_valid_BxS, ((0, 0), (0, U * A)))
    prefix_BxUxS = (slot_S[None, None, :] < L + budget_U[None, :, None]) & key_valid_BxS[:, None, :]
    own_UxS = in_branch_S[None, :] & ((slot_S[None, :] - S0) % U == jnp.arange(U)[:, None])

    def step(carry, i):
        token_BxU, prevs, cache = carry  # prevs: each branch's tokens before this one, nearest first
        mask_BxUxS = prefix_BxUxS | (own_UxS & ((slot_S - S0) // U <= i))[None]
        logits_BxUxV, cache = apply_cached(
            cfg,
            params,
            token_BxU,
            cache,
            pos=S0 + i * U,
            prevs=prevs,
            positions_T=L + budget_U + i,
            mask_BxTxS=mask_BxUxS,
        )
        nxt_BxU = jnp.argmax(logits_BxUxV, axis=-1).astype(jnp.int32)
        return (nxt_BxU, (token_BxU, *prevs)[: len(prevs)], cache), nxt_BxU

    eot_BxU = jnp.full((B, U), EOT, jnp.int32)
    # What precedes budget b's forced <eot>: the tokens of prompt + trace before position L + b, nearest first.
    prompt_trace = jnp.concatenate([prompts_BxL, full_BxG], axis=1)
    before = tokens_before(prompt_trace, L + budget_U, cfg.predecessors)
    _, answer_AxBxU = jax.lax.scan(step, (eot_BxU, before, cache), jnp.arange(A))
    positions_G = jnp.arange(G)

    def assemble(b, answer_BxA):
        tail_BxA1 = jnp.concatenate([eot_BxU[:, :1], answer_BxA], axis=1)
        forced_BxG = jnp.where(positions_G[None, :] < b, full_BxG, PAD)
        forced_BxG = jax.lax.dynamic_update_slice(forced_BxG, tail_BxA1, (0, b))
        ended_early_B = jnp.any((full_BxG == EOT) & (positions_G[None, :] < b), axis=1)
        return jnp.where(ended_early_B[:, None], full_BxG, forced_BxG)

    return jax.vmap(assemble)(budget_U, jnp.transpose(answer_AxBxU, (2, 1, 0)))
