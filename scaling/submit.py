"""``scaling submit``: launch sweep workers through submitit (a SLURM job array, or local processes).

Each job runs ``run_sweep(config, out, worker=i, workers=N)``; workers share ``out`` and split the
stage graph through claims (see ``scaling.claims``), so N jobs never compute a stage at the same time.
A job is checkpointable: when SLURM (or submitit's local executor) signals a preemption or the time
limit (SIGUSR2), submitit requeues the same call, and the requeued worker resumes its stages from their
checkpoints. The claim of the stage it was computing is released on the way out.
"""

from __future__ import annotations

from pathlib import Path

import submitit

from scaling.errors import ScalingError


class SweepWorker(submitit.helpers.Checkpointable):
    """The body of one submitted job; requeued as is on preemption or timeout (``checkpoint`` is
    submitit's default: the same call again, since every stage resumes by itself)."""

    def __call__(
        self, config: str, out: str, overrides: list[str], worker: int, workers: int, track: list[str] = ()
    ) -> int:
        """The number of result rows the sweep wrote."""
        from scaling.sweep import maybe_initialize_distributed, run_sweep

        maybe_initialize_distributed()
        sweep = run_sweep(config, out, overrides, worker=worker, workers=workers, progress=False, track=track)
        return len(sweep.results)


def submit(
    config: str,
    out: str,
    *,
    workers: int = 1,
    executor: str = "auto",
    overrides: list[str] = (),
    folder: str | None = None,
    slurm: dict[str, str] | None = None,
    wait: bool = False,
    timeout_min: int = 600,
    track: list[str] = (),
):
    """Submit ``workers`` jobs as one array; ``executor`` is auto (SLURM if available), slurm or local.

    ``slurm`` holds submitit parameters passed through as given (e.g. ``{"slurm_partition": "gpu"}``;
    values are parsed as numbers where they are); they win over ``timeout_min`` and the job name. With
    ``wait``, block until all jobs finish. ``track`` adds trackers to the config's (``scaling.track``).
    Returns the jobs and a line per failed job (empty without ``wait``).
    """
    from scaling.plan import make_plan

    if workers < 1:
        raise ScalingError(f"--workers {workers}: expected an integer >= 1")
    if timeout_min < 1:
        raise ScalingError(f"--timeout-min {timeout_min}: expected an integer >= 1 (minutes)")
    make_plan(config, list(overrides), track=list(track))  # config errors before anything is queued
    folder = folder or str(Path(out) / "submitit" / "%j")
    cluster = None if executor == "auto" else executor
    ex = submitit.AutoExecutor(folder=folder, cluster=cluster)
    params = {"timeout_min": timeout_min, "name": f"scaling-{Path(config).stem}"}
    _update_parameters(ex, params, slurm or {})
    n = [workers] * workers
    each = {"config": [str(config)], "out": [str(out)], "overrides": [list(overrides)], "track": [list(track)]}
    each = {k: v * workers for k, v in each.items()}
    jobs = ex.map_array(SweepWorker(), each["config"], each["out"], each["overrides"], range(workers), n, each["track"])
    failed = []
    for job in jobs if wait else []:
        try:
            job.result()
        except Exception as e:  # report every failed worker, not only the first
            failed.append(f"job {job.job_id}: {type(e).__name__}: {str(e).strip().splitlines()[-1]}")
    return jobs, failed


def _update_parameters(ex, params: dict, given: dict[str, str]) -> None:
    """``ex.update_parameters`` with ``params`` and the ``--slurm`` values, each read as a number or a
    boolean where it is one, and kept as the string it was where submitit expects a string (a job name of
    digits); a ScalingError naming the parameter when submitit refuses it."""
    params = params | {k: _parse(v) for k, v in given.items()}
    while True:
        try:
            ex.update_parameters(**params)
            return
        except AssertionError as e:  # submitit checks each parameter's type with an assert
            key = next((k for k in given if f'"{k}"' in str(e) and params[k] != given[k]), None)
            if key is None:
                raise ScalingError(f"--slurm: {e}") from None
            params[key] = given[key]
        except (NameError, TypeError, ValueError) as e:  # submitit names the unknown or invalid parameter
            raise ScalingError(f"--slurm: {e}") from None


def _parse(value: str):
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value
