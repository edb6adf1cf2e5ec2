"""The ``scaling`` command.

Exit codes (the README has the same table):
    0    success
    1    a stage failed or was blocked by a failed input (``scaling run``, ``scaling submit --wait``)
    2    bad input: config, table, law file, argument (one ``error: ...`` line on stderr, no traceback)
    130  interrupted (Ctrl-C)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings

import numpy as np

from scaling import __version__
from scaling.errors import ScalingError
from scaling.io import dumps

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


def _print_json(obj) -> None:
    """One line of strict JSON on stdout (what ``--json`` prints)."""
    sys.stdout.write(dumps(obj, indent=None))


def _csv_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ScalingError(f"{text!r} is not a number") from None


def cmd_fit(args: argparse.Namespace) -> int:
    from scaling import laws
    from scaling.tables import derive, read_table

    df = derive(read_table(args.table), args.assign or [], args.where)
    x = _csv_list(args.x)
    law = laws.fit(
        df,
        x if len(x) > 1 else x[0],
        args.y,
        args.form,
        loss=args.loss,
        delta=args.delta,
        space=args.space,
        bootstrap=args.bootstrap,
        seed=args.seed,
        level=args.level,
        holdout=args.holdout,
        weights=args.weights,
        bounds=args.bounds,
        paired=args.paired,
    )
    print(law.summary())
    if "auto" in law.options:
        errors = law.options["auto"]["errors"]
        print("  auto: held-out error by form: " + ", ".join(f"{k} {v:.4g}" for k, v in errors.items()))
    if args.out:
        print(f"saved {law.save(args.out)}")
    return 0


def _law_inputs(names: list[str], values: list[str]):
    """CLI values as inputs of a law of ``names``: numbers, or comma-separated tuples (N,D)."""
    if len(names) == 1:
        return np.array([_number(v) for v in values])
    rows = []
    for v in values:
        parts = _csv_list(v)
        if len(parts) != len(names):
            raise ScalingError(f"{v!r}: this law takes {len(names)} inputs {names}, comma-separated")
        rows.append([_number(p) for p in parts])
    return np.array(rows)


def cmd_law(args: argparse.Namespace) -> int:
    from scaling import laws

    law = laws.load(args.law)
    ladder = isinstance(law, laws.Ladder)
    samples = law.step2.samples if ladder else law.samples
    has_samples = samples is not None and len(samples) > 0
    if args.action == "show":
        print(law.summary())
        if not ladder:
            print(f"  fitted on {law.n_points} rows, data {law.fingerprint}")
            print(f"  options: {json.dumps(law.options)}")
        return 0
    if not args.values:
        raise ScalingError(f"scaling law {args.action} needs at least one value")
    y_name = law.step2.y if ladder else law.y
    rows = []
    if args.action == "predict":
        xs = _law_inputs(law.x, args.values)
        y = np.atleast_1d(law.predict(xs))
        band = law.interval(xs, args.level) if has_samples else None
        for i, (v, yi) in enumerate(zip(args.values, y)):
            x = dict(zip(law.x, np.atleast_1d(xs[i]).tolist()))
            lo, hi = (float(band[0][i]), float(band[1][i])) if band else (None, None)
            rows.append({"x": x, y_name: float(yi), "lo": lo, "hi": hi, "level": args.level if band else None})
            if not args.json:
                extra = f"  [{lo:.6g}, {hi:.6g}] ({args.level:.0%})" if band else ""
                print(f"{y_name}({v}) = {yi:.6g}{extra}")
    else:
        if ladder:
            raise ScalingError("scaling law solve needs a single-input law; a ladder predicts from (N, D)")
        for v in args.values:
            target = _number(v)
            x = law.solve(target)
            lo, hi = law.solve_interval(target, args.level) if has_samples else (None, None)
            rows.append({law.y: target, law.x[0]: x, "lo": lo, "hi": hi, "level": args.level if has_samples else None})
            if not args.json:
                extra = f"  [{lo:.6g}, {hi:.6g}] ({args.level:.0%})" if has_samples else ""
                print(f"{law.x[0]} for {law.y} = {target:g}: {x:.6g}{extra}")
    if args.json:
        _print_json(rows)
    return 0


def cmd_ladder(args: argparse.Namespace) -> int:
    from scaling import laws
    from scaling.tables import read_table

    loss_data = read_table(args.table)
    acc_data = read_table(args.acc_table) if args.acc_table else loss_data
    ladder = laws.fit_ladder(
        loss_data,
        acc_data,
        _csv_list(args.x),
        args.loss,
        args.acc,
        bootstrap=args.bootstrap,
        seed=args.seed,
        holdout=args.holdout,
    )
    print(ladder.summary())
    if args.out:
        print(f"saved {ladder.save(args.out)}")
    if args.figure:
        from pathlib import Path

        from scaling import plots

        fig = plots.ladder_figure(ladder, loss_data, acc_data)
        print("figure: " + ", ".join(str(p) for p in plots.save(fig, Path(args.figure))))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from pathlib import Path

    out = args.out or str(Path("runs") / Path(args.config).stem)
    if args.dry_run:  # planning only: no jax
        from scaling.plan import describe, dry_run_doc, make_plan
        from scaling.store import seed_groups, statuses

        plan = make_plan(args.config, args.set or [], seed_groups(out), args.track or [])
        status = statuses(Path(out), plan.stages)
        if args.json:
            _print_json(dry_run_doc(plan, status))
        else:
            print(describe(plan, status))
        return 0
    if args.json:
        raise ScalingError("--json: only with --dry-run (a sweep's results are in OUT/results.parquet)")
    if args.model:  # a typo must not wait for the sweep's end
        from scaling.plan import make_plan

        models = {m for run in make_plan(args.config, args.set or []).runs.values() for m in run.models}
        if args.model not in models:
            raise ScalingError(f"--model {args.model}: not a preset of {args.config} (models: {sorted(models)})")
    from scaling.stages import is_writer
    from scaling.sweep import maybe_initialize_distributed, run_sweep

    maybe_initialize_distributed()
    sweep = run_sweep(
        args.config,
        out,
        overrides=args.set or [],
        worker=args.worker,
        workers=args.workers,
        retry_failed=args.retry_failed,
        stale_after=args.stale_after,
        fail_fast=args.fail_fast,
        track=args.track or [],
    )
    if not sweep.results.empty and is_writer():  # one report per multi-host job
        from scaling.results import summary

        print(summary(sweep.results).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        if not args.no_analyze:
            _print_analysis(out, args.model, args.bootstrap)
    return EXIT_OK if sweep.ok else EXIT_FAILED


def _print_analysis(run_dir: str, model: str | None, bootstrap: int) -> None:
    from pathlib import Path

    from scaling.analysis import analyze
    from scaling.laws.law import skill_text
    from scaling.report import verdict

    res = analyze(run_dir, model=model, bootstrap=bootstrap)
    for name, law in res.laws.items():
        held = ""
        if law.holdout:
            error = "" if math.isnan(law.holdout_error) else f"held-out error {law.holdout_error:.4f}, "
            held = f"; {error}skill {skill_text(law)}: {verdict(law)}"
        means = "" if math.isnan(law.r2_means) else f" (means {law.r2_means:.3f})"
        print(f"law {name}: {law.formula()}  R^2 {law.r2:.3f}{means}{held}")
    if res.ladder_table is not None:
        for row in res.ladder_table.itertuples():
            print(
                f"ladder: {row.model} at {row.train_tokens:.3g} tokens: measured {row.measured:.3f}, "
                f"chained {row.chained:.3f}, direct {row.direct:.3f}"
            )
    for line in res.skipped:
        print(f"skipped {line}", file=sys.stderr)
    n_laws = len(res.laws) + (res.ladder is not None)
    print(f"laws:    {Path(run_dir) / 'laws'}/  ({n_laws} JSON files, load with scaling.laws.load)")
    print(f"figures: {Path(run_dir) / 'figures'}/  ({len(res.figures)} files, PNG, SVG and PDF)")
    print(f"report:  {res.report}")


def cmd_analyze(args: argparse.Namespace) -> int:
    _print_analysis(args.dir, args.model, args.bootstrap)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from scaling.store import status_doc, status_text

    if args.json:
        _print_json(status_doc(args.dir))
    else:
        print(status_text(args.dir))
    return 0


def _key_value(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise ScalingError(f"--slurm {text!r}: expected KEY=VALUE, e.g. slurm_partition=gpu")
    key, value = text.split("=", 1)
    return key, value


def cmd_submit(args: argparse.Namespace) -> int:
    from scaling.submit import submit

    jobs, failed = submit(
        args.config,
        args.out,
        workers=args.workers,
        executor=args.executor,
        overrides=args.set or [],
        folder=args.logs,
        slurm=dict(_key_value(kv) for kv in args.slurm or []),
        wait=args.wait,
        timeout_min=args.timeout_min,
        track=args.track or [],
    )
    for job in jobs:
        print(f"submitted worker job {job.job_id}")
    for line in failed:
        print(f"failed {line}", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


def cmd_bench(args: argparse.Namespace) -> int:
    from scaling.bench import run_bench

    result = run_bench(_csv_list(args.sections) if args.sections else None)
    if args.json:
        _print_json(result)
    else:
        for section, figures in result.items():
            print(f"[{section}]")
            for k, v in figures.items():
                print(f"  {k} = {v:.4g}" if isinstance(v, float) else f"  {k} = {v}")
    return 0


EXIT_CODES = """exit codes:
  0    success
  1    a stage failed or was blocked by a failed input (scaling run, scaling submit --wait)
  2    bad input: config, table, law file, argument (one 'error: ...' line on stderr, no traceback)
  130  interrupted (Ctrl-C)"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="scaling",
        description="Measure what buys reasoning accuracy (model size, RL data, thinking tokens) and fit laws to it.",
        epilog=f"example:\n  scaling run experiments/quickstart.yaml --out runs/quickstart\n\n{EXIT_CODES}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"scaling {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (
        _fit_parser,
        _ladder_parser,
        _law_parser,
        _run_parser,
        _analyze_parser,
        _status_parser,
        _submit_parser,
        _bench_parser,
    ):
        add(sub)
    return p


def _command(sub, name: str, help: str, example: str):
    """A subcommand with its one-line help and an example in its epilog."""
    return sub.add_parser(
        name,
        help=help,
        description=help[0].upper() + help[1:] + ".",
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _fit_parser(sub) -> None:
    from scaling.laws import FORMS

    f = _command(
        sub,
        "fit",
        "fit a law to a table (CSV, Parquet or JSONL)",
        "scaling fit runs/quickstart/results.csv --x params --y value --where \"strategy == 'greedy'\" --out size.json",
    )
    f.add_argument("table", help="the data: a .csv, .parquet or .jsonl file")
    f.add_argument("--x", required=True, help="input column, or comma-separated columns (chinchilla: N,D)")
    f.add_argument("--y", required=True, help="output column")
    f.add_argument("--form", default="auto", help=f"one of {sorted(FORMS)} or auto (default)")
    f.add_argument("--bootstrap", type=int, default=0, help="bootstrap resamples for intervals")
    f.add_argument("--holdout", type=int, default=0, help="hold out the K largest points and report the error")
    f.add_argument("--loss", default="huber", choices=["huber", "squared"], help="fit loss (default huber)")
    f.add_argument("--delta", type=float, default=1e-3, help="Huber delta (default 1e-3)")
    f.add_argument("--space", choices=["log", "linear"], default=None, help="residual space (default per form)")
    f.add_argument("--seed", type=int, default=0, help="seed of the optimiser starts and the bootstrap (default 0)")
    f.add_argument("--level", type=float, default=0.95, help="coverage of the intervals (default 0.95)")
    f.add_argument("--weights", metavar="COL", help="column of per-row sample weights (>= 0)")
    f.add_argument("--bounds", choices=["data", "physical"], default="data", help="asymptote bounds (default data)")
    f.add_argument(
        "--paired", metavar="COL", help="column of the unit each row was measured on at every x (e.g. seed): "
        "the holdout's standard error and bootstrap follow the units"
    )  # fmt: skip
    f.add_argument("--assign", action="append", metavar="NAME=EXPR", help="add a column (pandas eval); repeatable")
    f.add_argument("--where", metavar="EXPR", help="keep rows matching a pandas query")
    f.add_argument("--out", help="save the law as JSON")
    f.set_defaults(func=cmd_fit)


def _ladder_parser(sub) -> None:
    f = _command(
        sub,
        "ladder",
        "fit a two-step ladder: task loss from N, D, then accuracy from task loss",
        "scaling ladder points.csv --x N,D --loss task_loss --acc accuracy --bootstrap 200 --out ladder.json",
    )
    f.add_argument("table", help="step 1 data (CSV, Parquet or JSONL): the x columns, task loss and accuracy")
    f.add_argument("--x", default="N,D", help="step 1 inputs: N,D (Chinchilla form) or one compute column")
    f.add_argument("--loss", required=True, help="task-loss column (> 0)")
    f.add_argument("--acc", required=True, help="accuracy column")
    f.add_argument("--acc-table", help="step 2 data (default: TABLE)")
    f.add_argument("--bootstrap", type=int, default=0, help="bootstrap resamples (bands carry both steps)")
    f.add_argument("--holdout", type=int, default=0, help="refit without the K largest points, score the chain")
    f.add_argument("--seed", type=int, default=0, help="seed of the optimiser starts and the bootstrap (default 0)")
    f.add_argument("--out", help="save the ladder as JSON (scaling.laws.load reads it)")
    f.add_argument(
        "--figure",
        metavar="PATH",
        help="draw both steps and the chain to PATH.png, .svg and .pdf (PATH without suffix)",
    )
    f.set_defaults(func=cmd_ladder)


def _law_parser(sub) -> None:
    law = _command(
        sub, "law", "reuse a saved law: show | predict X... | solve Y...", "scaling law solve size.json 0.9 --json"
    )
    law.add_argument("action", choices=["show", "predict", "solve"], help="what to do with the law")
    law.add_argument("law", help="law JSON file (from scaling fit --out, scaling ladder --out or scaling analyze)")
    law.add_argument("values", nargs="*", help="x values (N,D pairs for chinchilla) or target y values")
    law.add_argument("--level", type=float, default=0.95, help="coverage of the intervals (default 0.95)")
    law.add_argument("--json", action="store_true", help="print one JSON list (predict, solve)")
    law.set_defaults(func=cmd_law)


def _run_parser(sub) -> None:
    r = _command(
        sub,
        "run",
        "run a sweep config (YAML): cached stages, resumable, shareable among workers",
        "scaling run experiments/size_cpu.yaml --out runs/size --set seeds=[0,1,2,3]",
    )
    r.add_argument("config", help="sweep config (YAML)")
    r.add_argument("--out", help="output directory (default runs/<config name>)")
    r.add_argument("--set", action="append", metavar="KEY.PATH=VALUE", help="override a setting; repeatable")
    r.add_argument("--dry-run", action="store_true", help="print points, stages, cache status and FLOPs; run nothing")
    r.add_argument("--json", action="store_true", help="with --dry-run: print one JSON object")
    r.add_argument("--retry-failed", action="store_true", help="rerun stages recorded as failed")
    r.add_argument("--worker", type=int, help="this worker's index (default: SLURM array task, else 0)")
    r.add_argument("--workers", type=int, help="number of workers sharing --out (default: SLURM array size, else 1)")
    r.add_argument(
        "--stale-after",
        type=float,
        default=120.0,
        help="seconds a claim's heartbeat may stay unchanged (on this worker's clock) before it is taken over",
    )
    r.add_argument("--fail-fast", action="store_true", help="stop at the first stage that fails")
    r.add_argument("--track", action="append", metavar="NAME", help="also report to tensorboard or wandb; repeatable")
    r.add_argument("--no-analyze", action="store_true", help="skip the analysis after the sweep")
    r.add_argument("--model", help="preset of the analysis' one-preset axes (default: accuracy closest to 50%%)")
    r.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples for the laws' intervals")
    r.set_defaults(func=cmd_run)


def _analyze_parser(sub) -> None:
    an = _command(
        sub,
        "analyze",
        "fit laws and regenerate figures and report.md from a sweep's results",
        "scaling analyze runs/quickstart --bootstrap 500",
    )
    an.add_argument("dir", help="a sweep's output directory (holds results.parquet)")
    an.add_argument("--model", help="preset of the one-preset axes (default: supervised accuracy closest to 50%%)")
    an.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples for the laws' intervals")
    an.set_defaults(func=cmd_analyze)


def _status_parser(sub) -> None:
    st = _command(
        sub, "status", "summarise a sweep directory's progress and failures", "scaling status runs/quickstart --json"
    )
    st.add_argument("dir", help="a sweep's output directory (holds plan.json)")
    st.add_argument("--json", action="store_true", help="print one JSON object")
    st.set_defaults(func=cmd_status)


def _submit_parser(sub) -> None:
    sm = _command(
        sub,
        "submit",
        "launch sweep workers through submitit (SLURM, or local processes)",
        "scaling submit experiments/size_gpu.yaml --out runs/size --workers 8 --slurm slurm_partition=gpu",
    )
    sm.add_argument("config", help="sweep config (YAML)")
    sm.add_argument("--out", required=True, help="output directory the workers share")
    sm.add_argument("--workers", type=int, default=1, help="number of jobs in the array (default 1)")
    sm.add_argument(
        "--executor", choices=["auto", "slurm", "local"], default="auto", help="where jobs run (default: SLURM if any)"
    )
    sm.add_argument("--set", action="append", metavar="KEY.PATH=VALUE", help="override a setting; repeatable")
    sm.add_argument("--logs", default=None, help="submitit log folder (default OUT/submitit)")
    sm.add_argument(
        "--slurm", action="append", metavar="KEY=VALUE", help="submitit parameter, e.g. slurm_partition=gpu"
    )
    sm.add_argument("--wait", action="store_true", help="wait for the workers and report failures")
    sm.add_argument("--track", action="append", metavar="NAME", help="also report to tensorboard or wandb; repeatable")
    sm.add_argument(
        "--timeout-min",
        type=int,
        default=600,
        help="each job's time limit in minutes (default 600); a job that reaches it is requeued and resumes",
    )
    sm.set_defaults(func=cmd_submit)


def _bench_parser(sub) -> None:
    b = _command(sub, "bench", "measure speed and print figures", "scaling bench --sections train --json")
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.add_argument("--sections", help="comma-separated sections (default: all)")
    b.set_defaults(func=cmd_bench)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {one_line(message)}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.showwarning = _show_warning  # diagnostics on one line, without the toolkit's source lines
    try:
        return args.func(args)
    except ScalingError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as e:  # a path that cannot be read or written (permissions, a full disk)
        print(f"error: {one_line(e)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def one_line(e: Exception) -> str:
    """An error message on one line (YAML and other parsers put line breaks in theirs)."""
    return " ".join(str(e).split())
