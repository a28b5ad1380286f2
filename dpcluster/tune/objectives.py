"""What a trial measures, one registered objective per module-level function: each runs the project's own engine
on the trial's experiment and reports its metric as it goes (``report(metrics)``), so ASHA can stop a poor trial
early. A new objective is one more ``register`` call."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dpcluster.errors import SpecError
from dpcluster.methods.reporter import Reporter
from dpcluster.registry import Registry

if TYPE_CHECKING:
    from dpcluster.specs import ExperimentSpec
    from dpcluster.sweeps.context import JobContext
    from dpcluster.tune.spec import SearchSpec


@dataclass(frozen=True)
class Objective:
    name: str
    summary: str
    metric: str
    # Runs a trial: (experiment, search spec, context, report) -> None; reports ``metric`` at least once.
    run: Callable[[ExperimentSpec, SearchSpec, JobContext, Callable[[dict], None]], None]
    # Checks the search spec for this objective (the options it needs); raises SpecError.
    check: Callable[[SearchSpec], None] = lambda spec: None
    # How many times a trial reports at most (ASHA's max_t).
    reports: Callable[[SearchSpec], int] = lambda spec: spec.reports


OBJECTIVES: Registry[Objective] = Registry("objective", lambda: None)
register = OBJECTIVES.register
get_objective = OBJECTIVES.get
objective_names = OBJECTIVES.names


class _TestingReporter(Reporter):
    """Tests the network being trained every few epochs and reports its accuracy."""

    def __init__(self, every: int, report: Callable[[dict], None]):
        self.every, self.report, self.experiment = every, report, None

    def start_training(self, label: str, epochs: int):
        from dpcluster.training import evaluate

        def on_epoch(epoch: int, total: int) -> None:
            if epoch % self.every == 0 or epoch == total:
                experiment = self.experiment
                accuracy, loss = evaluate(experiment.model, experiment.inputs.data.test, device=experiment.device)
                self.report({"test_accuracy": accuracy, "test_loss": loss, "epoch": epoch})

        return on_epoch

    def message(self, text: str) -> None:
        pass


def _distilled_accuracy(spec, search, context, report) -> None:
    """One distilled training session of the unpruned network (the inner loop's settings), tested on real data."""
    from dpcluster.methods.engine import Experiment
    from dpcluster.pruning.masks import full_mask

    epochs = spec.distilled_training.epochs
    reporter = _TestingReporter(max(1, epochs // search.reports), report)
    experiment = Experiment(spec, context.inputs(spec), context.device, reporter)
    reporter.experiment = experiment
    experiment.train_distilled(full_mask(experiment.weights), "trial")


def _check_distilled(search) -> None:
    if not search.base.uses_distilled_set:
        raise SpecError("base.method", "the distilled_accuracy objective trains on a distilled set: use a method "
                                       f"that has one (distilled, hybrid), got {search.base.method!r}")


def _max_reports(search) -> int:
    epochs = [search.base.distilled_training.epochs] + [
        int(v) for d in search.space if d.key == "distilled_training.epochs" for v in d.values]
    # A training whose epochs the reports do not divide reports once more, at its end.
    return max(min(search.reports, e) for e in epochs) + 1


register(Objective("distilled_accuracy", "test accuracy after one distilled training session", "test_accuracy",
                   _distilled_accuracy, _check_distilled, _max_reports))
