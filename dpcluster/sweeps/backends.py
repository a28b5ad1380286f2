"""Where a sweep's jobs run. The coordinator submits a job once its dependencies are done (or, on a backend that
resolves dependencies itself, once they are submitted) and waits for any job to end; a new scheduler is one
class with ``submit``, ``wait`` and ``outstanding``. Jobs are :class:`JobCall` values and ``execute`` is a plain
function, so the same call runs in this process, in a Slurm job (submitit) or in a Ray task."""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Protocol

from dpcluster.methods.reporter import Reporter
from dpcluster.sweeps import execute as execute_module
from dpcluster.sweeps.execute import JobCall


@dataclass
class Outcome:
    job_id: str
    ok: bool
    error: str | None = None
    # The job never ran because a dependency failed first (it is not an attempt of its own).
    blocked: bool = False


def last_line(error: BaseException) -> str:
    return traceback.format_exception_only(type(error), error)[-1].strip()


class Backend(Protocol):
    name: str
    # Whether a job may be submitted before its dependencies end: the backend then starts it when they are done.
    resolves_dependencies: bool

    def submit(self, call: JobCall, after: tuple[str, ...]) -> None:
        """Start ``call`` (after the submitted jobs ``after``, on a backend that resolves dependencies)."""

    def wait(self) -> list[Outcome]:
        """Block until at least one submitted job ends; the outcomes of those that ended."""

    def outstanding(self) -> int:
        """Submitted jobs not yet reported by ``wait``."""

    # Optional, for schedulers whose jobs outlive the coordinator (Slurm): ``flush()`` sends what was submitted
    # (the coordinator may leave after it); ``on_submitted`` (set by the coordinator) is called with {job id:
    # (scheduler id, scheduler ids it waits on)} after each submission; ``attach(calls, scheduler_id, after)``
    # follows a job an earlier coordinator submitted, and ``poll(cancel_blocked)`` returns what ended since,
    # without waiting.


class LocalBackend:
    """Runs jobs one after another in this process, in the order they were submitted."""

    name = "local"
    resolves_dependencies = False

    def __init__(self, on_start=None, reporter: Reporter | None = None, distill_progress=None):
        self.on_start, self.reporter, self.distill_progress = on_start, reporter, distill_progress
        self.queue: list[JobCall] = []

    def submit(self, call: JobCall, after: tuple[str, ...] = ()) -> None:
        self.queue.append(call)

    def outstanding(self) -> int:
        return len(self.queue)

    def wait(self) -> list[Outcome]:
        call = self.queue.pop(0)
        if self.on_start is not None:
            self.on_start(call.job)
        try:
            execute_module.execute_logged(call, self.reporter, self.distill_progress)
            return [Outcome(call.job.id, True)]
        except KeyboardInterrupt:
            raise
        except Exception as error:  # noqa: BLE001 - a failed job is recorded and retried, not fatal
            return [Outcome(call.job.id, False, last_line(error))]


class DryRunBackend:
    """Submits nothing: says which jobs would run, each with the jobs it would wait on (``--dry-run`` of the
    backends that show no scripts of their own)."""

    resolves_dependencies = True

    def __init__(self, name: str, say):
        self.name, self.say = name, say

    def submit(self, call: JobCall, after: tuple[str, ...] = ()) -> None:
        self.say(f"would run {call.job.name} ({call.job.id})" + (f" after {', '.join(after)}" if after else ""))

    def outstanding(self) -> int:
        return 0

    def wait(self) -> list[Outcome]:
        return []
