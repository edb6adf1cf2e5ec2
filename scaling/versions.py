"""Revisions of what each kind of stage computes. A stage's key hashes the versions of the code it runs,
so a change that alters results makes a rerun compute afresh the stages it touches, and (through the
keys of their inputs) every stage downstream, while everything else stays cached.

Bump a version in the same change as the code, when results computed before would differ afterwards:

    tasks   a generator, the tokenizer, a trace format or a checker changes which problems are made or
            how an answer is scored (bumps every stage: all of them read tasks)
    train   supervised training's data order, loss, optimiser, schedule or outputs (metrics, checkpoint)
    rl      rollouts, rewards, advantages, the policy loss or the RL ladder's evaluations
    eval    greedy or sampled evaluation, task loss, test-time strategies or their token accounting

A refactor that leaves every number as it was bumps nothing. The model's architecture and the
checkpoint layout have revisions of their own (``scaling.specs.ARCHITECTURE``, ``CHECKPOINT_FORMAT``).
"""

# train 2: easy rows (train.easy_frac) spread over a chunk's steps, not its last ones; metrics.jsonl times.
# rl 2: rollout pass rate and thinking / answer tokens in the RL metrics; thinking tokens on the ladder.
# eval 2: thinking and total tokens on greedy and sampled accuracy rows.
# eval 3: strategy 'oracle' (reference traces no longer than the budget) beside the budget rows; re-thinking
#   in context (testtime.rounds, strategy 'rethink_context').
STAGE_VERSIONS = {"tasks": 1, "train": 2, "rl": 2, "eval": 3}


def versions_of(kind: str) -> dict[str, int]:
    """The versions a stage of ``kind`` (train | rl | eval) hashes: the tasks' and its own."""
    return {"tasks": STAGE_VERSIONS["tasks"], kind: STAGE_VERSIONS[kind]}
