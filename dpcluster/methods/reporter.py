"""What the engine tells the outside world while it works; the CLI shows it with rich, tests ignore it."""

from __future__ import annotations

from collections.abc import Callable

from dpcluster.results.records import RoundRecord


class Reporter:
    """Shows no progress (subclasses do); messages are printed."""

    def start_experiment(self, name: str, rounds: int, done: int) -> None:
        pass

    def start_training(self, label: str, epochs: int) -> Callable[[int, int], None] | None:
        return None

    def end_round(self, record: RoundRecord) -> None:
        pass

    def end_experiment(self, name: str) -> None:
        pass

    def end_validation(self, record: RoundRecord) -> None:
        """A level validated on its own (a sweep's validation job)."""

    def message(self, text: str) -> None:
        """A line worth keeping (a job's log has it): printed."""
        print(text, flush=True)
