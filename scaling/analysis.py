"""``scaling analyze DIR``: from a sweep's results table alone, fit a law per axis, judge each by
extrapolation, and regenerate every figure, the saved laws (``DIR/laws/*.json``) and ``DIR/report.md``.

Axes (y is held-out accuracy on the training difficulties, averaged over them, one value per seed):
    size        x = parameters, the final model of every preset (at the longest training length)
    size_loss   task loss (``task_loss_column``, nats per token) against parameters: the smooth twin of ``size``
    rl_data     x = RL prompts seen (the RL ladder), for one preset
    thinking    x = thinking budget B >= 1 (forced answer after B tokens), one preset
    majority    x = k samples in a majority vote, one preset
    coverage    x = k samples, pass@k (unbiased), one preset: an exponentiated power law
    tradeoff    thinking tokens needed for a target accuracy against training FLOPs, a power law per target
The ladder (``scaling.laws.fit_ladder``): task loss from (N, D) over presets x training lengths, then
accuracy from task loss; its chained prediction of the largest preset is set beside the size law's.

Every axis law is judged on its largest *unsaturated* x: the largest x whose mean accuracy is more than
2 points from the asymptote of the law fitted on all points. The law is refitted on the points below it
only (extrapolation, never interpolation) and scored there against naive forecasts
(``scaling.laws.extrapolation``); points above it, on the plateau, are left out of the check and the
report says so. The preset of the one-preset axes is ``--model``, or the preset whose supervised accuracy
is closest to 50% (most room to move either way).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from scaling import laws
from scaling.errors import LawError, ScalingError
from scaling.io import read_json
from scaling.laws.extrapolation import SATURATION, naive_forecasts
from scaling.results import load_results, longest_training
from scaling.store import stage_dir
from scaling.track import read_metrics

STUCK_RATIO = 1.5  # a seed whose final training loss exceeds 1.5x its preset's median is stuck


@dataclass
class AxisData:
    name: str
    x: str  # column of ``points``
    label: str  # axis label with units
    fixed: str  # what was held fixed, for titles
    points: pd.DataFrame  # one row per (x, seed): x, seed, y
    per_difficulty: pd.DataFrame  # x, difficulty, accuracy (mean over seeds), in_train_range
    form: str = "sigmoid_log"
    y: str = "accuracy"
    y_label: str = "held-out accuracy (training difficulties)"
    extra: pd.DataFrame | None = None  # points shown but not fitted (e.g. x = 0)
    reference: pd.Series | None = None  # y of a bound drawn beside, indexed by x (the imitation oracle)
    # every x measured on the same models (one per seed): the held-out check pairs the seeds, whose offsets
    # cancel (``scaling.laws.extrapolation``); not the size axis, whose seeds are different models per x
    paired: bool = False


@dataclass
class Analysis:
    laws: dict[str, laws.Law] = field(default_factory=dict)
    ladder: laws.Ladder | None = None
    ladder_table: pd.DataFrame | None = None  # largest preset: measured, direct and chained predictions
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # size_per_seed, stuck
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
    if acc.empty:
        raise LawError("no greedy accuracy rows on the training difficulties")
    return str((acc - 0.5).abs().idxmin())


def _per_seed(rows: pd.DataFrame, x: str, extra: tuple[str, ...] = ()) -> pd.DataFrame:
    """Mean over in-range difficulties per (x, seed); ``extra`` columns averaged alongside."""
    inside = rows[rows["in_train_range"]]
    agg = {"accuracy": ("value", "mean"), **{c: (c, "mean") for c in extra if c in rows}}
    return inside.groupby([x, "seed"], as_index=False).agg(**agg)


def _per_difficulty(rows: pd.DataFrame, x: str) -> pd.DataFrame:
    return rows.groupby([x, "difficulty"], as_index=False).agg(
        accuracy=("value", "mean"), in_train_range=("in_train_range", "first")
    )


def supervised_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Greedy evaluations of the supervised models at each preset's longest training: the eval rows
    without RL, and, for a preset evaluated only after RL, its RL ladder's 0-prompt rows (the same model)."""
    rows = _greedy(df, "eval")
    sft = rows[rows["rl_prompts"] == 0]
    ladder = _greedy(df, "rl_ladder")
    missing = ladder[(ladder["rl_prompts"] == 0) & ~ladder["model"].isin(set(sft["model"]))]
    return longest_training(pd.concat([sft, missing]) if not missing.empty else sft)


