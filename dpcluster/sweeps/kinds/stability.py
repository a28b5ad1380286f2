"""``stability``: linear mode connectivity of a level's subnetwork — test loss and error along the straight path
between its two trained copies (BatchNorm statistics recomputed at every point), and the instability (error
barrier). The second paper's measure of whether a mask is a stable subnetwork."""

from __future__ import annotations

from dataclasses import asdict

from dpcluster.specs import ExperimentSpec
from dpcluster.sweeps.jobs import Job, JobKind, Planner, level_label, register
from dpcluster.sweeps.kinds.analysis_common import open_pair_level, pair_columns, plan_on_pairs, rows_present


def plan(planner: Planner, spec: ExperimentSpec) -> None:
    settings = planner.sweep.analysis
    plan_on_pairs(planner, spec, "stability", points=settings.points, test_examples=settings.test_examples,
                  batchnorm_examples=settings.batchnorm_examples, subset="stratified", subset_seed=settings.subset_seed)


def run(job: Job, context) -> None:
    from dpcluster.analyses.interpolation import error_barrier, interpolation_curve
    from dpcluster.data.base import measurement_subset
    from dpcluster.results.analyses import write_analysis

    level, settings = open_pair_level(job, context), job.settings
    if level is None:
        return
    data, seed = level.inputs.data, settings.subset_seed
    test = measurement_subset(data.test, settings.test_examples, seed)
    batchnorm = measurement_subset(data.train, settings.batchnorm_examples, seed)
    curve = interpolation_curve(level.model, level.pair.a, level.pair.b, level.pair.mask, settings.points, test,
                                context.device, batchnorm_data=batchnorm)
    barrier = error_barrier(curve)
    subsets = {"subset_seed": seed, "test_size": len(test), "batchnorm_size": len(batchnorm)}
    write_analysis("stability", pair_columns(job, level.pair),
                   [{**asdict(point), "instability": barrier, **subsets} for point in curve], level.path)


STABILITY = register(JobKind("stability", "linear mode connectivity of a level's two trained copies", plan, level_label,
                             run=run, analysis=True, outputs_present=rows_present, measures_pair=True))
