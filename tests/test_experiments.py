"""Every shipped sweep config plans, and the compute its comment quotes is what --dry-run estimates."""

import re
from pathlib import Path

import pytest

from scaling.plan import estimate_flops, make_plan

EXPERIMENTS = sorted((Path(__file__).parent.parent / "experiments").glob("*.yaml"))


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_experiment_configs_plan_and_quote_their_compute(path):
    plan = make_plan(path)
    assert plan.points and plan.stages
    quoted = re.search(r"Estimated compute: ([0-9.e+]+) (training )?FLOPs", path.read_text())
    assert quoted, f"{path.name} quotes no 'Estimated compute: ... FLOPs'"
    kinds = ("train",) if quoted.group(2) else ("train", "rl", "eval")
    total = sum(
        estimate_flops(plan.runs[name], stage.kind) for name, stage in plan.stages.items() if stage.kind in kinds
    )
    assert total == pytest.approx(float(quoted.group(1)), rel=0.1), path.name


def test_accelerator_thinking_config_decodes_thousands_of_thinking_tokens(tmp_path):
    """experiments/thinking_gpu.yaml end to end on a tiny model (d32, 2 training steps of 4 searches; fewer
    and smaller eval problems): an untrained model rarely ends its thinking, so the largest budget spends
    thousands of tokens, decoded from one pass with every other budget."""
    from scaling.sweep import run_sweep

    config = Path(__file__).parent.parent / "experiments" / "thinking_gpu.yaml"
    tiny = ["models=[d32]", "train.steps=2", "train.chunk_steps=2", "train.batch_size=4"]
    tiny += ["eval.difficulties=[1, 3]", "eval.n_per_difficulty=2", "testtime.n_per_difficulty=1", "testtime.ks=[1, 2]"]
    results = run_sweep(config, tmp_path, tiny, progress=False).results
    budget = results[results.strategy == "budget"]
    assert sorted(budget.budget.dropna().unique()) == [0, 16, 32, 64, 128, 256, 512, 1024, 2048]
    assert budget[budget.budget == 2048].thinking_tokens.max() > 1000
    assert (budget.thinking_tokens <= budget.budget + 1e-9).all()
    assert set(results.difficulty) == {1, 2, 3} and (results.task == "path_long").all()
    assert {"rethink_context", "majority", "oracle"} <= set(results.strategy)


def test_generalisation_config_runs_end_to_end_without_positions(tmp_path):
    """experiments/generalise_cpu.yaml on a tiny budget: models without positions, SFT+RL and the SFT-only
    control at equal samples, evaluated above the training range."""
    from scaling.sweep import run_sweep

    config = Path(__file__).parent.parent / "experiments" / "generalise_cpu.yaml"
    tiny = ["models=[d32]", "seeds=[0]", "train.chunk_steps=2", "train.batch_size=4", "eval.n_per_difficulty=2"]
    tiny += ["eval.samples=1", "rl.chunk_steps=2", "rl.prompts_per_step=2", "rl.group_size=2"]
    tiny += ["zip.positions=[none, none]", "zip.train.steps=[8, 10]", "zip.rl.prompts=[8, 0]"]
    results = run_sweep(config, tmp_path, tiny, progress=False).results
    assert set(results["axis:positions"]) == {"none"} and set(results["difficulty"]) == set(range(1, 8))
    assert set(results.loc[~results["in_train_range"], "difficulty"]) == {6, 7}
    equal = results[results["source"] == "eval"].groupby("point")[["train_samples", "rl_prompts"]].max().sum(axis=1)
    assert equal[0] == equal[1] == 8 * 4 + 8  # the control trains on as many samples as SFT + RL
    stages = {p.name.split("-")[0] for p in (tmp_path / "stages").iterdir()}
    assert stages == {"train", "rl", "eval"}
