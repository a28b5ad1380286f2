"""Where a sweep's jobs run. The coordinator submits a job once its dependencies are done (or, on a backend that
resolves dependencies itself, once they are submitted) and waits for any job to end; a new scheduler is one
class with ``submit``, ``wait`` and ``outstanding``. Jobs are :class:`JobCall` values and ``execute`` is a plain
function, so the same call runs in this process, in a Slurm job (submitit) or in a Ray task."""

from __future__ import annotations

import errno
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from dpcluster.sweeps import execute as execute_module
from dpcluster.sweeps.execute import JobCall

if TYPE_CHECKING:
    from dpcluster.methods.reporter import Reporter


@dataclass
class Outcome:
    job_id: str
    ok: bool
    error: str | None = None
    # The job never ran because a dependency failed first (it is not an attempt of its own).
    blocked: bool = False
    # Whether a failure was the job's own (its code raised, its task exited non-zero, ran out of time or memory)
    # and so uses one of its attempts; what ended it from outside (a node failure, a cancellation, a full disk)
    # does not.
    attempt_used: bool = True


def last_line(error: BaseException) -> str:
    return traceback.format_exception_only(type(error), error)[-1].strip()


# Errors of the machine, not of the job: the disk or quota is full, the folder became read-only.
_ENVIRONMENT = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


def environment_failure(error: BaseException) -> OSError | None:
    """The machine's error behind ``error`` (it, or what caused it), if it is one rather than the job's: such a
    failure uses no attempt."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError) and error.errno in _ENVIRONMENT:
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


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


@runtime_checkable
class RunsDataParallel(Protocol):
    """A backend that may start a job on several processes (Slurm: ``--gpus-per-job``, ``--tasks-per-job``,
    ``--stage``); the others run every job in one."""

    def processes(self, kind: str) -> int:
        """How many processes a job of ``kind`` is started on."""


def processes_for(backend, kind: str) -> int:
    """How many processes ``backend`` starts a job of ``kind`` on."""
    return backend.processes(kind) if isinstance(backend, RunsDataParallel) else 1


@runtime_checkable
class SaysWhenStarted(Protocol):
    """A backend that says when a submitted job's attempt really begins (the local backend when it runs it, Slurm
    when it sends it), so a job waiting its turn is not counted as an attempt."""

    # Set by the coordinator: called with {job id: (scheduler id or None, scheduler ids it waits on)} as jobs start
    # (Slurm: right after sbatch, so the ids are on disk before anything can stop the coordinator).
    on_started: Callable[[dict[str, tuple[str | None, tuple[str, ...]]]], None] | None


@runtime_checkable
class FollowsEarlierRuns(SaysWhenStarted, Protocol):
    """A scheduler whose jobs outlive the coordinator (Slurm): what was submitted is sent by ``flush`` (the
    coordinator may leave after it), and a later coordinator follows it instead of submitting it again."""

    def flush(self) -> None:
        """Send what was submitted so far, as far as the scheduler takes it now (the rest is held back)."""

    def leave(self) -> None:
        """The coordinator is leaving: hand what is still held back to whatever sends it later."""

    def attach(self, calls: list[JobCall], scheduler_id: str, after: tuple[str, ...] = ()) -> None:
        """Follow the scheduler's job ``scheduler_id`` that an earlier coordinator submitted for ``calls``."""

    def poll(self, cancel_blocked: bool = True) -> list[Outcome]:
        """What ended since the last look, without waiting."""


class LocalBackend:
    """Runs jobs one after another in this process, in the order they were submitted."""

    name = "local"
    resolves_dependencies = False

    def __init__(self, on_start=None, reporter: Reporter | None = None, distill_progress=None):
        self.on_start, self.reporter, self.distill_progress = on_start, reporter, distill_progress
        self.queue: deque[JobCall] = deque()
        self.on_started = None

    def submit(self, call: JobCall, after: tuple[str, ...] = ()) -> None:
        self.queue.append(call)

    def outstanding(self) -> int:
        return len(self.queue)

    def wait(self) -> list[Outcome]:
        call = self.queue.popleft()
        if self.on_started is not None:
            self.on_started({call.job.id: (None, ())})
        if self.on_start is not None:
            self.on_start(call.job)
        try:
            execute_module.execute_logged(call, self.reporter, self.distill_progress)
            return [Outcome(call.job.id, True)]
        except KeyboardInterrupt:
            raise
        except Exception as error:  # noqa: BLE001 - a failed job is recorded and retried, not fatal
            stop = environment_failure(error)
            if stop:  # the disk is full or read-only here: every later job would fail alike, so the run stops
                raise stop from error
            return [Outcome(call.job.id, False, last_line(error))]


class DryRunBackend:
    """Submits nothing: says which jobs would run, each with the jobs it would wait on (``--dry-run`` of the
    backends that show no scripts of their own)."""

    resolves_dependencies = True

    def __init__(self, name: str, say):
        self.name, self.say = name, say

    def submit(self, call: JobCall, after: tuple[str, ...] = ()) -> None:
        # The aggregate waits on every other job: tens of thousands of ids are not worth a line of their own.
        waits = ", ".join(after) if len(after) <= 8 else f"{', '.join(after[:8])} and {len(after) - 8:,} more"
        self.say(f"would run {call.job.name} ({call.job.id})" + (f" after {waits}" if after else ""))

    def outstanding(self) -> int:
        return 0

    def wait(self) -> list[Outcome]:
        return []
