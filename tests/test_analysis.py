"""The analysis and the planning notebook, on a reduced quickstart run (real training, small budgets)."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scaling import laws
from scaling.analysis import analyze
from scaling.sweep import run_sweep

from .conftest import ROOT

REDUCED = [  # the quickstart, shrunk: fewer presets, seeds, steps, prompts and problems; every axis kept
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
    out = tmp_path_factory.mktemp("quick") / "run"
    run_sweep(ROOT / "experiments" / "quickstart.yaml", out, overrides=REDUCED, progress=False)
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
    for stem in ("size", "size_difficulty", "thinking", "thinking_difficulty", "majority", "rl_data", "tradeoff"):
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
    report = (quick_run / "report.md").read_text()
    assert "| law | formula |" in report and "## Skipped" in report
    for name, law in res.laws.items():
        assert f"| {name} | `{law.formula()}`" in report


def test_every_json_file_a_sweep_and_its_analysis_write_is_strict(quick_run):
    from scaling.io import loads_strict

    analyze(quick_run, bootstrap=20)
    orbax_metadata = ("_CHECKPOINT_METADATA", "_METADATA", "_sharding")
    files = [p for p in quick_run.rglob("*") if p.suffix in (".json", ".jsonl") or p.name in orbax_metadata]
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
