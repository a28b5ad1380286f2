"""``validate``: one per experiment × validated level: train that level's subnetwork on real data and test it —
the expensive part of distilled pruning, independent across levels, so it fans out. ``dense`` has one level,
round 0, the unpruned network. A level the mask search already validated (IMP's validations are its inner
loops) is settled by the coordinator where validations run in one process: the search's record is the result,
nothing is trained again. Where they run data-parallel, every level is validated by a job of its own, so all
the levels compared in a series are trained alike."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dpcluster.specs import ExperimentSpec
from dpcluster.sweeps.jobs import Job, JobKind, Planner, level_label, register
from dpcluster.sweeps.kinds.analysis_common import analysed_levels, wants_pairs
from dpcluster.sweeps.kinds.mask import levels
from dpcluster.sweeps.layout import SweepLayout

if TYPE_CHECKING:
    from dpcluster.results.records import RoundRecord


def plan(planner: Planner, spec: ExperimentSpec) -> None:
    rounds, deps = levels(planner, spec)
    # Its settings: whether to keep the trained network, for export or for the level's pair analyses (not part
    # of the id: it changes no result).
    paired = set(analysed_levels(planner, spec)) if wants_pairs(planner) else set()
    for r in rounds:
        planner.add("validate", {"experiment": spec.experiment_id, "round": r}, spec, r, deps,
                    settings=planner.sweep.keep_trained or r in paired)


def _write(job: Job, layout: SweepLayout, record: RoundRecord) -> None:
    from dpcluster.results.levels import write_level

    write_level(record, job.experiment.set_size, layout.result_file(job.experiment, job.id), job.experiment.grid_label)


def settle(job: Job, layout: SweepLayout, world_size: int) -> bool:
    from dpcluster.results.store import rows_written

    if rows_written(layout.result_file(job.experiment, job.id)):
        return True
    if not job.round or world_size != 1:
        # The search trains in one process: its record is this level's validation only where the validations
        # of the other levels (and methods) run in one process too, so every level of a series is one procedure.
        return False
    from dpcluster.methods.engine import searched_validation

    record = searched_validation(layout.search_dir(job.experiment), job.round)
    if record is None:
        return False
    _write(job, layout, record)
    return True


def run(job: Job, context) -> None:
    from dpcluster.methods.engine import validate_round
    from dpcluster.results.store import rows_written

    spec, layout = job.experiment, context.layout
    if rows_written(layout.result_file(spec, job.id)):
        return
    # Round 0 (the dense network) has no search, but keeps its initial weights in the search's place.
    record = validate_round(spec, context.inputs(spec), layout.search_dir(spec), job.round, context.device,
                            context.reporter, distributed=context.distributed,
                            progress_dir=layout.progress_dir(job.id),
                            keep_trained=layout.trained_file(spec, job.round) if job.settings else None)
    if context.writes:
        _write(job, layout, record)
    context.reporter.end_validation(record)


def outputs_present(job: Job, layout: SweepLayout) -> bool:
    from dpcluster.results.store import rows_written

    return rows_written(layout.result_file(job.experiment, job.id))


VALIDATE = register(JobKind("validate", "train one level's subnetwork on real data and test it", plan, level_label,
                            run=run, settle=settle, data_parallel=True, outputs_present=outputs_present))
