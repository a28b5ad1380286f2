"""What Slurm says about a sweep's jobs, and cancelling them: the side effects behind following a sweep, ``dpcluster
status`` and ``dpcluster cancel``. ``squeue`` says which jobs are still in the queue (instantly, with why a job
waits); ``sacct`` says how the others ended (PENDING, RUNNING, COMPLETED, FAILED, TIMEOUT, PREEMPTED,
OUT_OF_MEMORY, CANCELLED, ...)."""

from __future__ import annotations

import getpass
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class SchedulerState:
    scheduler_id: str
    state: str
    elapsed: str = ""
    # Why a queued job waits (Dependency, DependencyNeverSatisfied, Resources, Priority, ...); squeue only.
    reason: str = ""


# How a Slurm job ends other than COMPLETED: whatever waited on it with afterok will never start.
ENDED_BADLY = frozenset({"FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE",
                         "PREEMPTED", "REVOKED"})
# Of those, the ends that come from outside the job (its node, a cancellation, preemption): the job's code did not
# fail, so they use none of its attempts. FAILED, TIMEOUT and OUT_OF_MEMORY do.
NOT_ITS_OWN = frozenset({"CANCELLED", "NODE_FAIL", "BOOT_FAIL", "PREEMPTED", "REVOKED"})


def _run(command: list[str]) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None


def slurm_states(scheduler_ids: list[str]) -> dict[str, SchedulerState]:
    """sacct's view of the given jobs or array tasks (empty where sacct is not there or knows none of them). A
    task of an array that has not started yet is not listed on its own."""
    if not scheduler_ids:
        return {}
    done = _run(["sacct", "--noheader", "--parsable2", "--allocations", "--format=JobID,State,Elapsed",
                 "--jobs", ",".join(sorted(set(scheduler_ids)))])
    states = {}
    for line in done.stdout.splitlines() if done is not None else ():
        parts = line.split("|")
        if len(parts) == 3:
            # "CANCELLED by 0" -> CANCELLED
            states[parts[0]] = SchedulerState(parts[0], parts[1].split()[0] if parts[1] else "", parts[2])
    return states


def queued() -> dict[str, SchedulerState] | None:
    """This user's jobs still in Slurm's queue (pending, running, requeued, ...), array tasks one by one; None
    when squeue cannot be asked (then nothing may be taken to have ended)."""
    done = _run(["squeue", "--noheader", "--array", "--user", getpass.getuser(), "--format=%i|%T|%M|%r"])
    if done is None or done.returncode != 0:
        return None
    states = {}
    for line in done.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 4:
            states[parts[0]] = SchedulerState(parts[0], parts[1], parts[2], parts[3])
    return states


def cancel_slurm(scheduler_ids: list[str]) -> None:
    if scheduler_ids:
        _run(["scancel", *sorted(set(scheduler_ids))])
