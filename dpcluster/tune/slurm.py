"""A search as one Slurm job: the job starts a Ray of its own inside its allocation and runs the search there, its
trials packed onto the allocation's CPUs and GPUs by their ``cpus``/``gpus``. The command returns once Slurm holds
the job (or follows it with ``--wait``); running it again while the job is queued or running follows that job
instead of submitting another, and after it ends (finished, stopped, out of time) submits one that resumes the
search from its folder.

    OUT/slurm_job      the Slurm id of the search's latest job
    OUT/logs/<id>/     its submitit log (the search's lines, one per trial)
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

from dpcluster.errors import UserError
from dpcluster.sweeps.slurm_backend import SlurmBackend, refusals_as_one_line
from dpcluster.tune.spec import SearchSpec

JOB_FILE = "slurm_job"


def search_job(search: SearchSpec, out: str, device: str) -> None:
    """What the Slurm job runs: the search, on a Ray started inside the allocation."""
    from dpcluster.tune.run import run_search

    best = run_search(search, Path(out), None, device, say=lambda text: print(text, flush=True))
    print(f"best configuration: {best}", flush=True)


def active_job(out: Path) -> tuple[str, str] | None:
    """The search's Slurm job and its state while Slurm still holds it (queued, running, requeued); else None."""
    from dpcluster.sweeps.scheduler_state import queued

    job_file = out / JOB_FILE
    if not job_file.exists():
        return None
    job_id = job_file.read_text().strip()
    in_queue = queued()
    if in_queue is None:
        raise UserError("cannot ask Slurm (squeue) whether the search's job "
                        f"{job_id} still runs; try again when it answers")
    state = in_queue.get(job_id)
    return (job_id, state.state) if state is not None else None


def submit_search(search: SearchSpec, out: Path, backend: SlurmBackend, device: str,
                  say: Callable[[str], None]) -> str:
    """The Slurm id of the job running the search: the one Slurm holds already, or a new one."""
    from dpcluster.atomic import write_atomic
    from dpcluster.tune.run import check_same_search, keep_search_spec

    out = Path(out).resolve()
    check_same_search(out, search)
    held = active_job(out)
    if held is not None:
        say(f"the search already runs as Slurm job {held[0]} ({held[1]}): not submitting another")
        return held[0]
    existed = out.exists()
    executor = backend.executor(backend.resources(""))
    executor.update_parameters(job_name=f"dpcluster-tune-{search.name}")
    try:
        with refusals_as_one_line("Slurm refused the search's job"):
            job = executor.submit(search_job, search, str(out), device)
    except UserError:
        if not existed:  # nothing half-made is left behind
            shutil.rmtree(out, ignore_errors=True)
        raise
    keep_search_spec(out, search)
    write_atomic(out / JOB_FILE, lambda handle: handle.write(f"{job.job_id}\n".encode()))
    resumed = " (resuming the search in its folder)" if (out / "tune" / search.name).exists() else ""
    say(f"Slurm holds the search as job {job.job_id}{resumed}; its log: {out / 'logs' / job.job_id}")
    return job.job_id


def follow(job_id: str, out: Path, say: Callable[[str], None], poll_seconds: float = 2.0) -> bool:
    """Wait for the search's job to end; True when it finished and wrote its best configuration."""
    from dpcluster.sweeps.scheduler_state import queued, slurm_states

    seen = None
    while True:
        in_queue = queued()
        state = (in_queue or {}).get(job_id)
        if in_queue is not None and state is None:
            break
        if state is not None and state.state != seen:
            seen = state.state
            say(f"Slurm job {job_id}: {seen}" + (f" ({state.reason})" if state.reason and seen == "PENDING" else ""))
        time.sleep(poll_seconds)
    ended = slurm_states([job_id]).get(job_id)
    final = ended.state if ended is not None else "gone from the queue"
    finished = final == "COMPLETED" and (Path(out) / "best.toml").exists()
    say(f"Slurm job {job_id} ended: {final}" + ("" if finished else f"; its log: {Path(out) / 'logs' / job_id} "
                                                                   "(running the same command resumes the search)"))
    return finished
