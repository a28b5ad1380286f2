"""What a trial measures, one registered objective per module-level function: each runs the project's own engine
on the trial's experiment and reports its metric as it goes (``report(metrics)``), so ASHA can stop a poor trial
early. A trial's last report carries ``final = True``: the best trial is chosen among trials that got there, so a
trial stopped at an early, easier point (fewer epochs, a lower sparsity) never wins on that. A new objective is
one more ``register`` call."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dpcluster.errors import SpecError
from dpcluster.methods.reporter import Reporter, Reporters
from dpcluster.registry import Registry

if TYPE_CHECKING:
    from dpcluster.results.records import RoundRecord
    from dpcluster.specs import ExperimentSpec
    from dpcluster.sweeps.context import JobContext
    from dpcluster.tune.spec import SearchSpec

# The key of the report that ends a trial which ran to its end.
FINAL = "final"


@dataclass(frozen=True)
class Option:
    """A setting of an objective under ``[objective]``: a number the spec must give."""

    name: str
    summary: str


@dataclass(frozen=True)
class Objective:
    name: str
    summary: str
    metric: str
    # Runs a trial: (experiment, search spec, context, report) -> None; reports ``metric`` at least once.
    run: Callable[[ExperimentSpec, SearchSpec, JobContext, Callable[[dict], None]], None]
    # How many times a trial reports at most (ASHA's max_t).
    reports: Callable[[SearchSpec], int]
    # Checks the search spec for this objective (the method it needs); raises SpecError.
    check: Callable[[SearchSpec], None] = lambda spec: None
    options: tuple[Option, ...] = ()
    # The columns a trial's reports keep in the trials' Parquet files, besides the metric.
    columns: tuple[str, ...] = ()
    # Whether a higher or a lower metric is better, unless the search spec says otherwise.
    mode: str = "max"
    # Why no trial may have a finite metric, said when none has.
    why_none: str = ""

    def settings(self, given: dict[str, Any]) -> dict[str, float]:
        """``given`` (the ``[objective]`` table less kind and mode) checked against the options; raises SpecError."""
        known = {option.name for option in self.options}
        for key in given:
            if key not in known:
                raise SpecError(f"objective.{key}", f"unknown key for {self.name} (known: "
                                                    f"{', '.join(['kind', 'mode', *sorted(known)])})")
        settings = {}
        for option in self.options:
            value = given.get(option.name)
            if value is None:
                raise SpecError(f"objective.{option.name}", f"{self.name} needs it: {option.summary}")
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise SpecError(f"objective.{option.name}", f"expected a number, got {value!r}")
            settings[option.name] = value
        return settings


OBJECTIVES: Registry[Objective] = Registry("objective", lambda: None)
register = OBJECTIVES.register
get_objective = OBJECTIVES.get
objective_names = OBJECTIVES.names


# Inputs with a validation split held out of the training split, by (data, device, fraction, seed): a worker's
# trials share them as they share the inputs themselves.
_SCORED: dict = {}


def scored_inputs(spec, search, context):
    """The experiment's inputs as a trial sees them: trained on the training split less ``search.validation``
    of it, and scored on that held-out part (``validation = 0``: the whole training split, scored on the test
    split). A distilled set is the one the whole training split gives (as published sets are)."""
    import dataclasses

    from dpcluster.data.base import split_off

    inputs = context.inputs(spec)
    if not search.validation:
        return inputs
    key = (spec.data, str(context.device), search.validation, search.seed)
    if key not in _SCORED:
        _SCORED.clear()  # one data set at a time: a worker runs one search
        rest, held = split_off(inputs.data.train, search.validation, search.seed)
        _SCORED[key] = dataclasses.replace(inputs.data, train=rest, test=held)
    return dataclasses.replace(inputs, data=_SCORED[key])


def better(value: float | None, than: float | None, mode: str) -> bool:
    """Whether ``value`` beats ``than`` (None: nothing yet) in ``mode``; a missing or NaN value never does."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    return than is None or (value > than if mode == "max" else value < than)


# --- distilled_accuracy and real_accuracy: one training of the unpruned network ----------------------------------
class _TestingReporter(Reporter):
    """Tests the network being trained every few epochs and reports its accuracy."""

    def __init__(self, every: int, report: Callable[[dict], None]):
        self.every, self.report, self.experiment = every, report, None

    def start_training(self, training):
        from dpcluster.training import evaluate

        def on_epoch(end) -> None:
            if end.epoch % self.every == 0 or end.epoch == end.epochs:
                experiment = self.experiment
                accuracy, loss = evaluate(experiment.model, experiment.inputs.data.test, device=experiment.device)
                self.report({"accuracy": accuracy, "loss": loss, "epoch": end.epoch, FINAL: end.epoch == end.epochs})

        return on_epoch

    def message(self, text: str) -> None:
        pass


