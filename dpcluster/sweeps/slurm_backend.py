"""Jobs as Slurm jobs through submitit: the jobs that become ready together go in one job array (one ``sbatch``),
each task requeued on timeout or preemption (it then resumes from its last finished round, which every job
checkpoints). The coordinator submits a job as soon as its own dependencies are done.

Starting a Slurm job costs seconds (a fresh Python that imports torch and loads the data), which dwarfs a small
validation. So when more jobs become ready at once than the partition could ever run side by side (its CPUs over
the CPUs per job, from ``sinfo``), they are packed: each array task runs its share one after another in one
process, and says when each job ends (an outcome file per job), so dependents still start as soon as their own
dependencies are done. On a cluster larger than the batch, every job is a task of its own."""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from dpcluster.atomic import write_atomic
from dpcluster.errors import UserError
from dpcluster.sweeps.backends import Outcome, last_line
from dpcluster.sweeps.execute import JobCall, execute


def packs(calls: list, slots: int | None) -> list[list]:
    """``calls`` in at most ``slots`` groups of near-equal size, in order (one group per call without a limit)."""
    if not slots or slots >= len(calls):
        return [[call] for call in calls]
    size, extra = divmod(len(calls), slots)
    out, start = [], 0
    for i in range(slots):
        end = start + size + (1 if i < extra else 0)
        out.append(calls[start:end])
        start = end
    return out


def _outcome_file(folder: Path, job_id: str) -> Path:
    return Path(folder) / "outcomes" / f"{job_id}.json"


def _run_pack(calls: list[JobCall], folder: str) -> None:
    """One array task: run its jobs in turn; after each, its outcome file (written by the first process of a
    data-parallel job). A requeued task skips the jobs it already finished."""
    import signal

    import submitit

    def stop(signum, frame):
        # Slurm sends SIGTERM when it requeues, preempts or cancels a job; submitit ignores it (it checkpoints on
        # its own timeout signal). Every training keeps its progress on disk after each epoch, so stopping at
        # once loses at most an epoch, and the requeued task resumes there.
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    first = submitit.JobEnvironment().global_rank == 0
    for call in calls:
        path = _outcome_file(Path(folder), call.job.id)
        if path.exists():
            continue
        try:
            execute(call)
            outcome = {"ok": True}
        except Exception as error:  # noqa: BLE001 - one job's failure is its outcome; the pack goes on
            import traceback

            traceback.print_exc()
            outcome = {"ok": False, "error": last_line(error)}
        if first:
            text = json.dumps(outcome)
            write_atomic(path, lambda handle: handle.write(text.encode()))


def _requeueable():
    import submitit

    class ExecutePack(submitit.helpers.Checkpointable):
        """A pack as submitit runs it: on timeout or preemption, submitit calls ``checkpoint`` and requeues the
        same pack, which skips finished jobs and picks up the current one's per-round checkpoint."""

        def __call__(self, calls: list[JobCall], folder: str) -> None:
            _run_pack(calls, folder)

    return ExecutePack()


@dataclass
class _Pack:
    calls: list[JobCall]
    job: object  # the submitit job of its array task


