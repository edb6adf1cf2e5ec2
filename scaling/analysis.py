"""``scaling analyze DIR``: from a sweep's results table alone, fit a law per axis and regenerate
every figure, the saved laws (``DIR/laws/*.json``) and ``DIR/report.md``.

Axes (y is held-out greedy accuracy on the training difficulties, averaged over difficulties, one
value per seed):
    size       x = parameters, the final model of every preset
    rl_data    x = RL prompts seen (the RL ladder), for one preset
    thinking   x = thinking budget B >= 1 (forced answer after B tokens), one preset
    majority   x = k samples in a majority vote, one preset
    tradeoff   thinking tokens needed for a target accuracy against training FLOPs (iso-accuracy
               frontier over presets), a power law per target
The preset of the one-preset axes is ``--model``, or the preset whose supervised accuracy is closest
to 50% (most room to move either way). Every law holds out its largest x point: ``holdout_error``
is the mean absolute error there, in accuracy units (0.05 = 5 points).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from scaling import laws
from scaling.errors import LawError, ScalingError
from scaling.io import atomic_write_text, read_json
from scaling.results import load_results, range_table


@dataclass
class AxisData:
    name: str
    x: str  # column of ``points``
    label: str  # axis label with units
    fixed: str  # what was held fixed, for titles
    points: pd.DataFrame  # one row per (x, seed): x, seed, accuracy
    per_difficulty: pd.DataFrame  # x, difficulty, accuracy (mean over seeds), in_train_range
    form: str = "sigmoid_log"
    extra: pd.DataFrame | None = None  # points shown but not fitted (e.g. x = 0)


@dataclass
class Analysis:
    laws: dict[str, laws.Law] = field(default_factory=dict)
    figures: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    report: Path | None = None


def _greedy(df: pd.DataFrame, source: str) -> pd.DataFrame:
    return df[(df["source"] == source) & (df["strategy"] == "greedy")]


def _sft(df: pd.DataFrame) -> pd.DataFrame:
    """Accuracy rows of the supervised models: the RL ladder at 0 prompts where there is RL."""
    ladder = _greedy(df, "rl_ladder")
    sft = ladder[ladder["rl_prompts"] == 0]
    return sft if not sft.empty else _greedy(df, "eval")


def pick_model(df: pd.DataFrame) -> str:
    """The preset whose supervised in-range greedy accuracy is closest to 0.5."""
    acc = _sft(df)
    acc = acc[acc["in_train_range"]].groupby("model")["value"].mean()
    return str((acc - 0.5).abs().idxmin())


def _per_seed(rows: pd.DataFrame, x: str, extra: tuple[str, ...] = ()) -> pd.DataFrame:
    """Mean over in-range difficulties per (x, seed); ``extra`` columns averaged alongside."""
    inside = rows[rows["in_train_range"]]
    agg = {"accuracy": ("value", "mean"), **{c: (c, "mean") for c in extra}}
    return inside.groupby([x, "seed"], as_index=False).agg(**agg)


def _per_difficulty(rows: pd.DataFrame, x: str) -> pd.DataFrame:
    out = rows.groupby([x, "difficulty"], as_index=False).agg(
        accuracy=("value", "mean"), in_train_range=("in_train_range", "first")
    )
    return out


def size_axis(df: pd.DataFrame) -> AxisData:
    rows = _greedy(df, "eval")
    after_rl = "; after RL where the preset has an RL stage" if (rows["rl_prompts"] > 0).any() else ""
    fixed = f"task {rows['task'].iloc[0]}, greedy{after_rl}"
    return AxisData("size", "params", "parameters", fixed, _per_seed(rows, "params"), _per_difficulty(rows, "params"))


def rl_axis(df: pd.DataFrame, model: str) -> AxisData:
    """Pass@1 at the sampling temperature (greedy accuracy if the ladder has no samples) against RL prompts."""
    ladder = df[df["source"] == "rl_ladder"]
    if ladder.empty:
        raise LawError("no RL ladder rows (the sweep has no rl: section)")
    if model not in set(ladder["model"]):
        model = pick_model(ladder)  # the RL preset closest to 50%
    strategy = "sampled" if (ladder["strategy"] == "sampled").any() else "greedy"
    rows = ladder[(ladder["model"] == model) & (ladder["strategy"] == strategy)]
    per = _per_seed(rows, "rl_prompts")
    what = "pass@1 (sampled)" if strategy == "sampled" else "greedy accuracy"
    return AxisData(
        "rl_data",
        "rl_prompts",
        "RL data (distinct prompts seen)",
        f"model {model}, {what}",
        per[per["rl_prompts"] > 0],
        _per_difficulty(rows[rows["rl_prompts"] > 0], "rl_prompts"),
        extra=per[per["rl_prompts"] == 0],
    )


def _strategy_axis(df: pd.DataFrame, model: str, strategy: str, name: str, x: str, label: str) -> AxisData:
    rows = df[(df["source"] == "eval") & (df["strategy"] == strategy) & (df["model"] == model)]
    if rows.empty:
        raise LawError(f"no {strategy!r} rows for model {model} (the sweep has no matching testtime: setting)")
    per = _per_seed(rows, x)
    return AxisData(
        name,
        x,
        label,
        f"model {model}",
        per[per[x] > 0],
        _per_difficulty(rows[rows[x] > 0], x),
        extra=per[per[x] == 0],
    )


def thinking_axis(df: pd.DataFrame, model: str) -> AxisData:
    """Greedy accuracy against the thinking budget B >= 1 (B = 0, answering at once, is shown apart)."""
    return _strategy_axis(
        df, model, "budget", "thinking", "budget", "thinking budget (tokens before the forced answer)"
    )


def majority_axis(df: pd.DataFrame, model: str) -> AxisData:
    return _strategy_axis(df, model, "majority", "majority", "k", "samples k (majority vote)")


def fit_axis(data: AxisData, bootstrap: int, seed: int) -> laws.Law:
    """The axis law with a bootstrap band, holding out the largest x point."""
    n_x = data.points[data.x].nunique()
    n_params = len(laws.FORMS[data.form].params)
    if n_x < n_params + 1:
        raise LawError(
            f"{n_x} distinct {data.x} values; a {n_params}-parameter law with one held out needs {n_params + 1}"
        )
    # Squared residuals: the law is the expected accuracy over seeds (a Huber loss with a small delta
    # behaves like L1 and would follow the median seed of a bimodal set).
    return laws.fit(
        data.points, data.x, "accuracy", data.form, loss="squared", bootstrap=bootstrap, seed=seed, holdout=1
    )


def tradeoff_points(df: pd.DataFrame, level: float) -> pd.DataFrame:
    """Per preset: training FLOPs and the fewest tokens per problem whose budget reaches ``level``
    (mean accuracy over seeds, interpolated in log tokens between budgets); presets that never do are dropped."""
    rows = df[(df["source"] == "eval") & (df["strategy"] == "budget") & df["in_train_range"]]
    out = []
    for model, g in rows.groupby("model"):
        curve = g.groupby("budget").agg(acc=("value", "mean"), tokens=("total_tokens", "mean")).sort_values("tokens")
        acc, tok = curve["acc"].to_numpy(), curve["tokens"].to_numpy()
        hit = np.flatnonzero(acc >= level)
        if hit.size == 0:
            continue
        i = hit[0]
        if i == 0:
            need = tok[0]
        else:  # log-linear interpolation between the budgets on either side of the level
            t = (level - acc[i - 1]) / (acc[i] - acc[i - 1])
            need = math.exp(math.log(tok[i - 1]) + t * (math.log(tok[i]) - math.log(tok[i - 1])))
        out.append({"model": model, "train_flops": g["train_flops"].iloc[0], "tokens": need})
    return pd.DataFrame(out, columns=["model", "train_flops", "tokens"])


def fit_tradeoff(df: pd.DataFrame, level: float) -> laws.Law:
    """tokens = A * train_flops^-alpha at accuracy ``level`` (Jones 2021's train/test trade-off)."""
    pts = tradeoff_points(df, level)
    if len(pts) < 3:
        raise LawError(f"only {len(pts)} presets reach accuracy {level:.2f} under some budget (need 3)")
    law = laws.fit(pts, "train_flops", "tokens", "power", bootstrap=200)
    law.options["accuracy"] = level
    law.options["train_flops_range"] = [float(pts["train_flops"].min()), float(pts["train_flops"].max())]
    return law


def tradeoff_levels(df: pd.DataFrame) -> list[float]:
    """Three accuracy targets for frontiers, from half the third-best preset's best accuracy up to it
    (so that at least 3 presets reach each, and low targets every preset meets at once are left out)."""
    rows = df[(df["source"] == "eval") & (df["strategy"] == "budget") & df["in_train_range"]]
    if rows.empty:
        return []
    best = rows.groupby(["model", "budget"])["value"].mean().groupby("model").max().sort_values()
    if len(best) < 3 or best.iloc[-3] <= 0:
        return []
    top = float(best.iloc[-3])
    return sorted({v for v in np.floor(np.linspace(top / 2, top, 3) * 100) / 100 if v > 0})


def rl_ladder_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per RL preset and data volume: greedy and sampled accuracy inside and above the training range."""
    return range_table(df[df["source"] == "rl_ladder"], ["model", "rl_prompts", "strategy"])


def rl_per_difficulty(df: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Pass@1 (sampled, else greedy) per RL preset, data volume and difficulty (mean over seeds), and
    each preset's edge-of-competence difficulty: the trained difficulty whose start is closest to 0.5."""
    ladder = df[df["source"] == "rl_ladder"]
    if ladder.empty:
        return pd.DataFrame(), {}
    strategy = "sampled" if (ladder["strategy"] == "sampled").any() else "greedy"
    ladder = ladder[ladder["strategy"] == strategy]
    table = ladder.pivot_table(index=["model", "rl_prompts"], columns="difficulty", values="value").reset_index()
    table.columns = [c if isinstance(c, str) else f"difficulty {c}" for c in table.columns]
    start = ladder[(ladder["rl_prompts"] == 0) & ladder["in_train_range"]]
    edges = {m: int((g.groupby("difficulty")["value"].mean() - 0.5).abs().idxmin()) for m, g in start.groupby("model")}
    return table, edges


def rl_vs_sft(df: pd.DataFrame) -> pd.DataFrame:
    """SFT+RL against SFT-only at the same number of training samples (supervised examples + RL prompts):
    every final RL model next to a supervised-only model of its preset trained on as many samples."""
    final = df[(df["source"] == "eval") & df["strategy"].isin(["greedy", "sampled"])]
    if "train_samples" not in final:
        return pd.DataFrame()
    total = final["train_samples"] + final["rl_prompts"]
    final = final.assign(samples=total, stage=np.where(final["rl_prompts"] > 0, "sft+rl", "sft"))
    pairs = final.groupby(["model", "samples"])["stage"].nunique()
    keep = pairs[pairs == 2].index
    if keep.empty:
        return pd.DataFrame()
    both = final.set_index(["model", "samples"]).loc[keep].reset_index()
    return range_table(both, ["model", "samples", "stage", "strategy"])


def markdown(df: pd.DataFrame) -> str:
    """A pipe table; floats to 3 decimals."""
    cells = [[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row] for row in df.itertuples(index=False)]
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def report_table(fitted: dict[str, laws.Law]) -> str:
    lines = [
        "| law | formula | parameters (95% interval) | R^2 (seeds) | R^2 (means) | held-out error | points |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, law in fitted.items():
        params = ", ".join(
            f"{k} = {_fmt(v)}" + (f" [{_fmt(law.ci[k][0])}, {_fmt(law.ci[k][1])}]" if k in law.ci else "")
            for k, v in law.params.items()
        )
        held = f"{law.holdout_error:.4f}" if not math.isnan(law.holdout_error) else "n/a"
        means = "n/a" if math.isnan(law.r2_means) else f"{law.r2_means:.3f}"
        lines.append(f"| {name} | `{law.formula()}` | {params} | {law.r2:.3f} | {means} | {held} | {law.n_points} |")
    return "\n".join(lines)


def _failures(run_dir: Path) -> list[str]:
    out = []
    for f in sorted((run_dir / "stages").glob("*/failed.json")):
        out.append(f"stage {f.parent.name} failed: {read_json(f, 'stage failure record')['reason']}")
    return out


def analyze(run_dir: str | Path, model: str | None = None, bootstrap: int = 200, seed: int = 0) -> Analysis:
    """Fit, save and plot every law the results table supports; say what was skipped and why."""
    from scaling import plots

    run_dir = Path(run_dir)
    df = load_results(run_dir)
    res = Analysis(skipped=_failures(run_dir))
    model = model or pick_model(df)
    if model not in set(df["model"]):
        raise ScalingError(f"--model {model}: not in the results (models: {sorted(set(df['model']))})")
    fig_dir, law_dir = run_dir / "figures", run_dir / "laws"
    for stale in [*law_dir.glob("*.json"), *fig_dir.glob("*.png"), *fig_dir.glob("*.svg")]:
        stale.unlink()  # a law or figure the data no longer supports must not linger
    builders = {
        "size": lambda: size_axis(df),
        "rl_data": lambda: rl_axis(df, model),
        "thinking": lambda: thinking_axis(df, model),
        "majority": lambda: majority_axis(df, model),
    }
    for name, build in builders.items():
        try:
            data = build()
        except LawError as e:
            res.skipped.append(f"{name}: {e}")
            continue
        if data.points["seed"].nunique() < 2:
            res.skipped.append(f"{name}: single seed, so no seed scatter (bootstrap over points instead)")
        law = None
        try:
            law = fit_axis(data, bootstrap, seed)
        except LawError as e:
            res.skipped.append(f"{name} law: {e} (figure drawn without a law)")
        if law is not None:
            law.save(law_dir / f"{name}.json")
            res.laws[name] = law
        res.figures += plots.axis_figures(data, law, fig_dir)
    levels = tradeoff_levels(df)
    frontiers = {}
    for level in levels:
        try:
            frontiers[level] = fit_tradeoff(df, level)
        except LawError as e:
            res.skipped.append(f"tradeoff at accuracy {level:.2f}: {e}")
    for level, law in frontiers.items():
        name = f"tradeoff_acc{round(100 * level):02d}"
        law.save(law_dir / f"{name}.json")
        res.laws[name] = law
    if df[(df["strategy"] == "budget")].empty:
        res.skipped.append("tradeoff: no thinking-budget rows (the sweep has no testtime.budgets)")
    else:
        if not levels:
            res.skipped.append("tradeoff: fewer than 3 presets with thinking-budget rows, no frontier fitted")
        res.figures += plots.tradeoff_figure(df, frontiers, fig_dir)
    res.report = write_report(run_dir, df, res, model)
    return res


def write_report(run_dir: Path, df: pd.DataFrame, res: Analysis, model: str) -> Path:
    lines = [
        f"# Scaling laws of {run_dir.name}",
        "",
        "Accuracy: held-out, on the training difficulties, averaged over them; greedy, except the RL axis, which",
        f"uses pass@1 sampled at the evaluation temperature when the sweep measured it. One-preset axes use {model}.",
        "Laws are fitted to every seed with squared residuals (the expected accuracy); R^2 (seeds) is measured on",
        "the seeds, R^2 (means) on the mean over seeds at each x. Held-out error: the law is refitted without the",
        "largest x point and scored there, in accuracy units (the trade-off laws, fitted on few presets, are not).",
        "",
        report_table(res.laws) if res.laws else "No law could be fitted.",
        "",
        "## Figures",
        "",
        *[f"- `{p.relative_to(run_dir)}`" for p in res.figures if p.suffix == ".png"],
    ]
    if not (ladder := rl_ladder_table(df)).empty:
        lines += ["", "## RL data ladder (mean and sd over seeds)", "", markdown(ladder)]
    per_difficulty, edges = rl_per_difficulty(df)
    if edges:
        where = ", ".join(f"{m}: difficulty {d}" for m, d in edges.items())
        lines += ["", f"## RL ladder per difficulty (pass@1, mean over seeds; edge of competence {where})", ""]
        lines.append(markdown(per_difficulty))
    if not (versus := rl_vs_sft(df)).empty:
        lines += ["", "## SFT-only against SFT+RL at the same number of training samples", "", markdown(versus)]
    if res.skipped:
        lines += ["", "## Skipped", "", *[f"- {s}" for s in res.skipped]]
    path = run_dir / "report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
