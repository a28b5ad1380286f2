"""Jobs as Slurm jobs through submitit: the jobs that become ready together go in one job array (one ``sbatch``),
each requeued on timeout or preemption (it then resumes from its last finished round, which every job
checkpoints). The coordinator submits a job as soon as its own dependencies are done."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from dpcluster.errors import UserError
from dpcluster.sweeps.backends import Outcome
from dpcluster.sweeps.execute import JobCall, execute


def _requeueable():
    import submitit

    class Execute(submitit.helpers.Checkpointable):
        """``execute`` as submitit runs it: on timeout or preemption, submitit calls ``checkpoint`` and
        requeues the same call, which picks up the job's own per-round checkpoint."""

        def __call__(self, call: JobCall) -> str:
            return execute(call)

    return Execute()


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
    # How often finished jobs are looked for (submitit reads each job's result file).
    poll_seconds: float = 0.5
    name: str = "slurm"
    resolves_dependencies = False
    queued: list[JobCall] = field(default_factory=list)
    running: list = field(default_factory=list)  # (call, submitit job)

    def executor(self):
        import submitit

        executor = submitit.SlurmExecutor(folder=Path(self.folder) / "%j", max_num_timeout=3)
        params = {"time": self.time_min, "cpus_per_task": self.cpus_per_task,
                  "array_parallelism": self.array_parallelism, "job_name": "dpcluster"}
        for key in ("partition", "account", "qos", "constraint"):
            if getattr(self, key):
                params[key] = getattr(self, key)
        tasks = self.tasks_per_job or max(self.gpus_per_task, 1)
        if tasks > 1:
            params["ntasks_per_node"] = tasks
        if self.gpus_per_task:
            # One GPU per process; a job asking for several GPUs gets as many processes (DDP).
            params["gpus_per_task"] = 1 if tasks > 1 else self.gpus_per_task
        if self.mem_gb:
            params["mem"] = f"{int(self.mem_gb * 1024)}MB"
        executor.update_parameters(**params)
        return executor

    def submit(self, call: JobCall, after: tuple[str, ...] = ()) -> None:
        self.queued.append(call)  # sent with the other jobs that become ready now, as one array

    def outstanding(self) -> int:
        return len(self.queued) + len(self.running)

    def _send(self) -> None:
        from submitit.core.utils import FailedJobError

        calls, self.queued = self.queued, []
        try:
            jobs = self.executor().map_array(_requeueable(), calls)
        except FailedJobError as error:  # sbatch refused: show Slurm's own words, on one line
            message = " ".join(str(error).split()) or "sbatch failed"
            raise UserError(f"Slurm refused the jobs: {message}") from None
        self.running += list(zip(calls, jobs))

    def wait(self) -> list[Outcome]:
        if self.queued:
            self._send()
        while True:
            ended = [(call, job) for call, job in self.running if job.done()]
            if ended:
                self.running = [pair for pair in self.running if pair not in ended]
                return [self._outcome(call, job) for call, job in ended]
            time.sleep(self.poll_seconds)

    @staticmethod
    def _outcome(call: JobCall, job) -> Outcome:
        from submitit.core.utils import UncompletedJobError

        try:
            job.results()  # every task's (several for data-parallel jobs)
            return Outcome(call.job.id, True)
        except UncompletedJobError as error:
            lines = [line for line in str(error).strip().splitlines() if line.strip()]
            return Outcome(call.job.id, False, (lines[-1] if lines else "failed") +
                           f" (Slurm job {job.job_id}; log {job.paths.stderr})")
        except Exception as error:  # noqa: BLE001 - the job's own exception, re-raised by submitit
            return Outcome(call.job.id, False, f"{type(error).__name__}: {error}".splitlines()[0] +
                           f" (Slurm job {job.job_id}; log {job.paths.stderr})")
