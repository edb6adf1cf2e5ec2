"""Figures from results and laws, in one style: axes labelled, titles say what was fixed, the stretch of a
law beyond its fitted range dashed. Each plotting function returns its figures (name -> Figure) open,
for a user to restyle; ``save`` writes one as PNG, SVG and PDF, atomically, and closes it."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from scaling.io import write_with
from scaling.laws import Ladder, Law

FORMATS = (".png", ".svg", ".pdf")
STYLE = {"font.size": 8, "axes.grid": True, "grid.alpha": 0.3, "legend.frameon": False, "figure.dpi": 100}


def save(fig, path_without_suffix: Path) -> list[Path]:
    """The figure in every format of ``FORMATS``, each written atomically; the figure is closed."""
    out = [
        write_with(path_without_suffix.with_suffix(suffix), lambda tmp: fig.savefig(tmp, dpi=130, bbox_inches="tight"))
        for suffix in FORMATS
    ]
    plt.close(fig)
    return out


def save_all(figures: dict, fig_dir: Path) -> list[Path]:
    """Every figure of ``figures`` (name -> Figure) saved as ``fig_dir/<name>.*`` (see ``save``)."""
    return [path for name, fig in figures.items() for path in save(fig, fig_dir / name)]


def _law_curve(ax, law: Law, x_lo: float, x_hi: float, x_max: float, x_min: float | None = None, **kw) -> None:
    """The law solid over its fitted range [x_lo, x_hi], dashed where it extrapolates (down to x_min, up
    to x_max); a grid even in log x, or in x where x_min is given (a task loss may reach 0)."""
    space = np.geomspace if x_min is None else np.linspace
    inside = space(x_lo, x_hi, 150)
    ax.plot(inside, law.predict(inside), **kw)
    stretches = [(x_hi, x_max)] + ([] if x_min is None else [(x_min, x_lo)])
    for i, (a, b) in enumerate(s for s in stretches if s[1] > s[0]):
        beyond = space(a, b, 50)
        ax.plot(beyond, law.predict(beyond), ls="--", color=kw.get("color"), label=None if i else "extrapolated")


def _log_x(ax) -> None:
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels collide on short ranges


def _held_out_x(law: Law | None) -> float:
    """The x the law was judged on (np.inf when it was not)."""
    if law is None or not law.holdout or "points" not in law.holdout:
        return np.inf
    return float(law.holdout.get("held_out_x", law.holdout["points"][0]["x"][0]))


def _title(data, law: Law | None) -> str:
    if law is None or not law.holdout:
        return f"{data.name}: {data.fixed}"
    if law.skill is None:
        return f"{data.name}: {data.fixed}\nnot judged: {law.holdout.get('skill_reason')}"
    return (
        f"{data.name}: {data.fixed}\nheld out {data.x} = {_held_out_x(law):g}: error {law.holdout_error:.3f}, "
        f"naive {law.naive_error:.3f}, skill {law.skill:.2f}" + (" (a step)" if law.is_step else "")
    )


@plt.rc_context(STYLE)
def axis_figures(data, law: Law | None) -> dict:
    """y against the resource (seed scatter, mean, law with band, held-out point, plateau points left out
    of the check), the residuals of the law, and per-difficulty curves (dashed: above the training range)."""
    pts = data.points
    x = pts[data.x].to_numpy(float)
    held_x = _held_out_x(law)
    means = pts.groupby(data.x)[data.y].mean()
    figures = {}
    fig, ax = plt.subplots(figsize=(6, 4.2))
    fitted, held, above = pts[pts[data.x] < held_x], pts[pts[data.x] == held_x], pts[pts[data.x] > held_x]
    ax.scatter(fitted[data.x], fitted[data.y], s=14, alpha=0.5, color="C0", label="seeds (fitted in the check)")
    if not held.empty:
        ax.scatter(held[data.x], held[data.y], s=30, marker="x", color="C3", label="seeds (held out)")
    if not above.empty:
        ax.scatter(above[data.x], above[data.y], s=14, alpha=0.5, color="grey", label="seeds (plateau, left out)")
    ax.plot(means.index, means.to_numpy(), "o", color="C0", mfc="white", label="mean over seeds")
    if data.extra is not None and not data.extra.empty and data.y in data.extra:
        ax.axhline(data.extra[data.y].mean(), color="grey", ls=":", label=f"at {data.x} = 0 (not on a log axis)")
    if data.reference is not None:
        ref = data.reference
        ax.plot(ref.index, ref.to_numpy(), "s--", ms=3, color="C2", label="oracle: reference trace <= B tokens")
    if law is not None:
        grid = np.geomspace(x.min(), x.max() * 1.5, 200)
        r2 = f"R^2 = {law.r2:.3f}" + ("" if np.isnan(law.r2_means) else f" (means {law.r2_means:.3f})")
        _law_curve(ax, law, x.min(), x.max(), x.max() * 1.5, color="C1", label=f"{law.form} fit (all points), {r2}")
        if law.samples is not None and len(law.samples):
            lo, hi = law.interval(grid)
            ax.fill_between(grid, lo, hi, color="C1", alpha=0.2, label=f"{law.level:.0%} bootstrap band")
    ax.set_title(_title(data, law), fontsize=8)
    _log_x(ax)
    ax.set_xlabel(data.label)
    ax.set_ylabel(data.y_label)
    if data.y == "accuracy":
        ax.set_ylim(-0.03, 1.03)
    ax.legend(fontsize=7)
    figures[data.name] = fig
    if law is not None:
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.axhline(0, color="grey", lw=0.8)
        resid = pts[data.y].to_numpy() - law.predict(x)
        ax.scatter(x, resid, s=14, c=np.where(x == held_x, "C3", np.where(x > held_x, "grey", "C0")))
        _log_x(ax)
        ax.set_xlabel(data.label)
        ax.set_ylabel(f"{data.y} - law")
        ax.set_title(f"{data.name} residuals ({data.fixed}; red: held out, grey: plateau)", fontsize=9)
        figures[f"{data.name}_residuals"] = fig
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for i, (d, g) in enumerate(data.per_difficulty.groupby("difficulty")):
        inside = bool(g["in_train_range"].iloc[0])
        ax.plot(g[data.x], g["accuracy"], "o-" if inside else "s--", color=f"C{i % 10}", label=f"difficulty {d}")
    _log_x(ax)
    ax.set_xlabel(data.label)
    ax.set_ylabel("held-out accuracy (mean over seeds)")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title(f"{data.name} per difficulty ({data.fixed}; dashed: above the training range)", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    figures[f"{data.name}_difficulty"] = fig
    return figures


@plt.rc_context(STYLE)
def tradeoff_figure(df: pd.DataFrame, frontiers: dict[float, Law]):
    """Accuracy contours over training FLOPs and test-time tokens (log axes), with the fitted
    iso-accuracy frontiers (solid where presets reached the level, dashed beyond)."""
    from matplotlib.tri import Triangulation

    rows = df[(df["source"] == "eval") & (df["strategy"] == "budget") & df["in_train_range"]]
    grid = rows.groupby(["model", "budget"], as_index=False).agg(
        train_flops=("train_flops", "first"), tokens=("total_tokens", "mean"), accuracy=("value", "mean")
    )
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    flops, tokens = grid["train_flops"].to_numpy(float), grid["tokens"].to_numpy(float)
    if grid["model"].nunique() >= 2 and grid["budget"].nunique() >= 2:
        # Triangles from the log-log plane (where the points are spread evenly), drawn on log axes.
        tri = Triangulation(flops, tokens, Triangulation(np.log10(flops), np.log10(tokens)).triangles)
        cs = ax.tricontourf(tri, grid["accuracy"], levels=np.linspace(0, 1, 11), cmap="viridis", alpha=0.85)
        fig.colorbar(cs, ax=ax, label="held-out accuracy")
    ax.scatter(flops, tokens, c=grid["accuracy"], cmap="viridis", vmin=0, vmax=1, edgecolors="k", s=25)
    for i, (level, law) in enumerate(sorted(frontiers.items())):
        lo, hi = law.options.get("train_flops_range", (flops.min(), flops.max()))
        label = f"accuracy {level:.2f}: tokens = {law.params['A']:.3g} C^-{law.params['alpha']:.3g}"
        _law_curve(ax, law, lo, hi, max(hi, flops.max()), color=f"C{i + 1}", lw=2, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training FLOPs (supervised)")
    ax.set_ylabel("test-time tokens per problem")
    ax.set_title("Train- vs test-time compute (greedy, thinking budgets; all presets)", fontsize=9)
    if frontiers:
        ax.legend(fontsize=7)
    return fig


def _parity(ax, measured, predicted, colour_by, what: str, title: str):
    """Predicted against measured, coloured by log10 of ``colour_by``, beside the diagonal of a perfect prediction."""
    sc = ax.scatter(measured, predicted, c=np.log10(colour_by), cmap="viridis", s=16)
    lims = [min(np.min(measured), np.min(predicted)), max(np.max(measured), np.max(predicted))]
    ax.plot(lims, lims, color="grey", lw=0.8)
    ax.set_xlabel(f"measured {what}")
    ax.set_ylabel(f"predicted {what}")
    ax.set_title(title, fontsize=7)
    return sc


@plt.rc_context(STYLE)
def ladder_figure(ladder: Ladder, points: pd.DataFrame, acc_points: pd.DataFrame | None = None):
    """A ladder's two steps and their chain: step 1's task loss predicted against measured on ``points``
    (its x columns and task loss); step 2's accuracy against task loss on ``acc_points`` (default
    ``points``) with the fitted logistic, dashed beyond the task losses it was fitted on; and, where
    ``points`` also has accuracy, the chained accuracy from x predicted against measured. Colour: log10
    of step 1's first input (N, or compute)."""
    x, loss, acc = ladder.step1.x, ladder.step1.y, ladder.step2.y
    acc_points = points if acc_points is None else acc_points
    chain = acc in points
    fig, axes = plt.subplots(1, 2 + chain, figsize=(4.8 * (2 + chain), 4.2), layout="constrained")
    inputs = {c: points[c] for c in x}
    colour = points[x[0]].to_numpy(float)
    measured = points[loss].to_numpy(float)
    sc = _parity(
        axes[0],
        measured,
        np.asarray(ladder.predict_loss(inputs)),
        colour,
        "task loss",
        f"step 1: {ladder.step1.formula()}",
    )
    fig.colorbar(sc, ax=axes[0], label=f"log10 {x[0]}")
    a2 = axes[1]
    step2_loss = acc_points[ladder.step2.x[0]].to_numpy(float)
    a2.scatter(step2_loss, acc_points[acc], color="C0", s=16)
    fitted = np.asarray(ladder.step2.fit_info.get("x_values") or step2_loss, float)  # the task losses step 2 saw
    top = 1.1 * max(measured.max(), fitted.max())
    _law_curve(a2, ladder.step2, fitted.min(), fitted.max(), top, 0.0, color="C1")
    a2.set_xlabel(f"{loss} (measured)")
    a2.set_ylabel(acc)
    a2.set_ylim(-0.03, 1.03)
    a2.set_title(f"step 2: {ladder.step2.formula()}", fontsize=7)
    a2.legend(fontsize=7)
    if chain:
        chained = np.asarray(ladder.predict(inputs))
        _parity(axes[2], points[acc].to_numpy(float), chained, colour, acc, "chained: step 2 of step 1")
    return fig


