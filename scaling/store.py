"""The layout of a sweep's output directory and the status of each stage in it (no jax: ``--dry-run``
and ``scaling status`` read it without loading the numerics).

    config.yaml, plan.json         the sweep as run (after --set) and its points and stages
    environment.json               package versions, devices, git revision
    stages/<kind>-<key>/           one directory per stage:
        settings.json              what its key hashes
        log.txt                    a log line per chunk, each with the first 8 characters of the claim token
        metrics.jsonl              training or RL metrics, one line per (step, seed), written per chunk
        runs.jsonl                 each attempt's start and end (done, failed, lost) with its claim token
        claim, claim.lock          held by the worker computing it (see ``scaling.claims``)
        done.json | failed.json    written last and atomically: a stage without a done.json it can trust
                                   (``corruption``: cut short, another version, output files changed) is redone
    results.csv, results.parquet   tidy: one row per (point, seed, difficulty, source, strategy, budget, k)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from scaling.claims import holder
from scaling.errors import ScalingError
from scaling.io import read_json
from scaling.plan import seed_family
from scaling.track import latest

STATUSES = ("done", "failed", "claimed", "corrupt", "pending")
# Revision of the done.json record (1: the stage's name and the size of every output file).
RECORD_FORMAT = 1
_NOT_OUTPUTS = ("log.txt", "runs.jsonl", "settings.json", "done.json", "failed.json")


def stage_dir(out: Path, name: str) -> Path:
    return Path(out) / "stages" / name


def output_files(d: Path) -> dict[str, int]:
    """Size in bytes of every output file of stage directory ``d`` (what done.json vouches for)."""
    return {
        str(p.relative_to(d)): p.stat().st_size
        for p in sorted(d.rglob("*"))
        if p.is_file() and p.name not in _NOT_OUTPUTS and not p.name.startswith(("claim", "."))
    }


def record(name: str, summary: dict, d: Path) -> dict:
    """The done.json of stage ``name``: its summary, the record's format and its output files' sizes."""
    return summary | {"stage": name, "record_format": RECORD_FORMAT, "files": output_files(d)}


def corruption(out: Path, name: str) -> str | None:
    """Why the done.json of stage ``name`` cannot be trusted (cut short, written by another version of
    the toolkit, an output file missing or of another size), or None when it can."""
    d = stage_dir(out, name)
    try:
        rec = json.loads((d / "done.json").read_text())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return "done.json is cut short (not valid JSON)"
    if not isinstance(rec, dict) or rec.get("record_format") != RECORD_FORMAT or rec.get("stage") != name:
        return "done.json was written by another version of the toolkit or for another stage"
    for rel, size in rec.get("files", {}).items():
        p = d / rel
        if not p.is_file():
            return f"{rel} is missing"
        if p.stat().st_size != size:
            return f"{rel} has {p.stat().st_size} bytes where done.json recorded {size} (cut short?)"
    return None


def stage_status(out: Path, name: str) -> str:
    """done | failed | claimed (a worker is computing it) | corrupt (a record that cannot be trusted:
    the stage is redone) | pending."""
    d = stage_dir(out, name)
    if (d / "done.json").is_file():
        return "corrupt" if corruption(out, name) else "done"
    if (d / "failed.json").is_file():
        return "failed"
    if (d / "claim").is_file():
        return "claimed"
    return "pending"


def seed_groups(out: str | Path) -> dict[str, list[tuple[int, ...]]]:
    """The seed groups of the training stages in ``out``, by ``seed_family`` (for ``make_plan``)."""
    groups: dict[str, list[tuple[int, ...]]] = {}
    for path in sorted(Path(out).glob("stages/train-*/settings.json")):
        try:
            settings = read_json(path, "stage settings")
        except ScalingError:  # cut short: that stage is redone under its own name, not reused
            continue
        groups.setdefault(seed_family(settings), []).append(tuple(settings["seeds"]))
    return groups


def statuses(out: Path, names) -> dict[str, str]:
    return {name: stage_status(out, name) for name in names}


def failure_reason(out: Path, name: str) -> str:
    return read_json(stage_dir(out, name) / "failed.json", "stage failure record")["reason"]


def status_doc(out: str | Path) -> dict:
    """``scaling status DIR --json``: points (and how many are complete), stage counts by kind and
    status, and the failed, corrupt and running stages (with their holders and ``track.latest``: the
    last step, its metrics and the rate)."""
    out = Path(out)
    if not (out / "plan.json").is_file():
        raise ScalingError(f"{out}: no plan.json (not a sweep output directory)")
    doc = read_json(out / "plan.json", "sweep plan")
    status = {name: stage_status(out, name) for name in doc["stages"]}
    by_kind: dict[str, dict[str, int]] = {}
    for name, s in doc["stages"].items():
        counts = by_kind.setdefault(s["kind"], {})
        counts[status[name]] = counts.get(status[name], 0) + 1
    running, now = [], time.time()
    for name in (n for n, st in status.items() if st == "claimed"):
        who = holder(stage_dir(out, name) / "claim") or {}
        progress = latest(stage_dir(out, name) / "metrics.jsonl", now)
        running.append({"stage": name} | {k: who.get(k) for k in ("worker", "host", "pid")} | {"latest": progress})
    return {
        "dir": str(out),
        "points": len(doc["points"]),
        "points_complete": sum(all(status[n] == "done" for n in p["stages"]) for p in doc["points"]),
        "stages": len(doc["stages"]),
        "by_kind": by_kind,
        "failed": [{"stage": n, "reason": failure_reason(out, n)} for n, st in status.items() if st == "failed"],
        "corrupt": [{"stage": n, "reason": corruption(out, n)} for n, st in status.items() if st == "corrupt"],
        "running": running,
    }


def status_text(out: str | Path) -> str:
    """``scaling status DIR``: ``status_doc`` as lines."""
    doc = status_doc(out)
    lines = [f"{doc['dir']}: {doc['points']} points ({doc['points_complete']} complete), {doc['stages']} stages"]
    for kind, counts in doc["by_kind"].items():
        lines.append(f"  {kind:6s} " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    lines += [f"  failed {f['stage']}: {f['reason']}" for f in doc["failed"]]
    lines += [f"  corrupt {c['stage']}: {c['reason']} (redone by the next run)" for c in doc["corrupt"]]
    for r in doc["running"]:
        where = f": worker {r['worker']} on {r['host']} (pid {r['pid']})" if r["pid"] is not None else ""
        lines.append(f"  running {r['stage']}{where}")
        if (now := r["latest"]) is not None:
            values = ", ".join(f"{k} {v:.4g}" for k, v in now["metrics"].items())
            rate = f", {now['steps_per_s']:.3g} steps/s" if now["steps_per_s"] is not None else ""
            ago = f", last chunk {now['seconds_since']:.0f}s ago" if now["seconds_since"] is not None else ""
            lines.append(f"    step {now['step']}: {values}{rate}{ago}")
    return "\n".join(lines)
