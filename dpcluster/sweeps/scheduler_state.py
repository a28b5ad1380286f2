"""What Slurm says about a sweep's jobs (``sacct``), and cancelling them (``scancel``): the side effects behind
``dpcluster status`` and ``dpcluster cancel``."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class SchedulerState:
    scheduler_id: str
    state: str  # PENDING, RUNNING, COMPLETED, FAILED, TIMEOUT, PREEMPTED, OUT_OF_MEMORY, CANCELLED, ...
    elapsed: str


def slurm_states(scheduler_ids: list[str]) -> dict[str, SchedulerState]:
    """sacct's view of the given jobs or array tasks (empty where sacct is not there or knows none of them)."""
    if not scheduler_ids:
        return {}
    command = ["sacct", "--noheader", "--parsable2", "--allocations", "--format=JobID,State,Elapsed",
               "--jobs", ",".join(sorted(set(scheduler_ids)))]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return {}
    states = {}
    for line in done.stdout.splitlines():
        parts = line.split("|")
        if len(parts) == 3:
            # "CANCELLED by 0" -> CANCELLED
            states[parts[0]] = SchedulerState(parts[0], parts[1].split()[0] if parts[1] else "", parts[2])
    return states


def cancel_slurm(scheduler_ids: list[str]) -> None:
    if scheduler_ids:
        subprocess.run(["scancel", *sorted(set(scheduler_ids))], capture_output=True, text=True, timeout=60)