def size_axis(df: pd.DataFrame) -> AxisData:
    rows = supervised_rows(df)
    if rows.empty:
        raise LawError("no greedy evaluation rows of supervised models")
    fixed = f"task {rows['task'].iloc[0]}, greedy, supervised models at their longest training"
    return AxisData("size", "params", "parameters", fixed, _per_seed(rows, "params"), _per_difficulty(rows, "params"))


def task_loss_column(rows: pd.DataFrame) -> str:
    """The task loss of the ladder and ``size_loss``: the teacher-forced NLL per token of the reference trace
    and answer (``full_loss``), else of the answer alone (``answer_loss``, tasks without a trace). On a task
    with a scratchpad, answers fail where the trace goes wrong, so the full loss tracks accuracy more closely
    than the answer's loss does (README, the quickstart)."""
    for col in ("full_loss", "answer_loss"):
        if col in rows and rows[col].notna().any():
            return col
    raise LawError("no task-loss column (full_loss or answer_loss) in the results")


def size_loss_axis(df: pd.DataFrame) -> AxisData:
    rows = supervised_rows(df)
    col = task_loss_column(rows)
    per = _per_seed(rows, "params", (col,))
    what = "reference traces and answers" if col == "full_loss" else "reference answers"
    fixed = f"task {rows['task'].iloc[0]}, teacher-forced {what}, longest training"
    label = f"{col.replace('_', ' ')} (nats per token, training difficulties)"
    return AxisData("size_loss", "params", "parameters", fixed, per, _per_difficulty(rows, "params"),
                    form="saturating_power", y=col, y_label=label)  # fmt: skip


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
        paired=True,
    )


def _strategy_rows(df: pd.DataFrame, model: str, strategy: str) -> pd.DataFrame:
    """The final evaluation's rows of ``strategy`` for ``model`` at its longest training."""
    return longest_training(df[(df["source"] == "eval") & (df["strategy"] == strategy) & (df["model"] == model)])


def _strategy_axis(df, model: str, strategy: str, name: str, x: str, label: str, form: str = "sigmoid_log"):
    rows = _strategy_rows(df, model, strategy)
    if rows.empty:
        raise LawError(f"no {strategy!r} rows for model {model} (the sweep has no matching testtime: setting)")
    per = _per_seed(rows, x)
    return AxisData(
        name, x, label, f"model {model}", per[per[x] > 0], _per_difficulty(rows[rows[x] > 0], x),
        form=form, extra=per[per[x] == 0], paired=True,
    )  # fmt: skip


def thinking_axis(df: pd.DataFrame, model: str) -> AxisData:
    """Greedy accuracy against the thinking budget B >= 1 (B = 0, answering at once, is shown apart), with
    the oracle beside it: the share of reference traces no longer than B (a model that only imitates)."""
    data = _strategy_axis(
        df, model, "budget", "thinking", "budget", "thinking budget (tokens before the forced answer)"
    )
    oracle = _strategy_rows(df, model, "oracle")
    oracle = oracle[oracle["in_train_range"] & (oracle["budget"] > 0)]
    if not oracle.empty:
        data.reference = oracle.groupby("budget")["value"].mean()
    return data


def majority_axis(df: pd.DataFrame, model: str) -> AxisData:
    return _strategy_axis(df, model, "majority", "majority", "k", "samples k (majority vote)")


def coverage_axis(df: pd.DataFrame, model: str) -> AxisData:
    """pass@k against k: coverage, an exponentiated power law in k (Brown et al. 2024)."""
    data = _strategy_axis(df, model, "pass@k", "coverage", "k", "samples k (pass@k)", form="exp_power")
    if (data.points["accuracy"] <= 0).any():  # exp_power fits log y: seeds that never pass are left out
        data.points = data.points[data.points["accuracy"] > 0]
    return data


