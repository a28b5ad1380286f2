"""``kept_weights``: per layer, histograms of the initial values of the weights a level's mask keeps and prunes
(the first paper's appendix figure); per-layer sparsity follows from the counts. No training: cheap."""

from __future__ import annotations

from dataclasses import asdict

from dpcluster.specs import ExperimentSpec
from dpcluster.sweeps.jobs import Job, JobKind, Planner, level_label, register
from dpcluster.sweeps.kinds.analysis_common import analysed_levels, level_columns, level_key, rows_present, wants
from dpcluster.sweeps.kinds.mask import levels


def plan(planner: Planner, spec: ExperimentSpec) -> None:
    if not wants(planner, "kept_weights"):
        return
    deps = levels(planner, spec)[1]
    for r in analysed_levels(planner, spec):
        planner.add("kept_weights", level_key(spec, r, bins=planner.sweep.analysis.histogram_bins), spec, r, deps,
                    planner.sweep.analysis)


def run(job: Job, context) -> None:
    from dpcluster.analyses.kept_weights import kept_weight_histograms
    from dpcluster.methods.engine import level_mask
    from dpcluster.results.analyses import write_analysis
    from dpcluster.results.store import rows_written

    spec, layout = job.experiment, context.layout
    path = layout.analysis_file("kept_weights", spec, job.id)
    if rows_written(path):
        return
    search = layout.search_dir(spec)
    mask, initial = level_mask(spec, context.inputs(spec), search, job.round)
    bins = kept_weight_histograms(initial, mask, job.settings.histogram_bins)
    write_analysis("kept_weights", level_columns(spec, job.round, mask), [asdict(b) for b in bins], path)


KEPT_WEIGHTS = register(JobKind("kept_weights", "initial values each level's mask keeps, per layer", plan, level_label,
                                run=run, analysis=True, outputs_present=rows_present))
