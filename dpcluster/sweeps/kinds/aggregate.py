"""``aggregate``: once, after every other job of the sweep: mean, std and count per level of the sweep's own
results (not of earlier specs run into the same folder). Cheap, so it is only settled: by the
coordinator, or (a sweep Slurm holds) by a small job that waits on every other."""

from __future__ import annotations

from dpcluster.sweeps.jobs import Job, JobKind, Planner, register
from dpcluster.sweeps.layout import SweepLayout


def plan(planner: Planner, spec: None) -> None:
    everything = sorted(planner.jobs)
    planner.add("aggregate", {"jobs": everything}, deps=tuple(everything))


def settle(job: Job, layout: SweepLayout, world_size: int) -> bool:
    from dpcluster.sweeps.aggregate import aggregate

    aggregate(layout.root, job.deps)
    return True


AGGREGATE = register(JobKind("aggregate", "summarise the sweep's results per level", plan, lambda job: "aggregate",
                             scope="sweep", settle=settle,
                             outputs_present=lambda job, layout: layout.aggregate_file.exists()))