def saturation_cut(points: pd.DataFrame, x: str, y: str, law: laws.Law, margin: float = SATURATION):
    """The largest x whose mean y is more than ``margin`` from the law's asymptote (None if every x is
    on the plateau or the law has none), and the x values above it (left out of the check)."""
    limit = law.spec.limit(tuple(law.params.values()))
    means = points.groupby(x)[y].mean().sort_index()
    if limit is None or not np.isfinite(limit):
        return float(means.index[-1]), []
    rising = means[(means - limit).abs() > margin]
    if rising.empty:
        return None, [float(v) for v in means.index]
    cut = float(rising.index[-1])
    return cut, [float(v) for v in means.index if v > cut]


def fit_axis(data: AxisData, bootstrap: int, seed: int) -> laws.Law:
    """The axis law fitted on every point (what planning reuses), carrying the extrapolation check of its
    largest unsaturated x (fitted without it and everything above it)."""
    pts = data.points.dropna(subset=[data.x, data.y])
    n_params = len(laws.FORMS[data.form].params)
    if pts[data.x].nunique() < n_params + 1:
        raise LawError(
            f"{pts[data.x].nunique()} distinct {data.x} values; a {n_params}-parameter law with one held out "
            f"needs {n_params + 1}"
        )
    # Squared residuals: the law is the expected accuracy over seeds (a Huber loss with a small delta
    # behaves like L1 and would follow the median seed of a bimodal set).
    options = {"loss": "squared", "bootstrap": bootstrap, "seed": seed}
    law = laws.fit(pts, data.x, data.y, data.form, **options)
    cut, above = saturation_cut(pts, data.x, data.y, law)
    if cut is None:
        law.holdout = {"skill": None, "skill_reason": f"every {data.x} lies within {SATURATION} of the asymptote"}
        return law
    below = pts[pts[data.x] <= cut]
    if below[data.x].nunique() < n_params + 1:
        reason = (
            f"the largest unsaturated {data.x} = {cut:g} leaves {below[data.x].nunique() - 1} points below it, "
            f"fewer than the {n_params} + 1 a held-out check needs"
        )
        law.holdout = {"skill": None, "skill_reason": reason, "held_out_x": cut, "left_out": above}
        return law
    check = laws.fit(below, data.x, data.y, data.form, holdout=1, paired="seed" if data.paired else None, **options)
    law.holdout = check.holdout | {"held_out_x": cut, "left_out": above}
    return law


def tradeoff_points(df: pd.DataFrame, level: float) -> pd.DataFrame:
    """Per preset: training FLOPs and the fewest tokens per problem whose budget reaches ``level``
    (mean accuracy over seeds, interpolated in log tokens between budgets); presets that never do are dropped."""
    rows = longest_training(df[(df["source"] == "eval") & (df["strategy"] == "budget") & df["in_train_range"]])
    out = []
    for model, g in rows.groupby("model"):
        curve = g.groupby("budget").agg(acc=("value", "mean"), tokens=("total_tokens", "mean")).sort_values("tokens")
        acc, tok = curve["acc"].to_numpy(), curve["tokens"].to_numpy()
        hit = np.flatnonzero(acc >= level)
        if hit.size == 0 or tok[hit[0]] <= 0:
            continue
        i = hit[0]
        if i == 0:
            need = tok[0]
        else:  # log-linear interpolation between the budgets on either side of the level
            t = (level - acc[i - 1]) / (acc[i] - acc[i - 1])
            need = math.exp(math.log(max(tok[i - 1], 1e-9)) + t * (math.log(tok[i]) - math.log(max(tok[i - 1], 1e-9))))
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


