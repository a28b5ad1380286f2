"""Rich progress for runs: one bar for the rounds of all experiments, one for the current training."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from dpcluster.methods.reporter import Reporter, Training
from dpcluster.results.records import RoundRecord
from dpcluster.training.hooks import EpochEnd, EpochHook


class RichReporter(Reporter):
    """One bar for the run's jobs (mask searches and validations), one for the current training; a line per
    round found and per level validated."""

    def __init__(self, console: Console, total_jobs: int):
        self.console = console
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console, transient=False,
        )
        self.jobs = self.progress.add_task("jobs", total=total_jobs)
        self.training = self.progress.add_task("training", total=1, visible=False)

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def start_job(self, job) -> None:
        self.progress.update(self.jobs, description=f"[bold]{job.name}[/bold]")

    def end_job(self) -> None:
        self.progress.advance(self.jobs)

    def start_experiment(self, name: str, rounds: int, done: int) -> None:
        if done:
            self.console.print(f"{name}: resuming after round {done}")

    def start_training(self, training: Training) -> EpochHook:
        self.progress.reset(self.training, total=training.epochs, description=f"  {training.label} (epochs)",
                            visible=True)

        def on_epoch(end: EpochEnd) -> None:
            self.progress.update(self.training, completed=end.epoch)

        return on_epoch

    def end_round(self, record: RoundRecord) -> None:
        accuracy = "" if record.test_accuracy is None else f", accuracy {100 * record.test_accuracy:.1f}%"
        inner = "" if record.inner_data == "none" else f", inner loop {record.inner_seconds:.1f}s ({record.inner_data})"
        self.console.print(f"{record.method} seed {record.seed} round {record.round}: "
                           f"sparsity {100 * record.sparsity:.1f}%{accuracy}{inner}")

    def end_validation(self, record: RoundRecord) -> None:
        self.console.print(f"{record.method} seed {record.seed} round {record.round}: "
                           f"sparsity {100 * record.sparsity:.1f}%, accuracy {100 * record.test_accuracy:.1f}% "
                           f"(validated in {record.validation_seconds:.1f}s)")

    def end_experiment(self, name: str) -> None:
        self.progress.update(self.training, visible=False)

    def message(self, text: str) -> None:
        self.console.print(text)


@contextmanager
def distill_progress(console: Console) -> Iterator[Callable[[int, int, float], None]]:
    """A bar for distillation; shown only once distillation actually starts (a cached set shows nothing)."""
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("loss {task.fields[loss]:.4g}"), TimeElapsedColumn(), console=console)
    task = None

    def on_iteration(iteration: int, iterations: int, loss: float) -> None:
        nonlocal task
        if task is None:
            progress.start()
            task = progress.add_task("distilling (distribution matching)", total=iterations, loss=loss)
        progress.update(task, completed=iteration, loss=loss)

    try:
        yield on_iteration
    finally:
        progress.stop()
