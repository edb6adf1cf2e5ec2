"""Model specs without jax: the config of the transformer family, the size ladder, and exact parameter and
FLOP counts, so that planning and validation never load the numerics.

Size ladder (``PRESETS``): width D from 32 to 1024; depth and width grow together,
L = max(1, round(D / 32)) (aspect ratio D / L = 32), H = D / 16 (head dim 16), F = 4 D.
Non-embedding parameters 12 L D^2 + 2 L D + D span 1.2e4 (d32) to 4e8 (d1024); presets
above ~0.5M (d128 and up) are for accelerators.

FLOP convention (per token, multiply-add = 2 FLOPs): forward = 2 * (non-embedding matmul
params + head params) + 4 * L * T * D for attention scores and values over the full context T
as computed (the causal half is not discounted); the embedding is a lookup (0 FLOPs);
training = 3 x forward.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scaling.errors import ScalingError
from scaling.tokenizer import VOCAB_SIZE

# Revision of what a parameter tree computes (1: GELU MLP; 2: squared-ReLU MLP). Stage hashes carry
# it, so that a rerun never evaluates checkpoints of an older architecture with the new code.
ARCHITECTURE = 2
# Revision of the checkpoint layout on disk (1: a dict state's leaves by index, one chunk_<n> directory each;
# 2: orbax CheckpointManager steps of named items). Stage hashes carry it too: a run directory of an older
# layout is retrained, never misread.
CHECKPOINT_FORMAT = 2
# How attention sees token order: rotary positions (RoPE), or none at all (NoPE: a causal decoder still
# infers order from its mask). Without positions, tiny models generalise further above the lengths they
# were trained on (``experiments/generalise_cpu.yaml``).
POSITIONS = ("rope", "none")
# Initial weights of the linear layers: "normal", N(0, 0.02^2) (GPT-2; the residual outputs scaled by 1/sqrt(2L)),
# or "fan_in", N(0, 1/fan_in) with the same residual scaling. At the CPU presets' widths 0.02 is far below
# 1/sqrt(fan_in) (0.125 at d64): from 0.02, which seeds learned the quickstart's task depended on their initial
# weights and needed three times the steps, so the quickstart trains from fan_in.
INITS = ("normal", "fan_in")
# What the first layer reads at each position: the token's embedding, or that plus embeddings of the one
# ("bigram") or two ("trigram") tokens before it, one table per offset (the smeared keys of Olsson et al. 2022,
# at the input). With them one attention layer can look up what follows a given token or pair (match the
# query against the predecessors, read the token): plain attention learns that lookup only as a two-layer
# induction circuit, after a long plateau.
INPUTS = ("token", "bigram", "trigram")
# The run settings that change the model itself, with their choices (the first is the default): validated
# here and in run configs, part of a stage hash only where not the default, implied by older checkpoints.
MODEL_CHOICES = {"positions": POSITIONS, "init": INITS, "inputs": INPUTS}


@dataclass(frozen=True)
class ModelConfig:
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    d_ff: int = 256
    vocab_size: int = VOCAB_SIZE
    max_len: int = 128
    rope_base: float = 10_000.0
    positions: str = "rope"  # one of POSITIONS: how attention sees token order
    init: str = "normal"  # one of INITS: the linear layers' initial weights
    inputs: str = "token"  # one of INPUTS: the token's embedding, or with its predecessors'

    def __post_init__(self):
        for name in ("d_model", "n_layers", "n_heads", "d_ff", "vocab_size", "max_len"):
            if getattr(self, name) <= 0:
                raise ScalingError(f"model.{name} must be positive, got {getattr(self, name)}")
        for name, choices in MODEL_CHOICES.items():
            if getattr(self, name) not in choices:
                raise ScalingError(f"{name}: expected one of {list(choices)}, got {getattr(self, name)!r}")
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ScalingError(f"model.d_model {self.d_model} must split into {self.n_heads} heads of even size")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def predecessors(self) -> int:
        """How many tokens before each one the inputs embed (``inputs``: 0, 1 or 2)."""
        return INPUTS.index(self.inputs)


def preset(width: int, max_len: int = 128, vocab_size: int = VOCAB_SIZE, **settings) -> ModelConfig:
    """The ladder rule: depth = max(1, round(width / 32)), head dim 16, d_ff = 4 width; ``settings`` are
    ``MODEL_CHOICES`` (positions, init, inputs) where not the default."""
    return ModelConfig(
        d_model=width,
        n_layers=max(1, round(width / 32)),
        n_heads=width // 16,
        d_ff=4 * width,
        vocab_size=vocab_size,
        max_len=max_len,
        **settings,
    )


PRESET_WIDTHS = (32, 48, 64, 80, 96, 128, 192, 256, 384, 512, 768, 1024)
PRESETS = {f"d{w}": preset(w) for w in PRESET_WIDTHS}
CPU_PRESETS = ("d32", "d48", "d64", "d80", "d96")


def get_preset(name: str, max_len: int = 128, vocab_size: int = VOCAB_SIZE, **settings) -> ModelConfig:
    """A preset with the sequence length, vocabulary (the task's tokenizer) and model settings
    (``MODEL_CHOICES``: position scheme, initial weights, inputs) a stage needs."""
    if name not in PRESETS:
        raise ScalingError(f"unknown model preset {name!r}; choose one of {list(PRESETS)}")
    return preset(PRESETS[name].d_model, max_len, vocab_size, **settings)


def param_counts(cfg: ModelConfig) -> dict[str, int]:
    """Exact parameter counts: total, and non-embedding (all but token embedding and output head)."""
    D, L, F, V = cfg.d_model, cfg.n_layers, cfg.d_ff, cfg.vocab_size
    per_layer = 4 * D * D + 2 * D * F + 2 * D  # qkv + out, up + down, two RMSNorm scales
    non_embedding = L * per_layer + D  # + final norm
    embeddings = (2 + cfg.predecessors) * V * D  # the token's, its predecessors', the output head
    return {"total": non_embedding + embeddings, "non_embedding": non_embedding}


def flops_per_token(cfg: ModelConfig, seq_len: int) -> dict[str, float]:
    """Forward and training FLOPs per token under the convention in the module docstring."""
    D, L, F, V = cfg.d_model, cfg.n_layers, cfg.d_ff, cfg.vocab_size
    matmul_params = L * (4 * D * D + 2 * D * F) + D * V
    forward = 2.0 * matmul_params + 4.0 * L * seq_len * D
    return {"forward": forward, "train": 3.0 * forward}


def lr_for(cfg: ModelConfig) -> float:
    """Peak learning rate from width (muP-like 1/sqrt(width) decay): 3e-3 * sqrt(64 / d_model)."""
    return 3e-3 * math.sqrt(64.0 / cfg.d_model)
