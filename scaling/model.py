"""Decoder-only transformer family (flax nnx): pre-norm, RMSNorm, rotary positions (or none:
``ModelConfig.positions``), causal attention, squared-ReLU MLP, and inputs that are the token's embedding or
(``ModelConfig.inputs``) its sum with embeddings of the one or two tokens before it. The config, the size
ladder and parameter / FLOP counts are in ``scaling.specs`` (no jax); this module is the computation.

Two entry points: ``apply`` (full causal self-attention over a batch of sequences: training, scoring)
and ``apply_cached`` (tokens written into a KV cache: decoding), and ``token_logprobs``, the one
log-likelihood of given tokens that supervised training and RL both use.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from scaling.errors import ScalingError
from scaling.specs import ModelConfig
from scaling.tokenizer import PAD

Cache = list[tuple[jax.Array, jax.Array]]  # per layer (k_BxHxSxK, v_BxHxSxK)


def rope_tables(cfg: ModelConfig) -> tuple[jax.Array, jax.Array]:
    """cos, sin of shape (max_len, K/2)."""
    half = cfg.head_dim // 2
    inv_freq = cfg.rope_base ** (-jnp.arange(half, dtype=jnp.float32) / half)
    angles = jnp.arange(cfg.max_len, dtype=jnp.float32)[:, None] * inv_freq[None, :]
    return jnp.cos(angles), jnp.sin(angles)


def apply_rope(x_BxTxHxK: jax.Array, cos_TxK2: jax.Array, sin_TxK2: jax.Array) -> jax.Array:
    x1, x2 = jnp.split(x_BxTxHxK, 2, axis=-1)
    cos, sin = cos_TxK2[None, :, None, :], sin_TxK2[None, :, None, :]
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def _attention_fwd(q_BxHxTxK, k_BxHxSxK, v_BxHxSxK, mask_BxTxS):
    # The 1/sqrt(K) scale goes on the small q rather than the (T, S) scores: one pass fewer.
    q_BxHxTxK = q_BxHxTxK * q_BxHxTxK.shape[-1] ** -0.5
    scores_BxHxTxS = jnp.einsum("bhtk,bhsk->bhts", q_BxHxTxK, k_BxHxSxK)
    scores_BxHxTxS = jnp.where(mask_BxTxS[:, None], scores_BxHxTxS, jnp.finfo(scores_BxHxTxS.dtype).min)
    probs_BxHxTxS = jax.nn.softmax(scores_BxHxTxS, axis=-1)
    out_BxHxTxK = jnp.einsum("bhts,bhsk->bhtk", probs_BxHxTxS, v_BxHxSxK)
    return out_BxHxTxK, (q_BxHxTxK, k_BxHxSxK, v_BxHxSxK, mask_BxTxS, probs_BxHxTxS, out_BxHxTxK)


def _attention_bwd(residuals, dout_BxHxTxK):
    """FlashAttention's backward: dS = P * (dP - rowsum(dO * O)). The row sum comes from the small
    (T, K) tensors rather than a reduction over the (T, S) scores, and every product keeps the
    large (T, S) operand in its stored layout (the small one is transposed instead)."""
    q_scaled, k, v, mask_BxTxS, probs_BxHxTxS, out = residuals
    swap = functools.partial(jnp.swapaxes, axis1=-1, axis2=-2)
    dv_BxHxKxS = jnp.einsum("bhkt,bhts->bhks", swap(dout_BxHxTxK), probs_BxHxTxS)
    dprobs_BxHxTxS = jnp.einsum("bhtk,bhks->bhts", dout_BxHxTxK, swap(v))
    rowsum_BxHxTx1 = jnp.sum(dout_BxHxTxK * out, axis=-1, keepdims=True)
    # Masked scores get no gradient, also in rows where every key is masked (padding queries).
    dscores_BxHxTxS = jnp.where(mask_BxTxS[:, None], probs_BxHxTxS * (dprobs_BxHxTxS - rowsum_BxHxTx1), 0.0)
    dq_BxHxTxK = jnp.einsum("bhts,bhsk->bhtk", dscores_BxHxTxS, k) * q_scaled.shape[-1] ** -0.5
    dk_BxHxKxS = jnp.einsum("bhkt,bhts->bhks", swap(q_scaled), dscores_BxHxTxS)
    return dq_BxHxTxK, swap(dk_BxHxKxS), swap(dv_BxHxKxS), None


@jax.custom_vjp
def attention(q_BxHxTxK, k_BxHxSxK, v_BxHxSxK, mask_BxTxS):
    """softmax(q k^T / sqrt(K) where mask, else -inf) v, with a hand-written backward pass;
    ``mask`` (B or 1, T, S) is True where a query may attend to a key.

    XLA's autodiff of the softmax costs a reduction over the (T, S) scores and transposes of
    them; with this backward the whole d96 training step ran about 1.15x faster on a CPU.
    """
    return _attention_fwd(q_BxHxTxK, k_BxHxSxK, v_BxHxSxK, mask_BxTxS)[0]


attention.defvjp(_attention_fwd, _attention_bwd)


def relu_squared(x):
    """max(x, 0)^2 (So et al. 2021, "Primer"). Its backward fuses into XLA's CPU matmuls where
    GELU's forced transposed copies (d96 step 1.2x faster), and on the quickstart it trained better
    than GELU did (held-out accuracy of d48 / d64: 0.73 / 0.96 against 0.40 / 0.72)."""
    return jnp.square(jax.nn.relu(x))


def kernel_init(cfg: ModelConfig, residual: bool = False):
    """A linear layer's initial weights (``ModelConfig.init``): N(0, 0.02^2), or with "fan_in" N(0, 1/fan_in);
    the standard deviation divided by sqrt(2 L) for the outputs of the residual branches (``residual``)."""
    shrink = (2 * cfg.n_layers) ** 0.5 if residual else 1.0
    if cfg.init == "fan_in":
        return nnx.initializers.variance_scaling(1.0 / shrink**2, "fan_in", "normal")
    return nnx.initializers.normal(0.02 / shrink)


class Block(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        D, F = cfg.d_model, cfg.d_ff
        init = kernel_init(cfg)
        out_init = kernel_init(cfg, residual=True)
        self.cfg = cfg
        self.attn_norm = nnx.RMSNorm(D, rngs=rngs)
        self.qkv = nnx.Linear(D, 3 * D, use_bias=False, kernel_init=init, rngs=rngs)
        self.attn_out = nnx.Linear(D, D, use_bias=False, kernel_init=out_init, rngs=rngs)
        self.mlp_norm = nnx.RMSNorm(D, rngs=rngs)
        self.up = nnx.Linear(D, F, use_bias=False, kernel_init=init, rngs=rngs)
        self.down = nnx.Linear(F, D, use_bias=False, kernel_init=out_init, rngs=rngs)

    def __call__(self, x_BxTxD, cos_TxK2, sin_TxK2, mask_BxTxS, cache=None, pos=0):
        """Returns the block output and the (possibly updated) cache (k_BxHxSxK, v_BxHxSxK)."""
        B, T, D = x_BxTxD.shape
        H, K = self.cfg.n_heads, self.cfg.head_dim
        qkv_BxTx3xHxK = self.qkv(self.attn_norm(x_BxTxD)).reshape(B, T, 3, H, K)
        heads_major = functools.partial(jnp.swapaxes, axis1=1, axis2=2)
        rotate = apply_rope if self.cfg.positions == "rope" else lambda x, cos, sin: x
        q_BxHxTxK = heads_major(rotate(qkv_BxTx3xHxK[:, :, 0], cos_TxK2, sin_TxK2))
        k_BxHxTxK = heads_major(rotate(qkv_BxTx3xHxK[:, :, 1], cos_TxK2, sin_TxK2))
        v_BxHxTxK = heads_major(qkv_BxTx3xHxK[:, :, 2])
        if cache is not None:
            k_cache, v_cache = cache
            k_BxHxSxK = jax.lax.dynamic_update_slice(k_cache, k_BxHxTxK.astype(k_cache.dtype), (0, 0, pos, 0))
            v_BxHxSxK = jax.lax.dynamic_update_slice(v_cache, v_BxHxTxK.astype(v_cache.dtype), (0, 0, pos, 0))
            cache = (k_BxHxSxK, v_BxHxSxK)
        else:
            k_BxHxSxK, v_BxHxSxK = k_BxHxTxK, v_BxHxTxK
        attn_BxHxTxK = attention(q_BxHxTxK, k_BxHxSxK, v_BxHxSxK, mask_BxTxS)
        x_BxTxD = x_BxTxD + self.attn_out(heads_major(attn_BxHxTxK).reshape(B, T, D))
        x_BxTxD = x_BxTxD + self.down(relu_squared(self.up(self.mlp_norm(x_BxTxD))))
        return x_BxTxD, cache


class Transformer(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.cfg = cfg
        self.embed = nnx.Param(nnx.initializers.normal(1.0)(rngs.params(), (cfg.vocab_size, cfg.d_model)))
        if cfg.predecessors:  # one table per offset back: (P, vocab, D)
            shape = (cfg.predecessors, cfg.vocab_size, cfg.d_model)
            self.embed_prev = nnx.Param(nnx.initializers.normal(1.0)(rngs.params(), shape))
        self.blocks = nnx.List([Block(cfg, rngs) for _ in range(cfg.n_layers)])
        self.final_norm = nnx.RMSNorm(cfg.d_model, rngs=rngs)
        self.head = nnx.Linear(cfg.d_model, cfg.vocab_size, use_bias=False, kernel_init=kernel_init(cfg), rngs=rngs)

    def __call__(self, tokens_BxT, *, key_valid_BxT=None) -> jax.Array:
        """Logits (B, T, V) of causal self-attention over ``tokens``; ``key_valid`` (B, T) is False
        on padding that no token may attend to."""
        T = tokens_BxT.shape[1]
        if T > self.cfg.max_len:
            raise ScalingError(f"{T} tokens exceed the model's max_len {self.cfg.max_len}")
        mask = causal_mask(T, jnp.arange(T), key_valid_BxT)
        prevs = tokens_before(tokens_BxT, jnp.arange(T), self.cfg.predecessors)
        return self._forward(tokens_BxT, prevs, jnp.arange(T), mask, None, 0)[0]

    def extend(
        self, tokens_BxT, cache: Cache, *, pos, prevs, key_valid_BxS=None, positions_T=None, mask_BxTxS=None
    ) -> tuple[jax.Array, Cache]:
        """Logits (B, T, V) of ``tokens`` written into cache slots pos..pos+T-1, and the new cache.

        ``prevs`` are ``cfg.predecessors`` (B, T) arrays, the tokens before each one in its sequence, nearest
        first (``tokens_before`` of a prompt from its start; the last ones written for the next token).
        By default the tokens sit at positions pos..pos+T-1 and attend to every slot <= their own whose
        ``key_valid`` is True (False for left padding). For tree-shaped decoding (several continuations
        of one shared prefix), ``positions_T`` gives the tokens' own positions and ``mask_BxTxS``
        (B or 1, T, S) exactly which slots each one attends to.
        """
        T, S = tokens_BxT.shape[1], cache[0][0].shape[2]
        if positions_T is None:
            positions_T = pos + jnp.arange(T)
        if mask_BxTxS is None:
            mask_BxTxS = causal_mask(S, positions_T, key_valid_BxS)
        return self._forward(tokens_BxT, prevs, positions_T, mask_BxTxS, cache, pos)

    def _forward(self, tokens_BxT, prevs, positions_T, mask_BxTxS, cache, pos):
        cos, sin = rope_tables(self.cfg)
        cos_T, sin_T = jnp.take(cos, positions_T, axis=0), jnp.take(sin, positions_T, axis=0)
        # One-hot matmul instead of a gather: with a ~50-token vocabulary the backward pass is
        # then a small dense matmul rather than a scatter-add.
        x_BxTxD = jax.nn.one_hot(tokens_BxT, self.cfg.vocab_size, dtype=self.embed.dtype) @ self.embed[...]
        for back, prev_BxT in enumerate(prevs):
            x_BxTxD += jax.nn.one_hot(prev_BxT, self.cfg.vocab_size, dtype=self.embed.dtype) @ self.embed_prev[back]
        new_cache = []
        for i, block in enumerate(self.blocks):
            x_BxTxD, layer_cache = block(x_BxTxD, cos_T, sin_T, mask_BxTxS, None if cache is None else cache[i], pos)
            new_cache.append(layer_cache)
        return self.head(self.final_norm(x_BxTxD)), new_cache


def tokens_before(tokens_BxT, at, n: int) -> tuple[jax.Array, ...]:
    """The n tokens before position(s) ``at`` of each row, nearest first: n arrays of shape (B,) + at.shape,
    <pad> before the first token (also before a left-padded prompt's first real token, as in training, where
    every sequence starts at 0). ``at = arange(T)``: each token's predecessors; ``at = T``: those of the next."""
    padded = jnp.pad(tokens_BxT, ((0, 0), (n, 0)), constant_values=PAD)
    return tuple(padded[:, n + at - back] for back in range(1, n + 1))


