"""Job kinds: what a sweep is made of, as data the planner and the coordinator read. A new kind (an analysis per
level, a Tune trial) is one module in ``dpcluster/sweeps/kinds/`` that calls :func:`register`; nothing else names
kinds.

A kind says which jobs an experiment (or the whole sweep) needs and what each depends on (``plan``), how a job
is named in logs, what running it does wherever a backend runs it (``run``), and whether the coordinator can
finish it itself without sending it anywhere (``settle``: bookkeeping such as copying a record, or aggregating).
Job ids are content hashes of what the job computes, so the same job planned by another spec is the same job.
"""

from __future__ import annotations

import re

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dpcluster.hashing import stable_hash
from dpcluster.registry import Registry
from dpcluster.specs import ExperimentSpec

if TYPE_CHECKING:
    from dpcluster.sweeps.context import JobContext
    from dpcluster.sweeps.layout import SweepLayout
    from dpcluster.sweeps.spec import SweepSpec

SCOPES = ("experiment", "sweep")


@dataclass(frozen=True)
class Job:
    kind: str
    id: str
    # The experiment this job belongs to (None for sweep-wide jobs); for a shared job (a distilled set), the
    # first experiment that needs it.
    experiment: ExperimentSpec | None
    round: int | None = None
    deps: tuple[str, ...] = field(default=())
    # Settings of the kind beyond the experiment (an analysis's AnalysisSpec), as planned.
    settings: object | None = None

    @property
    def name(self) -> str:
        return get_kind(self.kind).label(self)


def experiment_label(job: Job) -> str:
    """``<kind>-<method>[-ipc<N>][-<rewind>]-s<seed>-<data>-<model>``: a job of one experiment, in logs and status
    tables; the set size and rewind point appear for the methods they change, so a sweep over several keeps
    every job's log apart."""
    spec = job.experiment
    variant = (f"-ipc{spec.set_size}" if spec.set_size else "") + \
        (f"-{spec.rewind_point_used}" if spec.rewind_point_used else "")
    grid = "".join(f"-{key}{_label_value(value)}" for key, value in (spec.grid or ()))
    return (f"{job.kind}-{spec.method}{variant}-s{spec.seed}-{spec.data.partition_name}-{name_part(spec.model.name)}"
            f"{grid}")


def _label_value(value) -> str:
    # A grid value as part of a file's name: letters, digits, '.', '_' and '-' only.
    text = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
    return re.sub(r"[^\w.-]", "_", text)


def name_part(name: str) -> str:
    """A network's or data set's name as part of a job's name (a log file's, a Slurm job's): a user's
    ``package.module:function`` with its colon as a dash."""
    return name.replace(":", "-")


def level_label(job: Job) -> str:
    """``experiment_label`` with ``-r<round>``: a job of one level."""
    return f"{experiment_label(job)}-r{job.round}"


@dataclass(frozen=True)
class JobKind:
    name: str
    # One line for help texts and the README.
    summary: str
    # Adds this kind's jobs for one experiment ("experiment" scope, called with each experiment in turn) or once
    # for the whole sweep after every experiment's jobs ("sweep" scope, called with None).
    plan: Callable[[Planner, ExperimentSpec | None], None]
    # The job's name in logs and status tables.
    label: Callable[[Job], str]
    scope: str = "experiment"
    # Runs the job where a backend put it (this process, a Slurm job, a Ray task). None: it is only ever settled
    # (by the coordinator, or where a scheduler that holds the graph starts it).
    run: Callable[[Job, JobContext], None] | None = None
    # Finishes the job without training once its dependencies are done, when it can (in the coordinator, or first
    # thing where a backend started it); returns whether it did. Called with the number of processes the job
    # runs on (or would, where the coordinator settles it): a result trained on another number is not its own.
    settle: Callable[[Job, SweepLayout, int], bool] = lambda job, layout, world_size: False
    # Whether a job of this kind started on several processes trains data-parallel across them (otherwise the
    # first process does the work alone).
    data_parallel: bool = False
    # Whether a sweep asks for it by name in ``analyses`` (otherwise it is planned whenever it applies).
    analysis: bool = False
    # Whether a job that is done still has its outputs, asked of every done job at the start of a run (a result
    # deleted, a scratch file system wiped: the job runs again). An intermediate kind's outputs (a mask search's
    # masks, a level's pair) are only needed while a job after it still has to run.
    outputs_present: Callable[[Job, SweepLayout], bool] = lambda job, layout: True
    intermediate: bool = False
    # Whether it measures a level's trained pair (two copies trained with different data orders): asking for it
    # plans the level's ``pair`` job, and the level's validation keeps its network as copy a.
    measures_pair: bool = False

    def __post_init__(self):
        if self.scope not in SCOPES:
            raise ValueError(f"job kind {self.name}: scope must be one of {SCOPES}, got {self.scope!r}")


def _load_all() -> None:
    # The kind modules register themselves on import, in this order, which is the order kinds are planned in.
    from dpcluster.sweeps.kinds import distill, mask, validate  # noqa: F401, I001
    from dpcluster.sweeps.kinds import pair, stability, landscape, sharpness, kept_weights  # noqa: F401, I001
    from dpcluster.sweeps.kinds import aggregate  # noqa: F401, I001


KINDS: Registry[JobKind] = Registry("job kind", _load_all)
register = KINDS.register
get_kind = KINDS.get
# Every kind, in planning (dependency) order.
kind_names = KINDS.names


class Planner:
    """Collects a sweep's jobs as the kinds plan them; a job planned twice (a distilled set shared by seeds) is
    kept once."""

    def __init__(self, sweep: SweepSpec):
        self.sweep = sweep
        self.jobs: dict[str, Job] = {}
        self._by_experiment: dict[tuple[str, str, int | None], Job] = {}

    def add(self, kind: str, key: dict, experiment: ExperimentSpec | None = None, round_index: int | None = None,
            deps: tuple[str, ...] = (), settings: object | None = None) -> Job:
        """The job of ``kind`` that computes what ``key`` describes (its id is their hash; ``key`` must hold every
        setting that changes the job's outputs)."""
        job_id = f"{kind}-{stable_hash({'kind': kind, **key}, 12)}"
        job = self.jobs.setdefault(job_id, Job(kind, job_id, experiment, round_index, tuple(deps), settings))
        if experiment is not None:
            self._by_experiment[(kind, experiment.experiment_id, round_index)] = job
        return job

    def find(self, kind: str, experiment: ExperimentSpec, round_index: int | None = None) -> Job | None:
        """The job of ``kind`` planned for ``experiment`` (and round), if any."""
        return self._by_experiment.get((kind, experiment.experiment_id, round_index))

    def deps_of(self, experiment: ExperimentSpec, *kinds: str) -> tuple[str, ...]:
        """The ids of the jobs of ``kinds`` planned for ``experiment``."""
        return tuple(job.id for kind in kinds if (job := self.find(kind, experiment)) is not None)