@dataclass
class SlurmBackend:
    folder: Path
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    gpus_per_task: int = 0
    cpus_per_task: int = 1
    mem_gb: float | None = None
    time_min: int = 60
    array_parallelism: int = 64
    # Processes per job: validation jobs train data-parallel across them (one per GPU). Default: one per GPU.
    tasks_per_job: int | None = None
    # How often finished jobs are looked for.
    poll_seconds: float = 0.5
    name: str = "slurm"
    resolves_dependencies = False
    queued: list[JobCall] = field(default_factory=list)
    running: list[_Pack] = field(default_factory=list)
    # Called with {job id: Slurm id} right after each sbatch, so the ids are on disk before anything can stop us.
    on_submitted: object = None
    _slots: int | None = field(default=None, init=False, repr=False)
    _slots_known: bool = field(default=False, init=False, repr=False)

    @property
    def tasks(self) -> int:
        return self.tasks_per_job or max(self.gpus_per_task, 1)

    def executor(self):
        import submitit

        executor = submitit.SlurmExecutor(folder=Path(self.folder) / "%j", max_num_timeout=3)
        params = {"time": self.time_min, "cpus_per_task": self.cpus_per_task,
                  "array_parallelism": self.array_parallelism, "job_name": "dpcluster",
                  # A requeued job (preempted, timed out, scontrol requeue) adds to its log instead of
                  # overwriting the first attempt's.
                  "additional_parameters": {"open-mode": "append"}}
        for key in ("partition", "account", "qos", "constraint"):
            if getattr(self, key):
                params[key] = getattr(self, key)
        if self.tasks > 1:
            params["ntasks_per_node"] = self.tasks
        if self.gpus_per_task:
            # One GPU per process; a job asking for several GPUs gets as many processes (DDP).
            params["gpus_per_task"] = 1 if self.tasks > 1 else self.gpus_per_task
        if self.mem_gb:
            params["mem"] = f"{int(self.mem_gb * 1024)}MB"
        executor.update_parameters(**params)
        return executor

    def slots(self) -> int | None:
        """How many jobs of this size the partition can run side by side (its CPUs over the CPUs per job);
        None where packing does not apply (GPU or multi-process jobs) or ``sinfo`` cannot say. Asked once per
        sweep: a partition's size does not change between two submissions."""
        if not self._slots_known:
            self._slots, self._slots_known = self._partition_slots(), True
        return self._slots

    def _partition_slots(self) -> int | None:
        if self.gpus_per_task or self.tasks > 1:
            return None
        command = ["sinfo", "--noheader", "--format=%C"] + (["--partition", self.partition] if self.partition else [])
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=30)
            # %C is allocated/idle/other/total CPUs, one line per partition.
            total = sum(int(line.split("/")[3]) for line in done.stdout.split())
        except (OSError, subprocess.SubprocessError, ValueError, IndexError):
            return None
        return max(1, total // max(1, self.cpus_per_task)) if done.returncode == 0 and total else None

    def submit(self, call: JobCall, after: tuple[str, ...] = ()) -> None:
        self.queued.append(call)  # sent with the other jobs that become ready now, as one array

    def outstanding(self) -> int:
        return len(self.queued) + sum(len(pack.calls) for pack in self.running)

    def _send(self) -> None:
        from submitit.core.utils import FailedJobError

        calls, self.queued = self.queued, []
        for call in calls:  # an earlier attempt's outcome is not this one's
            _outcome_file(self.folder, call.job.id).unlink(missing_ok=True)
        groups = packs(calls, self.slots())
        try:
            jobs = self.executor().map_array(_requeueable(), groups, [str(self.folder)] * len(groups))
        except FailedJobError as error:  # sbatch refused: show Slurm's own words, on one line
            message = " ".join(str(error).split()) or "sbatch failed"
            raise UserError(f"Slurm refused the jobs: {message}") from None
        self.running += [_Pack(list(group), job) for group, job in zip(groups, jobs)]
        if self.on_submitted is not None:
            self.on_submitted({call.job.id: job.job_id for group, job in zip(groups, jobs) for call in group})

    def attach(self, calls: list[JobCall], scheduler_id: str) -> None:
        """Follow a Slurm job an earlier run of the coordinator submitted for ``calls`` (queued, running or
        ended: its outcome files, or its end without them, are read as for a job submitted now)."""
        from submitit.slurm.slurm import SlurmJob

        self.running.append(_Pack(list(calls), SlurmJob(folder=Path(self.folder) / "%j", job_id=scheduler_id)))

    def wait(self) -> list[Outcome]:
        if self.queued:
            self._send()
        while True:
            outcomes = []
            for pack in list(self.running):
                ended = pack.job.done()  # before reading the outcome files, so none written last is missed
                outcomes += self._reported(pack)
                if pack.calls and ended:
                    error = self._failure(pack.job)
                    outcomes += [Outcome(call.job.id, False, error) for call in pack.calls]
                    pack.calls = []
                if not pack.calls:
                    self.running.remove(pack)
            if outcomes:
                return outcomes
            time.sleep(self.poll_seconds)

    def _reported(self, pack: _Pack) -> list[Outcome]:
        """The outcomes the pack's jobs have written so far (taken off the pack)."""
        outcomes = []
        for call in list(pack.calls):
            path = _outcome_file(self.folder, call.job.id)
            if path.exists():
                written = json.loads(path.read_text())
                error = None if written["ok"] else \
                    f"{written['error']} (Slurm job {pack.job.job_id}; log {pack.job.paths.stdout})"
                outcomes.append(Outcome(call.job.id, written["ok"], error))
                pack.calls.remove(call)
        return outcomes

    @staticmethod
    def _failure(job) -> str:
        """Why a task ended without an outcome for its jobs (killed, out of memory, out of time)."""
        where = f" (Slurm job {job.job_id}; log {job.paths.stderr})"
        try:
            job.results()
            return "ended without reporting" + where
        except Exception as error:  # noqa: BLE001 - submitit's UncompletedJobError, or the task's own error
            lines = [line for line in str(error).strip().splitlines() if line.strip()]
            return (lines[-1] if lines else type(error).__name__) + where