def causal_mask(S: int, positions_T, key_valid_BxS=None) -> jax.Array:
    """(1 or B, T, S): a token at position p attends to slots <= p that are valid. The mask stays (1, T, S)
    unless padding makes rows differ: a mask materialised per row costs a pass over the scores."""
    mask_1xTxS = jnp.arange(S)[None, None, :] <= positions_T[None, :, None]
    return mask_1xTxS if key_valid_BxS is None else mask_1xTxS & key_valid_BxS[:, None, :]


def empty_cache(cfg: ModelConfig, batch: int, dtype=jnp.float32) -> Cache:
    """Zeros for ``batch`` rows of ``cfg.max_len`` key slots in every layer."""
    shape = (batch, cfg.n_heads, cfg.max_len, cfg.head_dim)
    return [(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype)) for _ in range(cfg.n_layers)]


def init_params(cfg: ModelConfig, key: jax.Array) -> nnx.State:
    """Parameters of a fresh model (a pytree; vmap this over keys for several seeds)."""
    return nnx.split(Transformer(cfg, rngs=nnx.Rngs(params=key)), nnx.Param)[1]


def graphdef(cfg: ModelConfig) -> nnx.GraphDef:
    """The static structure that ``nnx.merge(graphdef(cfg), params)`` turns back into a model."""
    return nnx.split(nnx.eval_shape(lambda: Transformer(cfg, rngs=nnx.Rngs(0))), nnx.Param)[0]