def _one_training(training: str, train: Callable, method: str | None = None) -> Callable:
    """A trial that trains the unpruned network once with the settings ``training`` (a TrainingSpec field of the
    experiment) by ``train(experiment, mask)``, testing it as it goes; ``method`` replaces the experiment's."""

    def run(spec, search, context, report) -> None:
        from dpcluster.methods.engine import Experiment
        from dpcluster.pruning.masks import full_mask

        spec = spec.replace(method=method or spec.method)
        reporter = _TestingReporter(max(1, getattr(spec, training).epochs // search.reports), report)
        experiment = Experiment(spec, scored_inputs(spec, search, context), context.device,
                                Reporters(reporter, context.reporter))  # the trackers follow the trial too
        reporter.experiment = experiment
        train(experiment, full_mask(experiment.weights))

    return run


def _train_distilled(experiment, mask) -> None:
    experiment.train_distilled(mask, "trial")


def _train_real(experiment, mask) -> None:
    experiment.train_real(mask, from_rewind=False, label="trial")


def _most(search, keys: tuple[str, ...], measure: Callable[[ExperimentSpec], int]) -> int:
    """The largest ``measure`` of a trial's experiment, over every combination of the values (ends of ranges)
    the searched fields among ``keys`` can take."""
    import itertools

    dimensions = [d for d in search.space if d.key in keys]
    most = measure(search.base)
    for values in itertools.product(*(d.values for d in dimensions)):
        try:
            spec = search.configured({d.key: v for d, v in zip(dimensions, values)})
        except SpecError:  # a combination no trial can have
            continue
        most = max(most, measure(spec))
    return most


def _training_reports(training: str) -> Callable:
    def reports(search) -> int:
        # A training whose epochs the reports do not divide reports once more, at its end.
        return _most(search, (f"{training}.epochs",),
                     lambda spec: min(search.reports, getattr(spec, training).epochs)) + 1

    return reports


def _check_distilled(search) -> None:
    if not search.base.uses_distilled_set:
        raise SpecError("base.method", "the distilled_accuracy objective trains on a distilled set: use a method "
                                       f"that has one (distilled, hybrid), got {search.base.method!r}")


register(Objective("distilled_accuracy", "accuracy after one distilled training session", "accuracy",
                   _one_training("distilled_training", _train_distilled), _training_reports("distilled_training"),
                   check=_check_distilled, columns=("loss", "epoch")))
register(Objective("real_accuracy", "accuracy after one real-data training of the unpruned network", "accuracy",
                   # As dense trains; the experiment's method and its distilled set play no part.
                   _one_training("training", _train_real, method="dense"), _training_reports("training"),
                   columns=("loss", "epoch")))


# --- pruned_accuracy and time_to_mask: k rounds of the method, each round's subnetwork trained on real data -----
ROUND_COLUMNS = ("loss", "round", "sparsity", "mask_search_seconds", "time_to_mask_seconds",
                 "time_to_mask_examples")


class _RoundReporter(Reporter):
    """Reports each round's validated subnetwork: a report per round, the last one final."""

    def __init__(self, rounds: int, report: Callable[[dict], None], metrics: Callable[[RoundRecord], dict]):
        self.rounds, self.report, self.metrics = rounds, report, metrics

    def end_round(self, record: RoundRecord) -> None:
        self.report({"accuracy": record.test_accuracy, "loss": record.test_loss, "round": record.round,
                     "sparsity": record.sparsity, "mask_search_seconds": record.mask_search_seconds,
                     "time_to_mask_seconds": record.time_to_mask_seconds,
                     "time_to_mask_examples": record.time_to_mask_examples,
                     FINAL: record.round == self.rounds, **self.metrics(record)})

    def message(self, text: str) -> None:
        pass


def _prune(spec, search, context, report, metrics: Callable[[RoundRecord], dict] = lambda record: {}) -> None:
    """``pruning.num_rounds`` rounds of the experiment's method, every round's subnetwork validated (trained on
    real data as the method validates it, and tested), reported as it ends."""
    from dpcluster.methods.checkpoint import Checkpoint
    from dpcluster.methods.engine import Experiment
    from dpcluster.pruning.masks import full_mask

    inputs = scored_inputs(spec, search, context)
    experiment = Experiment(spec, inputs, context.device,
                            Reporters(_RoundReporter(spec.pruning.num_rounds, report, metrics), context.reporter))
    checkpoint = Checkpoint(spec.experiment_id, 0, full_mask(experiment.weights))
    while checkpoint.round < spec.pruning.num_rounds:
        experiment.run_round(checkpoint, validate=True)


def _check_prunes(search) -> None:
    from dpcluster.methods.registry import get_method

    if not get_method(search.base.method).prunes:
        raise SpecError("base.method", f"the {search.objective} objective prunes: use a pruning method "
                                       f"(imp, distilled, hybrid, random), got {search.base.method!r}")


def _max_rounds(search) -> int:
    return _most(search, ("pruning.rounds", "pruning.target_sparsity", "pruning.rate"),
                 lambda spec: spec.pruning.num_rounds)


register(Objective("pruned_accuracy", "accuracy of the subnetwork after pruning.num_rounds rounds (trained "
                                      "on real data), reported every round", "accuracy",
                   _prune, _max_rounds, check=_check_prunes, columns=ROUND_COLUMNS))


def _time_to_mask(spec, search, context, report) -> None:
    target = search.settings["accuracy"]

    def metrics(record: RoundRecord) -> dict:
        # A mask short of the target accuracy was not found at all: it can never be the fastest.
        reached = record.test_accuracy >= target  # on the split the search scores on
        return {"time_to_mask": record.time_to_mask_seconds if reached else math.inf}

    _prune(spec, search, context, report, metrics)


register(Objective("time_to_mask", "seconds to find the mask of pruning.num_rounds rounds and train it (the "
                                   "record's time_to_mask_seconds), infinite where its accuracy is below "
                                   "`accuracy`; reported every round", "time_to_mask",
                   _time_to_mask, _max_rounds, check=_check_prunes,
                   options=(Option("accuracy", "the accuracy a mask's subnetwork must reach, e.g. accuracy = 0.9"),),
                   columns=("accuracy", *ROUND_COLUMNS), mode="min",
                   why_none=" (none reached the accuracy asked for)"))
