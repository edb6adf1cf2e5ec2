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