def apply(cfg: ModelConfig, params: nnx.State, tokens_BxT, *, key_valid_BxT=None) -> jax.Array:
    """Pure forward pass: logits (B, T, V) of ``Transformer(cfg)`` with ``params`` (see its __call__)."""
    return nnx.merge(graphdef(cfg), params)(tokens_BxT, key_valid_BxT=key_valid_BxT)


def apply_cached(cfg: ModelConfig, params: nnx.State, tokens_BxT, cache: Cache, **kw) -> tuple[jax.Array, Cache]:
    """Pure cached forward pass: (logits, cache) of ``Transformer.extend`` (``pos=``, ``prevs=`` and masks as
    there)."""
    return nnx.merge(graphdef(cfg), params).extend(tokens_BxT, cache, **kw)


def token_logprobs(cfg: ModelConfig, params: nnx.State, tokens_BxT, valid_BxT=None, *, entropy: bool = False):
    """log pi(token_t | tokens_<t) for t >= 1, shape (B, T-1); with ``entropy``, also the entropy of each
    of those next-token distributions. ``valid`` (B, T) is False on left padding."""
    key_valid = None if valid_BxT is None else valid_BxT[:, :-1]
    logits_BxT1xV = apply(cfg, params, tokens_BxT[:, :-1], key_valid_BxT=key_valid)
    # A gather, not sum(one_hot * logits) - logsumexp: XLA's CPU backend (jax 0.10.2) fuses that
    # expression wrongly under vmap over three or more seeds (tests/test_model.py keeps the check).
    logp_BxT1xV = jax.nn.log_softmax(logits_BxT1xV, axis=-1)
    logp_BxT1 = jnp.take_along_axis(logp_BxT1xV, tokens_BxT[:, 1:, None], axis=-1)[..., 0]
    if not entropy:
        return logp_BxT1
    return logp_BxT1, -jnp.sum(jnp.exp(logp_BxT1xV) * logp_BxT1xV, axis=-1)
