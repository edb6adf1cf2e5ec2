"""The analysis and the planning notebook, on a reduced quickstart run (real training, small budgets)."""

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scaling import laws
from scaling.analysis import analyze, stage_curves
from scaling.report import thinking_table
from scaling.sweep import run_sweep
from scaling.track import read_metrics

from .conftest import ROOT

# The quickstart, shrunk: fewer presets, seeds, steps, prompts and problems; every axis kept, and a second,
# shorter training length, so that the ladder's step 1 on (N, D) runs too.
REDUCED = [
    "seeds=[0, 1]",
    "models=[d32, d48, d64]",
    "zip.train.steps=[800, 800, 400]",
    "zip.rl.prompts=[64, 0, 0]",
    "train.difficulties=[1, 2]",
    "eval.difficulties=[1, 3]",
    "eval.n_per_difficulty=16",
    "rl.prompts_per_step=4",
    "rl.chunk_steps=1",
    "rl.ladder_points=5",
    "testtime.n_per_difficulty=8",
]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """The reduced quickstart, tracked by TensorBoard and by a stand-in for W&B (tests/stand_ins)."""
    out = tmp_path_factory.mktemp("quick") / "run"
    config = out.parent / "quickstart.yaml"
    text = (ROOT / "experiments" / "quickstart.yaml").read_text()
    config.write_text(text + "track: [tensorboard]\nwandb: {project: quick, mode: offline}\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(ROOT / "tests" / "stand_ins"))
        run_sweep(config, out, overrides=REDUCED, progress=False, track=["wandb"])
        assert sys.modules.pop("wandb").__file__.startswith(str(ROOT / "tests" / "stand_ins"))
    return out


def test_analysis_regenerates_laws_figures_and_report(quick_run):
    results = pd.read_parquet(quick_run / "results.parquet")
    ladder = results[results["source"] == "rl_ladder"]
    assert set(ladder["strategy"]) == {"greedy", "sampled"} and set(ladder["model"]) <= {"d64", "d80"}
    assert ladder["rl_prompts"].nunique() >= 4
    res = analyze(quick_run, bootstrap=50)
    assert {"thinking", "majority"} <= set(res.laws)
    # 64 RL prompts barely move this small run's pass@1: a law, or a reason why not
    assert "rl_data" in res.laws or any(s.startswith("rl_data law: ") for s in res.skipped), res.skipped
    assert any(name.startswith("tradeoff_acc") for name in res.laws)
    assert any(s.startswith("size law: 3 distinct params values") for s in res.skipped)  # 3 presets are too few
    for name, law in res.laws.items():
        saved = laws.load(quick_run / "laws" / f"{name}.json")
        np.testing.assert_allclose(saved.predict([10.0, 100.0]), law.predict([10.0, 100.0]))
        doc = json.loads((quick_run / "laws" / f"{name}.json").read_text())
        assert "r2" in doc and "holdout" in doc
    stems = ("size", "size_difficulty", "thinking", "thinking_difficulty", "majority", "rl_data", "tradeoff")
    for stem in (*stems, "training_curves", "rl_curves"):
        for suffix in (".png", ".svg", ".pdf"):
            assert (quick_run / "figures" / f"{stem}{suffix}").stat().st_size > 1000, stem
    # figures come back open for restyling: the law dashed beyond its fitted range, log axes on the map
    from scaling import plots
    from scaling.analysis import pick_model, thinking_axis

    figures = plots.axis_figures(thinking_axis(results, pick_model(results)), res.laws["thinking"])
    ax = figures["thinking"].axes[0]
    assert any(line.get_linestyle() == "--" and line.get_label() == "extrapolated" for line in ax.lines)
    ax.set_title("restyled")
    assert len(plots.save_all(figures, quick_run / "restyled")) == 3 * len(figures)
    tradeoff = plots.tradeoff_figure(results, {})
    assert tradeoff.axes[0].get_xscale() == tradeoff.axes[0].get_yscale() == "log"
    curves = stage_curves(quick_run)  # a panel per training stage: a thin line per seed, the mean bold
    fig = plots.training_curves_figure(curves["train"])
    assert len(curves["train"]) == 6 and all(len(ax.lines) == 3 for ax in fig.axes if ax.get_visible())
    assert [line.get_linewidth() for line in fig.axes[0].lines] == [0.6, 0.6, 1.8]
    assert "d32, steps=400" in curves["train"] and fig.axes[0].get_yscale() == "log"
    (rl,) = curves["rl"].values()
    assert rl["prompts_seen"].max() == 64 and (rl["thinking_tokens"] > 0).all() and (rl["answer_tokens"] > 0).all()
    report = (quick_run / "report.md").read_text()
    assert "| law | formula |" in report and "## Skipped" in report
    for name, law in res.laws.items():
        assert f"| {name} | `{law.formula()}`" in report
    assert "## Thinking budget" in report
    thinking = thinking_table(results)  # the oracle: addition traces (4d - 1 tokens, d = 1, 2) no longer than B
    oracle = thinking.groupby("budget")["oracle"].mean()
    assert oracle.to_dict() == {0: 0.0, 1: 0.0, 2: 0.0, 4: 0.5, 8: 1.0, 16: 1.0, 32: 1.0, 64: 1.0}
    assert ((thinking["lo"] <= thinking["accuracy"]) & (thinking["accuracy"] <= thinking["hi"])).all()


def tracked_stages(run: Path) -> dict[str, list[dict]]:
    """Stage name -> its metrics.jsonl rows, for the stages that write one (training, RL)."""
    found = {d.name: read_metrics(d / "metrics.jsonl") for d in sorted((run / "stages").iterdir())}
    return {name: rows for name, rows in found.items() if rows}


def scalars(rows: list[dict]) -> dict[tuple, float]:
    """(step, seed, scalar) -> value of metrics.jsonl rows."""
    return {(r["step"], r["seed"], k): v for r in rows for k, v in r.items() if k not in ("step", "seed", "time")}


def test_tensorboard_event_files_hold_every_scalar_of_metrics_jsonl(quick_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    stages = tracked_stages(quick_run)
    assert sorted({name.split("-")[0] for name in stages}) == ["rl", "train"] and len(stages) == 7
    for name, rows in stages.items():
        kind, got = name.split("-")[0], {}
        for seed in {r["seed"] for r in rows}:
            events = EventAccumulator(str(quick_run / "tensorboard" / name / f"seed{seed}"))
            events.Reload()
            for tag in events.Tags()["scalars"]:
                got |= {(e.step, seed, tag.removeprefix(f"{kind}/")): e.value for e in events.Scalars(tag)}
        want = scalars(rows)
        assert got.keys() == want.keys(), name
        keys = list(want)
        np.testing.assert_allclose([got[k] for k in keys], [want[k] for k in keys], rtol=1e-6)  # float32 events
    rl = next(rows for name, rows in stages.items() if name.startswith("rl"))
    for key in ("reward", "pass_rate", "kl", "entropy", "clip_frac", "thinking_tokens", "answer_tokens", "loss"):
        assert all(key in r for r in rl), key


def test_a_stand_in_wandb_receives_the_scalars_of_metrics_jsonl(quick_run):
    calls = [json.loads(line) for line in open(quick_run / "stand_in_wandb.jsonl")]
    inits = {c["id"]: c for c in calls if c["call"] == "init"}
    stages = tracked_stages(quick_run)
    assert set(inits) == set(stages)  # one W&B run per training and RL stage, none for evaluation
    for name, rows in stages.items():
        init = inits[name]
        assert init["mode"] == "offline" and init["project"] == "quick" and init["job_type"] == name.split("-")[0]
        assert init["config"]["model"] in ("d32", "d48", "d64") and init["resume"] == "allow"
        logged = [c for c in calls if c["id"] == name and c["call"] == "log"]
        got = {}
        for c in logged:
            got |= {(c["step"], int(k.split("/seed")[1]), k.split("/seed")[0]): v for k, v in c["data"].items()}
        assert got == scalars(rows), name
        steps = [c["step"] for c in logged]
        assert steps == sorted(set(steps))  # one call per step, increasing, as W&B wants
        assert [c["call"] for c in calls if c["id"] == name][-1] == "finish"


def test_every_json_file_a_sweep_and_its_analysis_write_is_strict(quick_run):
    from scaling.io import loads_strict

    analyze(quick_run, bootstrap=20)
    orbax_metadata = ("_CHECKPOINT_METADATA", "_METADATA", "_sharding")
    files = [p for p in quick_run.rglob("*") if p.suffix in (".json", ".jsonl") or p.name in orbax_metadata]
    files = [p for p in files if p.name != "stand_in_wandb.jsonl"]  # the test's, not the toolkit's
    assert {p.parent.name for p in files if p.suffix == ".json"} >= {"laws", quick_run.name}
    for path in files:
        lines = path.read_text().splitlines() if path.suffix == ".jsonl" else [path.read_text()]
        for line in lines:
            loads_strict(line)  # raises on NaN / Infinity and on anything that is not JSON


def test_analysis_of_incomplete_results_says_what_it_skipped(quick_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(quick_run, run, ignore=shutil.ignore_patterns("checkpoint", "figures", "laws"))
    df = pd.read_parquet(run / "results.parquet")
    one_seed = df[(df["seed"] == 0) & (df["model"] != "d48")]  # a missing preset and a single seed
    one_seed.to_parquet(run / "results.parquet")
    (run / "results.csv").unlink()
    stage = next((run / "stages").glob("eval-*"))
    (stage / "done.json").unlink()
    (stage / "failed.json").write_text(json.dumps({"reason": "StageFailed: non-finite training loss", "worker": 0}))
    res = analyze(run, bootstrap=20)
    text = "\n".join(res.skipped)
    assert "failed: StageFailed: non-finite training loss" in text
    assert "single seed" in text
    assert (run / "figures" / "size.png").exists() and (run / "figures" / "thinking.png").exists()
    assert "## Skipped" in (run / "report.md").read_text()


def test_analyze_cli_errors_cleanly(tmp_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "scaling", "analyze", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 2 and "no results.parquet or results.csv" in r.stderr and "Traceback" not in r.stderr


def test_planning_notebook_runs_end_to_end(quick_run, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    analyze(quick_run, bootstrap=50)
    monkeypatch.setenv("SCALING_RUN_DIR", str(quick_run))
    monkeypatch.setenv("SCALING_TARGET", "0.3")
    nb = nbformat.read(ROOT / "analysis" / "planning.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = "".join(
        o.get("text", "") + json.dumps(o.get("data", {})) for cell in nb.cells for o in cell.get("outputs", [])
    )
    assert "thinking" in outputs and "Error" not in outputs
    assert os.environ["SCALING_RUN_DIR"] == str(quick_run)
    assert Path(quick_run / "laws").is_dir()


def synthetic_results(accuracy, models=None, seeds=(0, 1, 2)) -> pd.DataFrame:
    """A results table of final greedy models only, accuracy(preset index, seed) on difficulties 1-2."""
    rows = []
    for i, model in enumerate(models or ("d32", "d48", "d64", "d80", "d96")):
        for seed in seeds:
            for d in (1, 2):
                rows.append(
                    {"source": "eval", "strategy": "greedy", "model": model, "params": 1e4 * 2**i,
                     "non_embedding_params": 8e3 * 2**i, "seed": seed, "difficulty": d, "value": accuracy(i, seed),
                     "in_train_range": True, "rl_prompts": 0, "budget": None, "k": 1, "train_tokens": 1e6,
                     "train_flops": 1e12 * 2**i, "task": "add", "answer_loss": 1.0, "train_loss": 0.5}
                )  # fmt: skip
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    ("name", "accuracy", "reason"),
    [
        ("constant", lambda i, s: 0.5, "constant"),
        ("all zero", lambda i, s: 0.0, "constant"),
        ("one x", None, "distinct params"),
        ("nan rows", lambda i, s: np.nan if s == 0 else 0.1 * i, "non-finite value were left out"),
    ],
)
def test_analysis_never_crashes_on_degenerate_data(tmp_path, name, accuracy, reason):
    df = synthetic_results(accuracy or (lambda i, s: 0.2 + 0.1 * s), models=("d32",) if accuracy is None else None)
    run = tmp_path / "run"
    run.mkdir()
    df.to_parquet(run / "results.parquet")
    res = analyze(run, bootstrap=10)
    assert any(reason in line for line in res.skipped), res.skipped
    assert "## Skipped" in (run / "report.md").read_text()


def test_stuck_seeds_by_the_median_and_behind_the_best():
    """A seed far above its preset's median is stuck; when most seeds are stuck the median is one of them,
    and only the comparison with the best seed shows them."""
    from scaling.analysis import stuck_seeds

    losses = {"d32": [0.10, 0.11, 0.50], "d48": [0.10, 0.38, 0.30]}
    df = pd.DataFrame(
        [
            {"source": "eval", "model": m, "train_tokens": 1000, "seed": s, "train_loss": loss, "difficulty": d}
            for m, ls in losses.items()
            for s, loss in enumerate(ls)
            for d in (1, 2)
        ]
    )
    table = stuck_seeds(df).set_index("model")
    assert table.loc["d32", "stuck_seeds"] == "2" and table.loc["d32", "behind_best_seeds"] == "2"
    assert table.loc["d48", "stuck"] == 0 and table.loc["d48", "behind_best_seeds"] == "1,2"
    assert table.loc["d48", "best_train_loss"] == 0.10 and table.loc["d48", "median_train_loss"] == 0.30