def ladder_points(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (preset, training length, seed) of the final supervised models: N (non-embedding
    parameters), D (training tokens), in-range mean task loss (``task_loss_column``) and accuracy."""
    rows = _greedy(df, "eval")
    rows = rows[rows["in_train_range"] & (rows["rl_prompts"] == 0)]
    if rows.empty:
        raise LawError("no greedy evaluation rows of supervised models on the training difficulties")
    keys = ["model", "train_tokens", "seed"]
    out = rows.groupby(keys, as_index=False).agg(
        N=("non_embedding_params", "first"), D=("train_tokens", "first"),
        loss=(task_loss_column(rows), "mean"), accuracy=("value", "mean"),
    )  # fmt: skip
    out["C"] = 6.0 * out["N"] * out["D"]
    return out.dropna(subset=["loss", "accuracy"])


LADDER_STEP1 = (["N", "D"], ["C"])  # the Chinchilla form on (N, D); else a power law in compute C = 6 N D


def _fit_ladder_points(pts: pd.DataFrame, **options) -> tuple[laws.Ladder, list[str]]:
    """The ladder with step 1 on (N, D), or on compute where the (N, D) fit fails (with two training
    lengths the data exponent is often not identified), and the x columns it used."""
    try:
        return laws.fit_ladder(pts, pts, LADDER_STEP1[0], "loss", "accuracy", **options), LADDER_STEP1[0]
    except LawError:
        return laws.fit_ladder(pts, pts, LADDER_STEP1[1], "loss", "accuracy", **options), LADDER_STEP1[1]


class ChainedSkipped(LawError):
    """The ladder fitted, but not the refit without the largest preset that predicts it."""

    def __init__(self, ladder: laws.Ladder, reason: str):
        super().__init__(reason)
        self.ladder = ladder


def fit_model_ladder(df: pd.DataFrame, bootstrap: int, seed: int) -> tuple[laws.Ladder, pd.DataFrame]:
    """The ladder on all presets x lengths, and the largest preset predicted without it: its measured
    accuracy beside the chained prediction and the direct size law's (both fitted without the preset)."""
    pts = ladder_points(df)
    largest = pts.loc[pts["N"].idxmax(), "model"]
    options = {"bootstrap": bootstrap, "seed": seed}
    ladder, x = _fit_ladder_points(pts, **options)
    rest, held = pts[pts["model"] != largest], pts[pts["model"] == largest]
    try:
        without = laws.fit_ladder(rest, rest, x, "loss", "accuracy", **options)
    except LawError as e:
        raise ChainedSkipped(ladder, f"chained prediction of {largest} (fitted without it): {e}") from None
    size = size_axis(df)
    direct = None
    small = size.points[size.points["params"] < size.points["params"].max()]
    try:
        direct = laws.fit(small, "params", "accuracy", size.form, loss="squared")
    except LawError:
        pass
    rows = []
    for D, g in held.groupby("D"):
        at = {c: [float(g[c].iloc[0])] for c in x}
        params = float(size.points["params"].max())
        chained = float(without.predict(at)[0])
        lo, hi = without.interval(at) if bootstrap else ([math.nan], [math.nan])
        longest = D == held["D"].max()
        measured = float(g["accuracy"].mean())
        naive = _naive_error(rest[rest["D"] == D], float(g["N"].iloc[0]), measured)
        direct_acc = float(direct.predict(params)) if direct is not None and longest else math.nan
        rows.append(
            {
                "model": largest,
                "train_tokens": D,
                "measured": measured,
                "measured_sd": float(g["accuracy"].std()) if len(g) > 1 else math.nan,
                "loss_measured": float(g["loss"].mean()),
                "loss_chained": float(without.predict_loss(at)[0]),
                "chained": chained,
                "chained_lo": float(lo[0]),
                "chained_hi": float(hi[0]),
                "direct": direct_acc,
                "naive_error": naive,
                "chained_skill": 1 - abs(chained - measured) / naive if naive > 0 else math.nan,
                "direct_skill": 1 - abs(direct_acc - measured) / naive if naive > 0 else math.nan,
            }
        )
    return ladder, pd.DataFrame(rows)


def _naive_error(smaller: pd.DataFrame, n: float, measured: float) -> float:
    """The better naive forecast's error at size ``n`` from the smaller presets at the same training length
    (their mean accuracy per N: the largest one's, carried forward, or a line in log N through the two
    largest); nan without a smaller preset."""
    means = smaller.groupby("N")["accuracy"].mean().sort_index()
    if means.empty:
        return math.nan
    naive = naive_forecasts(means.index.to_numpy(float), means.to_numpy(float), np.array([n]))
    return min(abs(float(v[0]) - measured) for v in naive.values())


def stuck_seeds(df: pd.DataFrame, ratio: float = STUCK_RATIO) -> pd.DataFrame:
    """Per (preset, training length): seeds whose final training loss exceeds ``ratio`` x the median over
    seeds (a training defect, not noise), from the ``train_loss`` column; beside them, the seeds above
    ``ratio`` x the best seed's loss, which the median rule cannot see when most seeds are stuck (the
    median is then a stuck seed)."""
    if "train_loss" not in df:
        return pd.DataFrame()
    rows = df[df["source"] == "eval"].drop_duplicates(["model", "train_tokens", "seed"])
    out = []
    for (model, tokens), g in rows.groupby(["model", "train_tokens"]):
        median, best = g["train_loss"].median(), g["train_loss"].min()
        stuck = g.loc[g["train_loss"] > ratio * median, "seed"].tolist()
        behind = g.loc[g["train_loss"] > ratio * best, "seed"].tolist()
        out.append({"model": model, "train_tokens": tokens, "seeds": len(g), "median_train_loss": median,
                    "stuck": len(stuck), "stuck_seeds": ",".join(map(str, stuck)), "best_train_loss": best,
                    "behind_best_seeds": ",".join(map(str, behind))})  # fmt: skip
    return pd.DataFrame(out)


def size_per_seed(df: pd.DataFrame) -> pd.DataFrame:
    """The size axis per seed: in-range greedy accuracy, task losses and final training loss of every
    supervised model (at the longest training)."""
    rows = supervised_rows(df)
    rows = rows[rows["in_train_range"]]
    cols = {"accuracy": ("value", "mean")}
    cols |= {c: (c, "mean") for c in ("answer_loss", "full_loss", "train_loss") if c in rows}
    return rows.groupby(["model", "params", "seed"], as_index=False).agg(**cols).sort_values(["params", "seed"])


def _failures(run_dir: Path) -> list[str]:
    out = []
    for f in sorted((run_dir / "stages").glob("*/failed.json")):
        out.append(f"stage {f.parent.name} failed: {read_json(f, 'stage failure record')['reason']}")
    return out


def _clean(df: pd.DataFrame, skipped: list[str]) -> pd.DataFrame:
    """Rows with a finite value (NaN rows are dropped, and said so)."""
    bad = ~np.isfinite(pd.to_numeric(df["value"], errors="coerce"))
    if bad.any():
        skipped.append(f"{int(bad.sum())} result rows with a missing or non-finite value were left out")
    return df[~bad]


AXES = {
    "size": lambda df, model: size_axis(df),
    "size_loss": lambda df, model: size_loss_axis(df),
    "rl_data": rl_axis,
    "thinking": thinking_axis,
    "majority": majority_axis,
    "coverage": coverage_axis,
}


def analyze(run_dir: str | Path, model: str | None = None, bootstrap: int = 200, seed: int = 0) -> Analysis:
    """Fit, judge, save and plot every law the results table supports; say what was skipped and why."""
    from scaling import plots
    from scaling.report import write_report

    run_dir = Path(run_dir)
    res = Analysis(skipped=_failures(run_dir))
    df = _clean(load_results(run_dir), res.skipped)
    if df.empty:
        raise ScalingError(f"{run_dir}: the results table has no usable rows")
    if model is not None and model not in set(df["model"]):
        raise ScalingError(f"--model {model}: not in the results (models: {sorted(set(df['model']))})")
    try:
        model = model or pick_model(df)
    except LawError as e:
        res.skipped.append(f"one-preset axes: {e}")
        model = str(df["model"].iloc[0])
    fig_dir, law_dir = run_dir / "figures", run_dir / "laws"
    for stale in [*law_dir.glob("*.json"), *(p for ext in plots.FORMATS for p in fig_dir.glob(f"*{ext}"))]:
        if not stale.name.startswith("."):  # another analysis's temporary file is its own
            stale.unlink(missing_ok=True)  # a law or figure the data no longer supports must not linger
    for name, build in AXES.items():
        _one_axis(name, build, df, model, bootstrap, seed, res, law_dir, fig_dir)
    _ladder(df, bootstrap, seed, res, law_dir, fig_dir)
    _tradeoff(df, res, law_dir, fig_dir)
    _curves(run_dir, res, fig_dir)
    res.tables = {"size_per_seed": size_per_seed(df), "stuck": stuck_seeds(df)}
    res.report = write_report(run_dir, df, res, model)
    return res


def _one_axis(name, build, df, model, bootstrap, seed, res: Analysis, law_dir: Path, fig_dir: Path) -> None:
    from scaling import plots

    try:
        data = build(df, model)
    except LawError as e:
        res.skipped.append(f"{name}: {e}")
        return
    if data.points.empty:
        res.skipped.append(f"{name}: no points to fit")
        return
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
    res.figures += plots.save_all(plots.axis_figures(data, law), fig_dir)


def _ladder(df: pd.DataFrame, bootstrap: int, seed: int, res: Analysis, law_dir: Path, fig_dir: Path) -> None:
    from scaling import plots

    try:
        res.ladder, res.ladder_table = fit_model_ladder(df, bootstrap, seed)
    except ChainedSkipped as e:
        res.ladder = e.ladder
        res.skipped.append(f"ladder: {e}")
    except LawError as e:
        res.skipped.append(f"ladder: {e}")
        return
    res.ladder.save(law_dir / "ladder.json")
    res.figures += plots.save(plots.ladder_figure(res.ladder, ladder_points(df)), fig_dir / "ladder")


def _tradeoff(df: pd.DataFrame, res: Analysis, law_dir: Path, fig_dir: Path) -> None:
    from scaling import plots

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
        return
    if not levels:
        res.skipped.append("tradeoff: fewer than 3 presets with thinking-budget rows, no frontier fitted")
    res.figures += plots.save(plots.tradeoff_figure(df, frontiers), fig_dir / "tradeoff")


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out |= _flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v}
    return out


