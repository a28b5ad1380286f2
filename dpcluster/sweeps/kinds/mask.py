"""``mask``: the sequential pruning rounds of one experiment (method × seed × data × model), checkpointed per
round, keeping every round's mask and the rewind state so each level is validated by a job of its own. Rounds
whose validation is the next round's inner loop anyway (IMP) are validated here at no extra cost."""

from __future__ import annotations

from dpcluster.methods.registry import get_method
from dpcluster.specs import ExperimentSpec
from dpcluster.sweeps.jobs import Job, JobKind, Planner, experiment_label, register


def plan(planner: Planner, spec: ExperimentSpec) -> None:
    if get_method(spec.method).prunes:
        # Its settings: the levels whose trained networks it keeps where it trains them (IMP's validations are its
        # inner loops), when the sweep keeps trained networks; not part of the id: they change no result.
        kept = planner.sweep.rounds() if planner.sweep.keep_trained else ()
        planner.add("mask", {"experiment": spec.experiment_id}, spec, deps=planner.deps_of(spec, "distill"),
                    settings=kept)


def run(job: Job, context) -> None:
    from dpcluster.methods.engine import run_experiment
    from dpcluster.methods.run_files import RESULTS_FILE

    spec = job.experiment
    if not outputs_present(job, context.layout):
        # A finished search whose masks are gone (its records alone would make the engine skip it) is searched
        # again: the masks come out the same.
        (context.layout.search_dir(spec) / RESULTS_FILE).unlink(missing_ok=True)
    run_experiment(spec, context.inputs(spec), context.layout.search_dir(spec), context.device, context.reporter,
                   keep_masks=True, validate=False, keep_trained=tuple(job.settings or ()))


def outputs_present(job: Job, layout) -> bool:
    """The finished search's records and every round's mask, which its levels' validations start from."""
    from dpcluster.methods.run_files import RESULTS_FILE, mask_path

    search = layout.search_dir(job.experiment)
    rounds = job.experiment.pruning.num_rounds
    return (search / RESULTS_FILE).exists() and all(mask_path(search, r).exists() for r in range(1, rounds + 1))


MASK = register(JobKind("mask", "find the masks: every pruning round of one method and seed", plan, experiment_label,
                        run=run, outputs_present=outputs_present, intermediate=True))


def levels(planner: Planner, spec: ExperimentSpec) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """The experiment's levels (the sweep's validated rounds; round 0 alone for a method that does not prune) and
    the jobs their masks come from."""
    mask = planner.find("mask", spec)
    if mask is None:
        return (0,), planner.deps_of(spec, "distill")
    return planner.sweep.rounds(), (mask.id,)
