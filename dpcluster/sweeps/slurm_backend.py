"""Jobs as Slurm job arrays through submitit: one array per batch of ready jobs, requeued on timeout or
preemption (the job then resumes from its last finished round, which every job checkpoints)."""

from __future__ import annotations

from dataclasses import dataclass
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
    name: str = "slurm"

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

    def run(self, calls: list[JobCall]) -> list[Outcome]:
        from submitit.core.utils import FailedJobError, UncompletedJobError

        try:
            jobs = self.executor().map_array(_requeueable(), calls)
        except FailedJobError as error:  # sbatch refused: show Slurm's own words, on one line
            message = " ".join(str(error).split()) or "sbatch failed"
            raise UserError(f"Slurm refused the jobs: {message}") from None
        outcomes = []
        for call, job in zip(calls, jobs):
            try:
                job.results()  # every task's (several for data-parallel jobs)
                outcomes.append(Outcome(call.job.id, True))
            except UncompletedJobError as error:
                lines = [line for line in str(error).strip().splitlines() if line.strip()]
                outcomes.append(Outcome(call.job.id, False, (lines[-1] if lines else "failed") +
                                        f" (Slurm job {job.job_id}; log {job.paths.stderr})"))
        return outcomes