CURVE_POINTS = 300  # a curve of more steps is drawn as the means of consecutive bins of steps


def _binned(curve: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """``curve`` (one row per x, sorted) as at most CURVE_POINTS bin means of x and y."""
    k = int(np.ceil(len(curve) / CURVE_POINTS))
    return curve if k <= 1 else curve.groupby(np.arange(len(curve)) // k)[[x, y]].mean()


def _seeds_and_mean(ax, rows: pd.DataFrame, x: str, y: str, color: str, label: str | None = None) -> None:
    """Each seed's curve thin, the mean over seeds bold (long curves as bin means, ``_binned``)."""
    for _, g in rows.groupby("seed"):
        g = _binned(g.sort_values(x), x, y)
        ax.plot(g[x], g[y], lw=0.6, alpha=0.45, color=color)
    mean = _binned(rows.groupby(x, as_index=False)[y].mean(), x, y)
    ax.plot(mean[x], mean[y], lw=1.8, color=color, label=label)


@plt.rc_context(STYLE)
def training_curves_figure(stages: dict[str, pd.DataFrame]):
    """Training loss against step, one panel per training stage (label -> its metrics.jsonl rows):
    seeds thin, mean bold, log-scaled loss, one y range for every panel."""
    n = len(stages)
    cols = min(n, 5)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.3 * rows), sharey=True, squeeze=False)
    for ax, (label, df) in zip(axes.ravel(), stages.items()):
        _seeds_and_mean(ax, df, "step", "loss", "C0")
        ax.set_yscale("log")
        ax.set_title(label, fontsize=7)
        ax.set_xlabel("step")
    for ax in axes[:, 0]:
        ax.set_ylabel("training loss (per token)")
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    fig.suptitle(
        f"supervised training: seeds thin, mean over seeds bold (beyond {CURVE_POINTS} steps: bin means)", fontsize=9
    )
    fig.tight_layout()
    return fig


