"""Jobs as Ray tasks, with GPU requests (fractional GPUs let several small distilled jobs share one GPU). Each
task receives its dependencies' results as arguments, so Ray itself starts a job when its dependencies are
done: the coordinator hands Ray the whole graph at once. Connects to an existing cluster (``address``, or the
cluster a ``ray job submit`` driver runs on) or starts a local one."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from dpcluster.sweeps.backends import Outcome
from dpcluster.sweeps.execute import JobCall, execute_logged
from dpcluster.user_code import submitting_pythonpath


def _after(call: JobCall, *dependencies: str) -> str:
    # Ray calls this once every dependency's task has returned (their job ids, unused here).
    return execute_logged(call)


@dataclass
class RayBackend:
    address: str | None = None
    gpus_per_job: float = 0.0
    cpus_per_job: float = 1.0
    name: str = "ray"
    resolves_dependencies = True
    refs: dict = field(default_factory=dict)  # job id -> ObjectRef, for its dependents
    running: dict = field(default_factory=dict)  # ObjectRef -> (call, dependency ids)
    failed: set = field(default_factory=set)

    def _connect(self) -> None:
        import ray

        if not ray.is_initialized():
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": {"PYTHONUNBUFFERED": "1"}})

    def submit(self, call: JobCall, after: tuple[str, ...] = ()) -> None:
        import ray

        self._connect()
        # Workers find the user's code (a network's or a data set's factory) where this process finds it, on a
        # cluster this process joined or started alike.
        path = {"PYTHONPATH": os.pathsep.join(submitting_pythonpath())}
        task = ray.remote(num_cpus=self.cpus_per_job, num_gpus=self.gpus_per_job, max_retries=0,
                          runtime_env={"env_vars": path})(_after)
        dependencies = tuple(job_id for job_id in after if job_id in self.refs)
        ref = task.remote(call, *(self.refs[job_id] for job_id in dependencies))
        self.refs[call.job.id] = ref
        self.running[ref] = (call, dependencies)

    def outstanding(self) -> int:
        return len(self.running)

    def wait(self) -> list[Outcome]:
        import ray

        ray.wait(list(self.running), num_returns=1)
        ready, _ = ray.wait(list(self.running), num_returns=len(self.running), timeout=0)
        outcomes = []
        # In submission order, so a dependency's failure is known before its dependents' outcomes.
        for ref in [ref for ref in self.running if ref in set(ready)]:
            call, dependencies = self.running.pop(ref)
            try:
                ray.get(ref)
                outcomes.append(Outcome(call.job.id, True))
            except ray.exceptions.RayError as error:
                self.failed.add(call.job.id)
                if any(job_id in self.failed for job_id in dependencies):
                    outcomes.append(Outcome(call.job.id, False, "a dependency failed", blocked=True))
                    continue
                cause = getattr(error, "cause", None) or error
                outcomes.append(Outcome(call.job.id, False, f"{type(cause).__name__}: {cause}".splitlines()[0]))
        return outcomes
