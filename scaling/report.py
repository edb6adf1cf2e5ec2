"""``DIR/report.md``: every law with its extrapolation check and verdict, the ladder's direct and chained
predictions, the size axis per seed, stuck seeds, the RL tables, and what was skipped and why."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from scaling import laws
from scaling.io import atomic_write_text
from scaling.laws.law import skill_text
from scaling.results import longest_training, pooled_accuracy, range_intervals, range_table


def markdown(df: pd.DataFrame) -> str:
    """A pipe table; floats to 3 decimals (4 significant digits below 0.01), NaN as n/a."""

    def cell(v):
        if isinstance(v, float):
            return "n/a" if math.isnan(v) else (f"{v:.3f}" if abs(v) >= 0.01 or v == 0 else f"{v:.3g}")
        return str(v)

    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    return "\n".join(lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)])


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def verdict(law: laws.Law) -> str:
    """What the extrapolation check says of a law, in words."""
    if law.is_step:
        return "a step, not a law"
    if not law.holdout:
        return "not checked"
    if law.skill is None:
        return "not judged"
    return "predicts" if law.skill >= 0.5 else ("does not predict" if law.skill <= 0 else "weak")


def law_table(fitted: dict[str, laws.Law]) -> str:
    lines = [
        "| law | formula | parameters (95% interval) | R^2 (seeds / means) | held out | held-out error | naive error "
        "| skill (95% interval) | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, law in fitted.items():
        params = ", ".join(
            f"{k} = {_fmt(v)}" + (f" [{_fmt(law.ci[k][0])}, {_fmt(law.ci[k][1])}]" if k in law.ci else "")
            for k, v in law.params.items()
        )
        h = law.holdout or {}
        held = f"{law.x[0]} = {h['held_out_x']:g}" if "held_out_x" in h else ("largest" if "points" in h else "n/a")
        error = "n/a" if math.isnan(law.holdout_error) else f"{law.holdout_error:.4f}"
        naive = "n/a" if math.isnan(law.naive_error) else f"{law.naive_error:.4f}"
        r2 = f"{law.r2:.3f} / " + ("n/a" if math.isnan(law.r2_means) else f"{law.r2_means:.3f}")
        lines.append(
            f"| {name} | `{law.formula()}` | {params} | {r2} | {held} | {error} | {naive} | {skill_text(law)} "
            f"| {verdict(law)} |"
        )
    return "\n".join(lines)


def left_out_lines(fitted: dict[str, laws.Law]) -> list[str]:
    out = []
    for name, law in fitted.items():
        h = law.holdout or {}
        if h.get("left_out"):
            values = ", ".join(f"{v:g}" for v in h["left_out"])
            out.append(
                f"- {name}: {law.x[0]} = {values} within {h.get('saturation', 0.02):g} of the asymptote (a plateau): "
                f"held out {h['held_out_x']:g} instead, fitted on the points below it"
            )
    return out


def ladder_section(res) -> list[str]:
    if res.ladder is None:
        return []
    t = res.ladder_table
    lines = [
        "## Ladder: accuracy through task loss",
        "",
        "Step 1: task loss (the reference trace and answer's NLL per token; the answer's where a task has no",
        "trace) from non-embedding parameters N and training tokens D (the Chinchilla form; where it cannot be",
        "fitted, a power law in compute C = 6 N D), on every preset x training length x seed; step 2: accuracy",
        "from task loss (logistic). The largest preset is",
        "predicted by both steps refitted without it (chained), and by the size law fitted on the smaller presets",
        "(direct, at the longest training); each beside the better naive forecast from the smaller presets at the",
        "same training length (the largest one's accuracy carried forward, or a line in log N through the two",
        "largest), with skill = 1 - error / naive error:",
        "",
        "```",
        res.ladder.summary(),
        "```",
        "",
    ]
    if t is None:
        return [*lines, "No chained prediction of the largest preset (see Skipped)."]
    return [*lines, markdown(t.rename(columns={"chained_lo": "chained 95% lo", "chained_hi": "chained 95% hi"}))]


def strategy_table(df: pd.DataFrame, strategy: str, x: str) -> pd.DataFrame:
    """Per preset (at its longest training) and value of ``x`` (``budget`` or ``k``), on the training
    difficulties: the accuracy of ``strategy`` with a 95% Wilson interval over the problems of every seed
    pooled, and the mean tokens written per problem (thinking + answer)."""
    rows = df[(df["source"] == "eval") & (df["strategy"] == strategy) & df["in_train_range"]]
    if rows.empty:
        return pd.DataFrame()
    rows = longest_training(rows)
    tokens = rows.groupby(["model", x], sort=True)["total_tokens"].mean().rename("mean_tokens").reset_index()
    table = pooled_accuracy(rows, ["model", x], sort=True).merge(tokens, on=["model", x])
    return table.astype({x: int})[["model", x, "accuracy", "lo", "hi", "mean_tokens"]]


def thinking_table(df: pd.DataFrame) -> pd.DataFrame:
    """``strategy_table`` of the thinking budgets, with the oracle beside: the share of reference traces no
    longer than the budget, what a model that only imitates them reaches."""
    table = strategy_table(df, "budget", "budget")
    oracle = strategy_table(df, "oracle", "budget")
    if table.empty or oracle.empty:
        return table
    return table.merge(oracle[["model", "budget", "accuracy"]].rename(columns={"accuracy": "oracle"}), how="left")


def rl_ladder_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per RL preset and data volume: greedy and sampled accuracy inside and above the training range,
    and the mean thinking tokens written per problem in the training range (does RL lengthen the
    thinking while it raises accuracy?)."""
    ladder, by = df[df["source"] == "rl_ladder"], ["model", "rl_prompts", "strategy"]
    table = range_table(ladder, by)
    if "thinking_tokens" in ladder and ladder["thinking_tokens"].notna().any():
        inside = ladder[ladder["in_train_range"]]
        thinking = inside.groupby(by, sort=False)["thinking_tokens"].mean().rename("thinking_in_range")
        table = table.merge(thinking.reset_index(), on=by, how="left")
    return table


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
    every final RL model next to a supervised-only model of its preset, and of its other swept settings
    (the training length and RL volume aside), trained on as many samples, inside and above the training
    range, with 95% Wilson intervals over the problems of every seed."""
    final = df[(df["source"] == "eval") & df["strategy"].isin(["greedy", "sampled"])]
    if "train_samples" not in final:
        return pd.DataFrame()
    total = final["train_samples"] + final["rl_prompts"]
    final = final.assign(samples=total, stage=np.where(final["rl_prompts"] > 0, "sft+rl", "sft"))
    pairing = ("axis:models", "axis:train.steps", "axis:rl.prompts", "axis:train.tokens_per_param")
    settings = [c for c in final.columns if c.startswith("axis:") and c not in pairing]
    key = ["model", *settings, "samples"]
    pairs = final.groupby(key, dropna=False)["stage"].nunique()
    keep = pairs[pairs == 2].index
    if keep.empty:
        return pd.DataFrame()
    both = final.set_index(key).loc[keep].reset_index()
    by = [*key, "stage", "strategy"]
    return range_table(both, by).merge(range_intervals(both, by), on=by)


def write_report(run_dir: Path, df: pd.DataFrame, res, model: str) -> Path:
    """Render ``res`` (a ``scaling.analysis.Analysis``) and the RL tables of ``df`` as markdown."""
    lines = [
        f"# Scaling laws of {run_dir.name}",
        "",
        "Accuracy: held-out, on the training difficulties, averaged over them; greedy, except the RL axis, which",
        f"uses pass@1 sampled at the evaluation temperature when the sweep measured it. One-preset axes use {model}.",
        "Laws are fitted to every seed with squared residuals (the expected accuracy); R^2 is measured on the seeds",
        "and on the mean over seeds at each x. A law is judged by extrapolation: it is refitted on the points below",
        "its largest unsaturated x (more than 2 points from the asymptote) and scored there, in y units, beside two",
        "naive forecasts (the last fitted value; a line in log x through the last two). Skill = 1 - error / naive",
        "error: 'predicts' at 0.5 or more, 'does not predict' at 0 or less; n/a when the held-out point cannot",
        "judge (a plateau, or a naive error below twice its standard error). A sigmoid whose steepness reaches its",
        "cap is a step, not a law.",
        "",
        law_table(res.laws) if res.laws else "No law could be fitted.",
    ]
    if notes := left_out_lines(res.laws):
        lines += ["", *notes]
    lines += ["", *ladder_section(res)]
    if not (per_seed := res.tables.get("size_per_seed", pd.DataFrame())).empty:
        lines += ["", "## Size axis per seed", "", markdown(per_seed)]
    if not (stuck := res.tables.get("stuck", pd.DataFrame())).empty:
        lines += [
            "",
            "## Stuck seeds (final training loss above 1.5x the median over seeds of a preset)",
            "",
            "`behind_best_seeds`: above 1.5x the best seed's loss, where most seeds may be stuck (the median rule",
            "cannot see them then).",
            "",
            markdown(stuck),
        ]
    lines += ["", "## Figures", "", *[f"- `{p.relative_to(run_dir)}`" for p in res.figures if p.suffix == ".png"]]
    lines += testtime_and_rl_sections(df)
    if res.skipped:
        lines += ["", "## Skipped", "", *[f"- {s}" for s in res.skipped]]
    path = run_dir / "report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def testtime_and_rl_sections(df: pd.DataFrame) -> list[str]:
    """The thinking-budget and re-thinking tables, the RL ladders and SFT-only against SFT+RL."""
    lines = []
    if not (thinking := thinking_table(df)).empty:
        lines += [
            "",
            "## Thinking budget (training difficulties; 95% Wilson interval over problems x seeds)",
            "",
            "The oracle is the share of reference traces no longer than the budget: a model that only imitates",
            "them, and answers right exactly when its trace is complete, reaches it.",
            "",
            markdown(thinking),
        ]
    if not (rethink := strategy_table(df, "rethink_context", "k")).empty:
        lines += [
            "",
            "## Re-thinking in context (at most k rounds; training difficulties; 95% Wilson interval)",
            "",
            markdown(rethink),
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
    return lines
