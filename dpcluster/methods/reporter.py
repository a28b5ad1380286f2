"""What the engine tells the outside world while it works: hooks the CLI's progress display, Ray Tune's reports
and the trackers implement (each a :class:`Reporter`), one or several at once (:class:`Reporters`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from dpcluster.results.records import RoundRecord
from dpcluster.training.hooks import EpochHook, every

if TYPE_CHECKING:
    from dpcluster.specs import ExperimentSpec


@dataclass(frozen=True)
class Training:
    """A training the engine starts: of ``experiment``'s level ``round`` (0: the dense network), what it is
    (``label``: "round 3: distilled inner loop"), and how many epochs."""

    experiment: "ExperimentSpec"
    round: int
    label: str
    epochs: int

    @property
    def phase(self) -> str:
        """The label without its round: "distilled inner loop", "validation", "dense"."""
        return self.label.partition(": ")[2] or self.label


class Reporter:
    """Follows nothing (the hooks are implemented by whoever wants them); messages are printed."""

    def start_experiment(self, name: str, rounds: int, done: int) -> None:
        pass

    def start_training(self, training: Training) -> EpochHook | None:
        """Called as a training starts; the hook it returns is called after each of its epochs."""
        return None

    def end_round(self, record: RoundRecord) -> None:
        pass

    def end_experiment(self, name: str) -> None:
        pass

    def end_validation(self, record: RoundRecord) -> None:
        """A level validated on its own (a sweep's validation job)."""

    def distilling(self, name: str, iteration: int, iterations: int, loss: float) -> None:
        """A distillation's progress: set ``name`` after ``iteration`` of ``iterations``."""

    def message(self, text: str) -> None:
        """A line worth keeping (a job's log has it): printed."""
        print(text, flush=True)


class Reporters(Reporter):
    """Several reporters as one: every hook is each one's, in order; a message is printed once."""

    def __init__(self, *reporters: Reporter):
        self.reporters = reporters

    def start_experiment(self, name: str, rounds: int, done: int) -> None:
        for reporter in self.reporters:
            reporter.start_experiment(name, rounds, done)

    def start_training(self, training: Training) -> EpochHook | None:
        return every(*(reporter.start_training(training) for reporter in self.reporters))

    def end_round(self, record: RoundRecord) -> None:
        for reporter in self.reporters:
            reporter.end_round(record)

    def end_experiment(self, name: str) -> None:
        for reporter in self.reporters:
            reporter.end_experiment(name)

    def end_validation(self, record: RoundRecord) -> None:
        for reporter in self.reporters:
            reporter.end_validation(record)

    def distilling(self, name: str, iteration: int, iterations: int, loss: float) -> None:
        for reporter in self.reporters:
            reporter.distilling(name, iteration, iterations, loss)

    def message(self, text: str) -> None:
        (self.reporters[0] if self.reporters else Reporter()).message(text)
