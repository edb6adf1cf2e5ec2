"""The `scaling` command end to end, in a subprocess as a user runs it."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from tests.conftest import ROOT, SHARED_DATA, documented_json_fields, json_keys


def scaling(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "scaling", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300
    )


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    d = tmp_path_factory.mktemp("tables")
    x = np.logspace(2, 6, 16)
    y = (0.1 + 5.0 * x**-0.4) * np.exp(np.random.default_rng(0).normal(0, 0.01, x.size))
    df = pd.DataFrame({"params": x, "error": y, "note": "run"})
    df.to_csv(d / "t.csv", index=False)
    df.to_parquet(d / "t.parquet")
    df.to_json(d / "t.jsonl", orient="records", lines=True)
    return d


@pytest.mark.parametrize("suffix", ["csv", "parquet", "jsonl"])
def test_fit_reads_every_table_format(tables, suffix):
    r = scaling("fit", tables / f"t.{suffix}", "--x", "params", "--y", "error", "--form", "saturating_power")
    assert r.returncode == 0, r.stderr
    assert "saturating_power: error = " in r.stdout and "R^2 = 0.99" in r.stdout


def test_fit_saves_a_law_that_law_commands_reuse(tables, tmp_path):
    out = tmp_path / "law.json"
    r = scaling(
        "fit",
        tables / "t.csv",
        "--x",
        "params",
        "--y",
        "error",
        "--form",
        "saturating_power",
        "--bootstrap",
        "100",
        "--holdout",
        "3",
        "--out",
        out,
    )
    assert r.returncode == 0, r.stderr
    assert "95% CI" in r.stdout and "held-out error" in r.stdout and out.exists()
    law = json.loads(out.read_text())

    r = scaling("law", "show", out)
    assert r.returncode == 0 and law["formula"] in r.stdout and law["data_fingerprint"] in r.stdout
    r = scaling("law", "predict", out, "1e4", "1e8")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    predicted = float(lines[0].split("=")[1].split()[0])
    p = law["params"]
    assert predicted == pytest.approx(p["E"] + p["A"] * 1e4 ** -p["alpha"], rel=1e-5)
    r = scaling("law", "solve", out, "0.2")
    assert r.returncode == 0 and "params for error = 0.2:" in r.stdout
    solved = float(r.stdout.split(":")[1].split()[0])

    r = scaling("law", "predict", out, "1e4", "1e8", "--json")  # one JSON list on stdout, nothing else
    rows = json.loads(r.stdout)
    assert documented_json_fields("law predict") == json_keys(rows) - {"params", "error"}  # x and y names
    assert [row["x"] for row in rows] == [{"params": 1e4}, {"params": 1e8}]
    assert rows[0]["error"] == pytest.approx(predicted, rel=1e-5)
    assert all(row["lo"] <= row["error"] <= row["hi"] and row["level"] == 0.95 for row in rows)
    ((row,),) = [json.loads(scaling("law", "solve", out, "0.2", "--json").stdout)]
    assert row["error"] == 0.2 and row["params"] == pytest.approx(solved, rel=1e-5) and row["lo"] < row["hi"]
    assert documented_json_fields("law solve") == set(row) - {"params", "error"}
    r = scaling("--version")
    assert r.returncode == 0 and r.stdout.startswith("scaling ")

    r = scaling("law", "solve", out, "0.01")
    assert r.returncode == 2 and "out of reach" in r.stderr and "Traceback" not in r.stderr


def test_auto_form_reports_the_choice(tables):
    r = scaling("fit", tables / "t.csv", "--x", "params", "--y", "error")
    assert r.returncode == 0, r.stderr
    assert "auto: held-out error by form" in r.stdout


def test_chinchilla_main_job_command():
    r = scaling(
        "fit",
        SHARED_DATA / "chinchilla_fig4_points.csv",
        "--assign",
        "N = `Model Size`",
        "--assign",
        "D = `Training FLOP` / (6 * N)",
        "--where",
        'loss.rank(ascending=False, method="first") > 5',
        "--x",
        "N,D",
        "--y",
        "loss",
        "--form",
        "chinchilla",
    )
    assert r.returncode == 0, r.stderr
    assert "on 240 points" in r.stdout and "loss = 1.817" in r.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["fit", "missing.csv", "--x", "a", "--y", "b"], "missing.csv: no such file"),
        (["fit", "{t}/t.csv", "--x", "size", "--y", "error"], "column 'size' is not in the data"),
        (["fit", "{t}/t.csv", "--x", "params", "--y", "error", "--form", "cubic"], "unknown form 'cubic'"),
        (["fit", "{t}/t.csv", "--x", "note", "--y", "error"], "column 'note' is not numeric"),
        (["fit", "{t}/t.txt", "--x", "params", "--y", "error"], "unsupported table format '.txt'"),
        (["fit", "{t}/t.csv", "--x", "params", "--y", "error", "--assign", "oops"], "expected NAME = EXPRESSION"),
        (["fit", "{t}/t.csv", "--x", "params", "--y", "error", "--paired", "seed"], "paired names column 'seed'"),
        (["law", "show", "{t}/t.csv"], "not a valid law file"),
        (["run", "{x}/thinking_cpu.yaml", "--out", "{t}/r", "--model", "d96"], "--model d96: not a preset of"),
        (["bench", "--sections", "nope"], "unknown bench section"),
    ],
)
def test_bad_input_exits_nonzero_without_traceback(tables, args, message):
    (tables / "t.txt").write_text("x")
    r = scaling(*[a.format(t=tables, x=ROOT / "experiments") for a in args])
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr


def test_bench_prints_the_fit_figures_as_json():
    r = scaling("bench", "--json", "--sections", "fit")
    assert r.returncode == 0, r.stderr
    fit = json.loads(r.stdout)["fit"]
    for key in ("chinchilla_grid_s", "scipy_loop_s_per_start", "bootstrap_1000_s", "speedup_per_start"):
        assert fit[key] > 0
    assert fit["chinchilla_starts"] == 4500
    # Both optimisers found the same optimum, so the timing compares like with like.
    assert fit["chinchilla_objective"] == pytest.approx(fit["scipy_best_objective"], rel=1e-6)


def test_bench_train_and_sample_sections_report_ratios_to_references():
    """The bench's train and sample sections on the smallest preset, few repeats (the figures of the
    README come from the full ``scaling bench``)."""
    from scaling.bench import bench_sample, bench_train

    presets = ("d32",)
    train = bench_train(steps=5, presets=presets, repeats=2)
    sample = bench_sample(batch=16, new_tokens=16, presets=presets, repeats=2)
    for name in presets:
        assert 0 < train[name]["fraction_of_matmul"] < 1 and train[name]["tokens_per_s"] > 0
        assert sample[f"{name}_decode_tokens_per_s"] > 0
    for key in ("vmap_seeds_cost", "seeds_cost_vmap", "seeds_cost_map", "vmap_matmul_cost"):
        assert 1 < train[key] < 20, key  # 8 seeds never cost less than one
    assert 1 < sample["budgets_cost"] < 8  # 8 budgets for less than 8 separate decodes


def test_bench_tracking_section_times_a_stage_with_and_without_tensorboard():
    from scaling.bench import bench_tracking

    figures = bench_tracking(preset="d32", steps=20, repeats=1)
    assert figures["stage_s"] > 0 and figures["stage_tracked_s"] > 0
    assert 0.5 < figures["tracking_cost"] < 2  # the same stage twice, whatever the noise of one repeat


def test_ctrl_c_during_a_sweep_exits_130_with_one_line_and_leaves_no_claim(tmp_path):
    import signal
    import time

    config = tmp_path / "long.yaml"
    config.write_text("task: sum\nmodels: [d32]\nseeds: [0]\ntrain: {steps: 100000, batch_size: 8, chunk_steps: 50}\n")
    out = tmp_path / "out"
    p = subprocess.Popen(
        [sys.executable, "-m", "scaling", "run", str(config), "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not list(out.glob("stages/train-*/metrics.jsonl")) and time.monotonic() < deadline:
        time.sleep(0.2)  # interrupted while training, after its first chunk
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "interrupted\n" in err and "Traceback" not in err  # one line (after the progress bars)
    r = scaling("status", out, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["by_kind"]["train"] == {"pending": 1}  # no claim left behind, nothing done
