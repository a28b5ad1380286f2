"""Jobs as Ray tasks, with GPU requests (fractional GPUs let several small distilled jobs share one GPU). Connects
to an existing cluster (``address``) or starts a local one."""

from __future__ import annotations

from dataclasses import dataclass

from dpcluster.sweeps.backends import Outcome
from dpcluster.sweeps.execute import JobCall, execute_logged


@dataclass
class RayBackend:
    address: str | None = None
    gpus_per_job: float = 0.0
    cpus_per_job: float = 1.0
    name: str = "ray"

    def _connect(self) -> None:
        import ray

        if not ray.is_initialized():
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": {"PYTHONUNBUFFERED": "1"}})

    def run(self, calls: list[JobCall]) -> list[Outcome]:
        import ray

        self._connect()
        task = ray.remote(num_cpus=self.cpus_per_job, num_gpus=self.gpus_per_job, max_retries=0)(execute_logged)
        refs = [task.remote(call) for call in calls]
        outcomes = []
        for call, ref in zip(calls, refs):
            try:
                ray.get(ref)
                outcomes.append(Outcome(call.job.id, True))
            except ray.exceptions.RayError as error:
                cause = getattr(error, "cause", None) or error
                outcomes.append(Outcome(call.job.id, False, f"{type(cause).__name__}: {cause}".splitlines()[0]))
        return outcomes
