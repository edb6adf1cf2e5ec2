"""``scaling submit``: launch sweep workers through submitit (a SLURM job array, or local processes).

Each job runs ``run_sweep(config, out, worker=i, workers=N)``; workers share ``out`` and split the
stage graph through atomic claims (see ``scaling.sweep``), so N jobs never compute a stage twice.
"""

from __future__ import annotations

from pathlib import Path

from scaling.errors import ScalingError


def worker_job(config: str, out: str, overrides: list[str], worker: int, workers: int) -> int:
    """Body of one submitted job: the number of result rows it wrote."""
    from scaling.sweep import maybe_initialize_distributed, run_sweep

    maybe_initialize_distributed()
    return len(run_sweep(config, out, overrides, worker=worker, workers=workers, progress=False).results)


def submit(
    config: str,
    out: str,
    workers: int = 1,
    executor: str = "auto",
    overrides: list[str] = (),
    folder: str | None = None,
    slurm: dict[str, str] | None = None,
    wait: bool = False,
    timeout_min: int = 600,
):
    """Submit ``workers`` jobs as one array; ``executor`` is auto (SLURM if available), slurm or local.

    ``slurm`` holds extra submitit parameters (e.g. ``{"slurm_partition": "gpu"}``). With ``wait``,
    block until all jobs finish. Returns the jobs and a line per failed job (empty without ``wait``).
    """
    import submitit

    from scaling.plan import make_plan

    if workers < 1:
        raise ScalingError(f"--workers {workers}: expected an integer >= 1")
    make_plan(config, list(overrides))  # config errors before anything is queued
    folder = folder or str(Path(out) / "submitit" / "%j")
    cluster = None if executor == "auto" else executor
    ex = submitit.AutoExecutor(folder=folder, cluster=cluster)
    params = {k: _parse(v) for k, v in (slurm or {}).items()}
    ex.update_parameters(timeout_min=timeout_min, name=f"scaling-{Path(config).stem}", **params)
    n = [workers] * workers
    jobs = ex.map_array(
        worker_job, [str(config)] * workers, [str(out)] * workers, [list(overrides)] * workers, range(workers), n
    )
    failed = []
    for job in jobs if wait else []:
        try:
            job.result()
        except Exception as e:  # report every failed worker, not only the first
            failed.append(f"job {job.job_id}: {type(e).__name__}: {str(e).strip().splitlines()[-1]}")
    return jobs, failed


def _parse(value: str):
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value
