"""The sweep folder's record of its jobs and their states (JSON, rewritten atomically after every change)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from dpcluster.atomic import write_atomic

# "cancelled": stopped by dpcluster cancel; the next run of the sweep starts it again.
STATES = ("pending", "running", "done", "failed", "cancelled")


@dataclass
class JobState:
    name: str
    kind: str
    state: str = "pending"
    attempts: int = 0
    error: str | None = None
    # The scheduler's id for the job's current attempt (a Slurm job or array task id), so a later run of the
    # coordinator can follow the job instead of submitting it again.
    scheduler_id: str | None = None
    # The scheduler's ids of the jobs that attempt waits on (Slurm afterok), so a later run can tell that it
    # will never start when one of them failed.
    after: list[str] | None = None


class Manifest:
    def __init__(self, path: Path, jobs: dict[str, JobState], read_only: bool = False):
        # Read-only: changes stay in memory (a dry run, or status bringing states up to date for display).
        self.path, self.jobs, self.read_only = path, jobs, read_only

    @classmethod
    def open(cls, path: Path, read_only: bool = False) -> Manifest:
        if not path.exists():
            return cls(path, {}, read_only)
        jobs = {job_id: JobState(**state) for job_id, state in json.loads(path.read_text()).items()}
        return cls(path, jobs, read_only)

    def add(self, job_id: str, name: str, kind: str) -> None:
        self.jobs.setdefault(job_id, JobState(name, kind))

    def set(self, job_id: str, state: str, error: str | None = None) -> None:
        job = self.jobs[job_id]
        job.state, job.error = state, error
        if state == "running":
            job.attempts += 1
            job.scheduler_id, job.after = None, None
        self.save()

    def submitted(self, ids: dict[str, tuple[str, tuple[str, ...]]]) -> None:
        """Record the scheduler's ids of jobs just submitted (job id -> (scheduler id, the ids it waits on))."""
        for job_id, (scheduler_id, after) in ids.items():
            self.jobs[job_id].scheduler_id, self.jobs[job_id].after = scheduler_id, list(after)
        self.save()

    def release(self, job_id: str) -> None:
        """Back to pending without counting the attempt: the job never ran (a dependency failed first)."""
        job = self.jobs[job_id]
        job.state, job.attempts = "pending", max(0, job.attempts - 1)
        self.save()

    def save(self) -> None:
        if self.read_only:
            return
        text = json.dumps({job_id: asdict(state) for job_id, state in self.jobs.items()}, indent=1)
        write_atomic(self.path, lambda handle: handle.write(text.encode()))
