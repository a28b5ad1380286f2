"""``stability``: linear mode connectivity of a level's subnetwork — test loss and error along the straight path
between its two trained copies (BatchNorm statistics recomputed at every point), and the instability (error
barrier). The second paper's measure of whether a mask is a stable subnetwork."""

from __future__ import annotations

from dataclasses import asdict

from dpcluster.analyses.interpolation import error_barrier, interpolation_curve
from dpcluster.results.analyses import write_analysis
from dpcluster.specs import ExperimentSpec
from dpcluster.sweeps.jobs import Job, JobKind, Planner, register
from dpcluster.sweeps.kinds.analysis_common import build, label, level_columns, level_key, load_pair, subset, wants
from dpcluster.sweeps.kinds.mask import levels


def plan(planner: Planner, spec: ExperimentSpec) -> None:
    if not wants(planner, "stability"):
        return
    settings = planner.sweep.analysis
    for r in levels(planner, spec)[0]:
        pair = planner.find("pair", spec, r)
        planner.add("stability", level_key(spec, r, points=settings.points, test_examples=settings.test_examples,
                                           batchnorm_examples=settings.batchnorm_examples),
                    spec, r, (pair.id,), settings)


def run(job: Job, context) -> None:
    spec, layout, settings = job.experiment, context.layout, job.settings
    path = layout.analysis_file("stability", spec, job.id)
    if path.exists():
        return
    inputs = context.inputs(spec)
    pair = load_pair(layout.pair_file(spec, job.round))
    model = build(spec, inputs, context.device)
    curve = interpolation_curve(model, pair.a, pair.b, pair.mask, settings.points,
                                subset(inputs.data.test, settings.test_examples), context.device,
                                batchnorm_data=subset(inputs.data.train, settings.batchnorm_examples))
    barrier = error_barrier(curve)
    write_analysis("stability", level_columns(spec, job.round, pair.mask),
                   [{**asdict(point), "instability": barrier} for point in curve], path)


STABILITY = register(JobKind("stability", "linear mode connectivity of a level's two trained copies", plan, label,
                             run=run, analysis=True))
