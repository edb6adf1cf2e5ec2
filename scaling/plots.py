"""Figures from results and laws: each saved as PNG and SVG, axes labelled, titles say what was fixed."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from scaling.io import write_with
from scaling.laws import Law


def save(fig, path_without_suffix: Path) -> list[Path]:
    """The figure as PNG and SVG, each written atomically; the figure is closed."""
    out = [
        write_with(path_without_suffix.with_suffix(suffix), lambda tmp: fig.savefig(tmp, dpi=130, bbox_inches="tight"))
        for suffix in (".png", ".svg")
    ]
    plt.close(fig)
    return out


def _log_x(ax) -> None:
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels collide on short ranges


def _held_out_x(law: Law | None, x: np.ndarray) -> float:
    return float(np.max(x)) if law is not None and law.holdout else np.inf


def axis_figures(data, law: Law | None, fig_dir: Path) -> list[Path]:
    """Accuracy against the resource (seed scatter, mean, law with band, held-out point), the
    residuals of the law, and per-difficulty curves (dashed: above the training range)."""
    pts = data.points
    x = pts[data.x].to_numpy(float)
    held_x = _held_out_x(law, x)
    means = pts.groupby(data.x)["accuracy"].mean()
    fig, ax = plt.subplots(figsize=(6, 4.2))
    fitted = pts[pts[data.x] < held_x]
    held = pts[pts[data.x] >= held_x]
    ax.scatter(fitted[data.x], fitted["accuracy"], s=14, alpha=0.5, color="C0", label="seeds (fitted)")
    if not held.empty:
        ax.scatter(held[data.x], held["accuracy"], s=30, marker="x", color="C3", label="seeds (held out)")
    ax.plot(means.index, means.to_numpy(), "o", color="C0", mfc="white", label="mean over seeds")
    if data.extra is not None and not data.extra.empty:
        ax.axhline(data.extra["accuracy"].mean(), color="grey", ls=":", label=f"at {data.x} = 0 (not on a log axis)")
    if law is not None:
        grid = np.geomspace(x.min(), x.max() * 1.5, 200)
        r2 = f"R^2 = {law.r2:.3f}" + ("" if np.isnan(law.r2_means) else f" (means {law.r2_means:.3f})")
        ax.plot(grid, law.predict(grid), color="C1", label=f"{law.form} fit, {r2}")
        if law.samples is not None and len(law.samples):
            lo, hi = law.interval(grid)
            ax.fill_between(grid, lo, hi, color="C1", alpha=0.2, label=f"{law.level:.0%} bootstrap band")
        if law.holdout:
            ax.set_title(
                f"{data.name}: {data.fixed}\nheld out largest point: error {law.holdout_error:.3f}", fontsize=9
            )
    if law is None or not law.holdout:
        ax.set_title(f"{data.name}: {data.fixed}", fontsize=9)
    _log_x(ax)
    ax.set_xlabel(data.label)
    ax.set_ylabel("held-out accuracy (training difficulties)")
    ax.set_ylim(-0.03, 1.03)
    ax.legend(fontsize=7)
    out = save(fig, fig_dir / data.name)
    if law is not None:
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.axhline(0, color="grey", lw=0.8)
        resid = pts["accuracy"].to_numpy() - law.predict(x)
        ax.scatter(x, resid, s=14, c=np.where(x >= held_x, "C3", "C0"))
        _log_x(ax)
        ax.set_xlabel(data.label)
        ax.set_ylabel("accuracy - law")
        ax.set_title(f"{data.name} residuals ({data.fixed}; red: held out)", fontsize=9)
        out += save(fig, fig_dir / f"{data.name}_residuals")
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
    return out + save(fig, fig_dir / f"{data.name}_difficulty")


def tradeoff_figure(df: pd.DataFrame, frontiers: dict[float, Law], fig_dir: Path) -> list[Path]:
    """Accuracy contours over training FLOPs and test-time tokens, with the fitted iso-accuracy frontiers."""
    rows = df[(df["source"] == "eval") & (df["strategy"] == "budget") & df["in_train_range"]]
    grid = rows.groupby(["model", "budget"], as_index=False).agg(
        train_flops=("train_flops", "first"), tokens=("total_tokens", "mean"), accuracy=("value", "mean")
    )
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    lx, ly = np.log10(grid["train_flops"].to_numpy(float)), np.log10(grid["tokens"].to_numpy(float))
    if grid["model"].nunique() >= 2 and grid["budget"].nunique() >= 2:
        cs = ax.tricontourf(lx, ly, grid["accuracy"], levels=np.linspace(0, 1, 11), cmap="viridis", alpha=0.85)
        fig.colorbar(cs, ax=ax, label="held-out accuracy")
    ax.scatter(lx, ly, c=grid["accuracy"], cmap="viridis", vmin=0, vmax=1, edgecolors="k", s=25)
    for i, (level, law) in enumerate(sorted(frontiers.items())):
        lo, hi = law.options.get("train_flops_range", (grid["train_flops"].min(), grid["train_flops"].max()))
        c = np.geomspace(lo, hi, 100)  # only where presets reached the level
        ax.plot(np.log10(c), np.log10(law.predict(c)), color=f"C{i + 1}", lw=2,
                label=f"accuracy {level:.2f}: tokens = {law.params['A']:.3g} C^-{law.params['alpha']:.3g}")  # fmt: skip
    ax.set_xlabel("log10 training FLOPs (supervised)")
    ax.set_ylabel("log10 test-time tokens per problem")
    ax.set_title("Train- vs test-time compute (greedy, thinking budgets; all presets)", fontsize=9)
    if frontiers:
        ax.legend(fontsize=7)
    return save(fig, fig_dir / "tradeoff")
