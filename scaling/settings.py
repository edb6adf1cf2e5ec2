"""What each stage computes: frozen settings of supervised training, evaluation, test-time compute and RL,
with the counts derived from them (steps, RL data ladder). Pure Python: validation with file and key
names lives in ``scaling.config``; the numerics read these objects and never the YAML.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from scaling.specs import ModelConfig, param_counts

ADVANTAGES = ("dr_grpo", "grpo", "rloo")  # group-relative advantages, see scaling.rl


@dataclass(frozen=True)
class GymSource:
    """Problems generated offline by a reasoning-gym dataset and scored by its own scorer.

    ``config`` (the dataset's settings) and ``levels`` (difficulty d takes the d-th value of each listed
    parameter, e.g. {"max_terms": [2, 3, 4, 5]}; empty: the dataset's curriculum levels) are JSON text of
    mappings, so that the settings stay hashable; YAML gives them as mappings."""

    name: str
    config: str = "{}"
    levels: str = "{}"
    size: int = 400  # problems per difficulty
    seed: int = 0


@dataclass(frozen=True)
class ProblemsTask:
    """A task of given problems: a JSONL file (``jsonl``) or a reasoning-gym dataset, on the byte tokenizer.
    ``checker``: exact | numeric | math (default exact for files; the library's scorer for reasoning-gym);
    ``tolerance``: the numeric checker's relative tolerance; ``name``: the task column of the results
    (default: the file's stem, or the dataset's name)."""

    jsonl: str | None = None
    reasoning_gym: GymSource | None = None
    checker: str | None = None
    tolerance: float = 1e-6
    name: str | None = None


@dataclass(frozen=True)
class TrainConfig:
    """Supervised training on reasoning traces.

    Length: ``steps``, or a compute budget of ``tokens_per_param`` training tokens per model
    parameter (steps = ceil(tokens_per_param * params / (batch_size * seq_len)), at least
    ``min_steps``). Learning rate: ``lr``, or the size rule of ``scaling.specs.lr_for``.
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
    easy_frac: float = 0.0  # share of problems from the task's easy_blocks (breaks the plateau; see there)
    chunk_steps: int = 100  # steps per compiled scan chunk (metrics and checkpoints per chunk)


def total_steps(tc: TrainConfig, cfg: ModelConfig, seq_len: int) -> int:
    """Steps from ``steps`` or the token budget, rounded up to whole chunks."""
    steps = tc.steps
    if steps is None:
        tokens = tc.tokens_per_param * param_counts(cfg)["total"]
        steps = max(tc.min_steps, math.ceil(tokens / (tc.batch_size * seq_len)))
    return math.ceil(steps / tc.chunk_steps) * tc.chunk_steps


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
    pass@k, best-of-n and re-thinking over k samples at ``temperature``. Empty lists skip them.
    ``rounds``: re-thinking in context, up to this many rounds at ``temperature`` (0: off)."""

    budgets: tuple[int, ...] = ()
    ks: tuple[int, ...] = ()
    temperature: float = 1.0
    n_per_difficulty: int = 64  # on the eval difficulties
    rounds: int = 0


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
