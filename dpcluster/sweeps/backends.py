"""Where a sweep's jobs run. A backend runs a batch of independent jobs and says which finished; a new
scheduler is one class with ``run``. Jobs are :class:`JobCall` values and ``execute`` is a plain function,
so the same call runs in this process, in a Slurm job (submitit) or in a Ray task."""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Protocol

from dpcluster.sweeps.execute import JobCall, execute_logged


@dataclass
class Outcome:
    job_id: str
    ok: bool
    error: str | None = None


class Backend(Protocol):
    name: str

    def run(self, calls: list[JobCall]) -> list[Outcome]:
        """Run the calls (independent of each other) to completion; one outcome per call, in order."""


class LocalBackend:
    """Runs jobs one after another in this process."""

    name = "local"

    def __init__(self, on_start=None):
        self.on_start = on_start

    def run(self, calls: list[JobCall]) -> list[Outcome]:
        outcomes = []
        for call in calls:
            if self.on_start is not None:
                self.on_start(call.job)
            try:
                execute_logged(call)
                outcomes.append(Outcome(call.job.id, True))
            except KeyboardInterrupt:
                raise
            except Exception as error:  # noqa: BLE001 - a failed job is recorded and retried, not fatal
                last = traceback.format_exception_only(type(error), error)[-1].strip()
                outcomes.append(Outcome(call.job.id, False, last))
        return outcomes
