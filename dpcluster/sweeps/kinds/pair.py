"""``pair``: two copies of a level's subnetwork trained on real data from where its validation starts, with
different data orders and augmentation draws; planned for every level a pair analysis (stability, landscape,
sharpness) measures, and kept in the sweep folder for them. Data-parallel like a validation: both copies train
on the job's processes, and the validation's network is copy a only when it trained on as many."""

from __future__ import annotations

from dpcluster.specs import ExperimentSpec
from dpcluster.sweeps.jobs import Job, JobKind, Planner, level_label, register
from dpcluster.sweeps.kinds.analysis_common import analysed_levels, level_key, wants_pairs


def plan(planner: Planner, spec: ExperimentSpec) -> None:
    if not wants_pairs(planner):
        return
    for r in analysed_levels(planner, spec):
        # After the level's validation, whose trained network is copy a when it kept it.
        planner.add("pair", level_key(spec, r), spec, r, (planner.find("validate", spec, r).id,),
                    settings=planner.sweep.keep_trained)


def run(job: Job, context) -> None:
    from dpcluster.atomic import torch_save_atomic
    from dpcluster.methods.engine import KeptTraining, train_pair
    from dpcluster.pruning.masks import pack_mask

    spec, layout = job.experiment, context.layout
    path = layout.pair_file(spec, job.round)
    if path.exists():
        return
    validated = layout.trained_file(spec, job.round)
    pair = train_pair(spec, context.inputs(spec), layout.search_dir(spec), job.round, context.device,
                      context.reporter,
                      progress_dir=layout.progress_dir(job.id),
                      validated=KeptTraining.load(validated) if validated.exists() else None,
                      distributed=context.distributed)
    if context.writes:
        torch_save_atomic({"mask": pack_mask(pair.mask), "a": pair.a, "b": pair.b, "world_size": pair.world_size},
                          path)
        if not job.settings:  # the sweep keeps no trained networks: this one is now in the pair file
            validated.unlink(missing_ok=True)


PAIR = register(JobKind("pair", "train two copies of a level's subnetwork with different data orders", plan,
                        level_label, run=run, intermediate=True, data_parallel=True,
                        outputs_present=lambda job, layout: layout.pair_file(job.experiment, job.round).exists()))