def stage_labels(settings: dict[str, dict]) -> dict[str, str]:
    """A short label per stage (name -> its settings.json, all of one kind): the preset, then the
    settings in which the stages differ (``steps=1600, seeds=[0, 1]``)."""
    flat = {name: _flat(s) for name, s in settings.items()}
    keys = dict.fromkeys(k for f in flat.values() for k in f if k != "model")
    varying = [k for k in keys if len({json.dumps(f.get(k), sort_keys=True) for f in flat.values()}) > 1]
    return {
        name: ", ".join([str(f.get("model", name)), *(f"{k.rsplit('.', 1)[-1]}={f.get(k)}" for k in varying)])
        for name, f in flat.items()
    }


def stage_curves(run_dir: Path) -> dict[str, dict[str, pd.DataFrame]]:
    """kind (train, rl) -> label -> the rows of a stage's metrics.jsonl, for the stages of the sweep's
    plan that wrote any."""
    plan = read_json(run_dir / "plan.json", "sweep plan") if (run_dir / "plan.json").is_file() else {"stages": {}}
    curves: dict[str, dict[str, pd.DataFrame]] = {}
    for kind in ("train", "rl"):
        found = {}
        for name, stage in plan["stages"].items():
            rows = read_metrics(stage_dir(run_dir, name) / "metrics.jsonl") if stage["kind"] == kind else []
            if rows:
                found[name] = pd.DataFrame(rows)
        settings = {n: read_json(stage_dir(run_dir, n) / "settings.json", "stage settings") for n in found}
        labels = stage_labels(settings)
        curves[kind] = {labels[n]: df for n, df in found.items()}
    return curves


def _curves(run_dir: Path, res: Analysis, fig_dir: Path) -> None:
    from scaling import plots

    curves = stage_curves(run_dir)
    if curves["train"]:
        res.figures += plots.save(plots.training_curves_figure(curves["train"]), fig_dir / "training_curves")
    else:
        res.skipped.append("training curves: no stage of the plan wrote metrics.jsonl")
    if curves["rl"]:
        res.figures += plots.save(plots.rl_curves_figure(curves["rl"]), fig_dir / "rl_curves")