RL_CURVES = {
    "reward": "reward (as the learner saw it)",
    "pass_rate": "pass rate of the rollouts",
    "kept_groups": "groups with signal",
    "loss": "policy loss",
    "kl": "KL to the start (k3)",
    "entropy": "entropy per token",
    "clip_frac": "clipped fraction",
    "thinking_tokens": "thinking tokens per completion",
    "answer_tokens": "answer tokens per completion",
}


@plt.rc_context(STYLE)
def rl_curves_figure(stages: dict[str, pd.DataFrame]):
    """RL metrics against prompts seen, one panel per metric of ``RL_CURVES``, one colour per RL stage
    (label -> its metrics.jsonl rows): seeds thin, mean over seeds bold."""
    names = [m for m in RL_CURVES if any(m in df for df in stages.values())]
    cols = min(len(names), 3)
    rows = int(np.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.5 * rows), squeeze=False)
    for ax, metric in zip(axes.ravel(), names):
        for i, (label, df) in enumerate(stages.items()):
            if metric in df:
                _seeds_and_mean(ax, df, "prompts_seen", metric, f"C{i % 10}", label)
        ax.set_ylabel(RL_CURVES[metric], fontsize=7)
        ax.set_xlabel("RL prompts seen")
    for ax in axes.ravel()[len(names) :]:
        ax.set_visible(False)
    axes[0, 0].legend(fontsize=6)
    fig.suptitle(f"RL: seeds thin, mean over seeds bold (beyond {CURVE_POINTS} steps: bin means)", fontsize=9)
    fig.tight_layout()
    return fig
