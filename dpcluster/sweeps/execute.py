"""Running one job of a sweep, wherever it runs (this process, a Slurm job, a Ray task): a plain function of
picklable arguments; the job's kind reads its inputs from and writes its outputs to the sweep folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dpcluster.sweeps.jobs import Job, get_kind
from dpcluster.sweeps.layout import SweepLayout


@dataclass(frozen=True)
class JobCall:
    job: Job
    sweep_dir: Path
    device: str = "auto"


def execute(call: JobCall, reporter=None, distill_progress=None) -> str:
    """Run the job; returns its id. Idempotent: a finished job's outputs are reused, not recomputed."""
    import torch

    from dpcluster.methods.reporter import Reporter, Reporters
    from dpcluster.runtime import resolve_device, use_granted_cpus
    from dpcluster.sweeps.context import JobContext
    from dpcluster.tracking.reporter import folder_tracking
    from dpcluster.training.distributed import from_environment, launched_world_size, leave

    job = call.job
    kind = get_kind(job.kind)
    import dpcluster

    print(f"{job.name}: dpcluster from {Path(dpcluster.__file__).parent}", flush=True)
    # What the coordinator finishes itself when it is there (bookkeeping, aggregating) is finished here when the
    # scheduler started the job on its own (Slurm and Ray hold the graph).
    if kind.settle(job, SweepLayout(Path(call.sweep_dir)), launched_world_size() if kind.data_parallel else 1):
        print(f"{job.name}: settled without training", flush=True)
        return job.id
    if kind.run is None:
        raise RuntimeError(f"{job.name}: a {job.kind} job could not be settled: its inputs are missing")
    use_granted_cpus()
    threads = torch.get_num_threads()  # what torch really runs on, for the log
    print(f"{job.name}: {threads} CPU thread{'s' if threads > 1 else ''}", flush=True)
    device = resolve_device(call.device)
    distributed = from_environment(device)
    if distributed is not None:
        device = distributed.device_for(device)
        print(f"{job.name}: process {distributed.rank} of {distributed.world_size} on {device}", flush=True)
        if not kind.data_parallel:
            # Of a job started on several processes, the first does the work alone: all leave the group now,
            # together (a rank left waiting at the end of a long job would time out).
            main = distributed.is_main
            leave(distributed)
            distributed = None
            if not main:
                return job.id
    reporter = reporter or Reporter()
    # One process of a data-parallel job reports to the folder's trackers.
    with folder_tracking(Path(call.sweep_dir), distributed is None or distributed.is_main) as tracking:
        context = JobContext(SweepLayout(Path(call.sweep_dir)), device, distributed,
                             Reporters(reporter, tracking) if tracking is not None else reporter, distill_progress)
        try:
            kind.run(job, context)
        except BaseException:
            leave(distributed, wait=False)
            raise
    leave(distributed)
    return job.id


def execute_logged(call: JobCall, reporter=None, distill_progress=None) -> str:
    """``execute`` with the job's output and any traceback in ``SWEEP/logs/<job>.log`` (local and Ray jobs;
    Slurm jobs get submitit's own log files)."""
    import contextlib
    import traceback

    log = SweepLayout(Path(call.sweep_dir)).log_file(call.job.name)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as handle, contextlib.redirect_stdout(handle), contextlib.redirect_stderr(handle):
        try:
            return execute(call, reporter, distill_progress)
        except BaseException:
            traceback.print_exc(file=handle)
            raise
