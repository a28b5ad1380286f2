"""``dpcluster distill``: make a distilled set (distribution or trajectory matching), cache it, and evaluate it."""

from __future__ import annotations

import argparse
import statistics

from rich.console import Console

from dpcluster.cli.names import described
from dpcluster.cli.options import add_spec_options, device_and_data, override, spec_from_options
from dpcluster.distilled.registry import FILE_SOURCE, distiller_names, get_distiller
from dpcluster.errors import UserError
from dpcluster.specs import DistilledSpec, ExperimentSpec

def expert_bar(expert: int, experts: int, epoch: int, epochs: int) -> tuple[int, int, str]:
    """(total, completed, status) of the expert-trajectory bar; ``expert`` counts from 1 (as
    ``expert_trajectories`` reports it) and ``epoch`` is the number of epochs that expert has finished."""
    return experts * epochs, (expert - 1) * epochs + epoch, f"expert {expert}/{experts}"


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("distill", help="make a distilled set here, cache it and evaluate it",
                            description="Distil a data set into a few synthetic images per class. The set is "
                                        "cached under OUT/distilled by the hash of everything that defines it; "
                                        "running the same command again resumes a stopped distillation or "
                                        "reuses the finished set.")
    add_spec_options(p)
    p.add_argument("--method", choices=distiller_names(),
                   help=f"{described(get_distiller, distiller_names())} (default: the spec's distilled.source, "
                        f"{DistilledSpec().source})")
    p.add_argument("--ipc", type=int, help="images per class")
    p.add_argument("--iterations", type=int, help="distillation iterations (the budget)")
    p.add_argument("--seed", type=int, help="distillation seed")
    p.add_argument("--checkpoint-every", type=int, default=50,
                   help="save progress (and evaluate, with --eval-every) every N iterations (default 50)")
    p.add_argument("--eval-every", type=int, default=0,
                   help="evaluate the set every N iterations while distilling (0: only at the end)")
    p.add_argument("--eval-seeds", type=int, default=1, help="networks trained per evaluation (default 1)")
    p.set_defaults(handler=handle)


def distill_spec(args: argparse.Namespace) -> ExperimentSpec:
    spec = spec_from_options(args)
    if args.method is not None:
        spec = override(spec, "distilled", "--method", source=args.method, path=None)
    elif spec.distilled.from_file:
        raise UserError(f"the spec's distilled.source is '{FILE_SOURCE}'; give "
                        f"{' or '.join(f'--method {name}' for name in distiller_names())}")
    if args.ipc is not None:
        spec = override(spec, "distilled", "--ipc", images_per_class=args.ipc)
    if args.seed is not None:
        spec = override(spec, "distilled", "--seed", seed=args.seed)
    if args.iterations is not None:
        distiller = get_distiller(spec.distilled.source)
        budget = distiller.settings_of(spec.distilled)
        if budget is None or not hasattr(budget, "iterations"):
            raise UserError(f"--iterations: distiller {distiller.name} has no iteration budget")
        spec = override(spec, "distilled", "--iterations", **{distiller.settings: _checked(
            lambda: budget.replace(iterations=args.iterations), "--iterations")})
    if args.checkpoint_every < 1 or args.eval_every < 0 or args.eval_seeds < 1:
        raise UserError("--checkpoint-every and --eval-seeds must be >= 1, --eval-every >= 0")
    return spec


def _checked(make, option):
    from dpcluster.errors import SpecError

    try:
        return make()
    except SpecError as error:
        raise UserError(f"{option}: {error.message}") from None


def handle(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from dpcluster.cli.evaluate_set import print_evaluation, save_evaluation
    from dpcluster.distilled.cache import cached_distill
    from dpcluster.distilled.evaluate import evaluate_set
    from dpcluster.sweeps.layout import SweepLayout

    console = Console()
    spec = distill_spec(args)
    device, data = device_and_data(spec, args, console)
    source = spec.distilled

    def evaluate(distilled) -> str:
        # While distilling: the set alone (the baseline does not change with the iterations).
        values = evaluate_set(distilled, data, spec.model, spec.distilled_training, args.eval_seeds, device,
                              use_learned_lr=source.use_learned_lr, baseline=False).set_accuracies
        return f"{100 * statistics.fmean(values):.1f}%" + (
            f" ± {100 * statistics.pstdev(values):.1f}" if args.eval_seeds > 1 else "")

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[status]}"), TimeElapsedColumn(), console=console)
    tasks: dict[str, int] = {}

    def bar(name: str, total: int, completed: int, status: str) -> None:
        if name not in tasks:
            tasks[name] = progress.add_task(name, total=total, status="")
        progress.update(tasks[name], total=total, completed=completed, status=status)

    def on_checkpoint(iteration, distilled) -> None:
        if args.eval_every and iteration % args.eval_every == 0:
            console.print(f"iteration {iteration}: test accuracy after training on the set {evaluate(distilled)}")

    with progress:
        distilled, folder, cached = cached_distill(
            source, data, spec.model, SweepLayout(args.out).distilled_cache, device,
            progress=lambda i, n, loss: bar(f"distilling ({source.source})", n, i, f"loss {loss:.4g}"),
            on_checkpoint=on_checkpoint, checkpoint_every=args.checkpoint_every,
            expert_progress=lambda *where: bar("expert trajectories", *expert_bar(*where)))
        # The final comparison, as dpcluster evaluate-set makes it: the set against random real subsets of its
        # size, trained the same way (the subsets with the spec's learning rate).
        evaluation = evaluate_set(distilled, data, spec.model, spec.distilled_training, args.eval_seeds, device,
                                  use_learned_lr=source.use_learned_lr,
                                  on_network=lambda done, total: bar("evaluating", total, done, ""))
    console.print(f"{'Cached' if cached else 'Distilled'} set: {folder}")
    if distilled.learned_lr is not None:
        console.print(f"learned learning rate: {distilled.learned_lr:.4g}")
    print_evaluation(console, evaluation, distilled)
    saved = save_evaluation(args.out, evaluation, distilled, str(folder), "dpcluster", spec)
    console.print(f"wrote {saved}")
    return 0
