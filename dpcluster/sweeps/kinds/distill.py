"""``distill``: one distilled set per data set × model × set settings, shared by every experiment (seed, method)
that trains on it, as in the papers. Sets read from files need no job."""

from __future__ import annotations

from dpcluster.specs import ExperimentSpec
from dpcluster.sweeps.jobs import Job, JobKind, Planner, name_part, register


def plan(planner: Planner, spec: ExperimentSpec) -> None:
    if spec.uses_distilled_set and spec.distilled.source != "file":
        planner.add("distill", {"distilled": spec.distilled.identity_dict(), "data": spec.data.identity_dict(),
                                "model": spec.model.identity_dict()}, spec)


def set_name(spec: ExperimentSpec) -> str:
    """The set's name, ``distill-<source>-<data>-<model>-ipc<k>``: its job's, and its run's in the trackers."""
    return (f"distill-{spec.distilled.source}-{spec.data.partition_name}-{name_part(spec.model.name)}"
            f"-ipc{spec.distilled.images_per_class}")


def label(job: Job) -> str:
    return set_name(job.experiment)


def run(job: Job, context) -> None:
    context.inputs(job.experiment)  # distils into the sweep's cache, or finds the set there


DISTILL = register(JobKind("distill", "distil a synthetic set (cached by content, shared across seeds)", plan, label,
                           run=run))
