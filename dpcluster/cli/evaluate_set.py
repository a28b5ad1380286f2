"""``dpcluster evaluate-set``: how good a distilled set is on its own, against random real subsets of its size.

Reads a set in any registered format, trains several fresh networks on it and as many on random real subsets
(``dpcluster.distilled.evaluate``), prints mean ± std and writes one Parquet file under OUT/set_evaluations,
which ``dpcluster report OUT`` shows. ``dpcluster distill`` reports its final comparison through the same code."""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from dpcluster.cli.names import described
from dpcluster.cli.options import add_spec_options, device_and_data, override, spec_from_options
from dpcluster.distilled.registry import FILE_SOURCE, LABEL_READINGS, format_names, get_format
from dpcluster.errors import SpecError, UserError
from dpcluster.specs import ExperimentSpec

if TYPE_CHECKING:
    from dpcluster.distilled.evaluate import SetEvaluation
    from dpcluster.distilled.format import DistilledSet

DEFAULT_NETWORKS = 5


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("evaluate-set", help="train fresh networks on a distilled set and compare it with "
                                                 "random real subsets of its size",
                            description="Evaluate a distilled set as DC-BENCH does: several fresh networks "
                                        "trained on it (its augmentation and learned learning rate, the spec's "
                                        "distilled_training schedule), tested on real data, against random real "
                                        "subsets of the same size trained the same way. Writes "
                                        "OUT/set_evaluations/<id>.parquet, which dpcluster report OUT shows.")
    p.add_argument("path", help="the set: a file or folder in --format")
    add_spec_options(p)
    p.add_argument("--format", choices=format_names(),
                   help=f"{described(get_format, format_names())} (default: the spec's distilled.format)")
    p.add_argument("--normalization", help="the space the images are stored in: upstream (the format's own "
                                           "constants), data, pixels, or MEAN,.../STD,...")
    p.add_argument("--labels", choices=LABEL_READINGS, help="how float labels are read (default auto)")
    p.add_argument("--entry", type=int, help="which set of a file holding several (DC's res_*.pt)")
    p.add_argument("--zca", action="store_true",
                   help="the set is ZCA-whitened (needs data.zca whitening the same way: true for MTT's sets, "
                        "\"frepo\" or \"kip\" for .npz ones)")
    p.add_argument("--networks", type=int, default=DEFAULT_NETWORKS,
                   help=f"networks trained on the set, and as many on random subsets (default {DEFAULT_NETWORKS})")
    p.add_argument("--epochs", type=int, help="training epochs (default: the spec's distilled_training.epochs)")
    p.add_argument("--lr", type=float, help="learning rate of the random subsets, and of the set where it carries "
                                            "none (default: the spec's distilled_training.lr)")
    p.set_defaults(handler=handle)


def evaluate_set_spec(args: argparse.Namespace) -> ExperimentSpec:
    spec = spec_from_options(args)
    reading = {key: value for key, value in (("format", args.format), ("normalization", args.normalization),
                                             ("labels", args.labels), ("entry", args.entry)) if value is not None}
    try:
        spec = spec.replace(distilled=spec.distilled.replace(
            source=FILE_SOURCE, path=args.path, zca=args.zca or spec.distilled.zca, **reading))
    except SpecError as error:
        # Named by the option that set it (the spec's own value otherwise).
        raise UserError(f"--{error.key}: {error.message}" if error.key in reading or error.key == "zca"
                        else f"distilled.{error.key}: {error.message}") from None
    if args.epochs is not None or args.lr is not None:
        changes = {key: value for key, value in (("epochs", args.epochs), ("lr", args.lr)) if value is not None}
        spec = override(spec, "distilled_training", "--epochs" if args.epochs is not None else "--lr", **changes)
    if args.networks < 1:
        raise UserError(f"--networks: must be >= 1, got {args.networks}")
    return spec


def print_evaluation(console: Console, evaluation: "SetEvaluation", distilled: "DistilledSet") -> None:
    table = Table(title=f"{distilled.images_per_class} images per class, {len(evaluation.set_accuracies)} networks "
                        f"of {evaluation.training.epochs} epochs, augmentation {evaluation.training.augmentation}")
    for name in ("trained on", "test accuracy %", "lr"):
        table.add_column(name, justify="left" if name == "trained on" else "right")

    def cell(values: tuple[float, ...]) -> str:
        mean = f"{100 * statistics.fmean(values):.1f}"
        return mean + (f" ± {100 * statistics.pstdev(values):.1f}" if len(values) > 1 else "")

    table.add_row(f"the set ({distilled.label_kind} labels)", cell(evaluation.set_accuracies),
                  f"{evaluation.set_lr:.4g}")
    if evaluation.subset_accuracies:
        table.add_row("random real subsets", cell(evaluation.subset_accuracies), f"{evaluation.subset_lr:.4g}")
    console.print(table)


def save_evaluation(out: Path, evaluation: "SetEvaluation", distilled: "DistilledSet", where: str, format: str,
                    spec: ExperimentSpec) -> Path:
    """The evaluation's rows in OUT/set_evaluations, its id the hash of the set's content and what it trained."""
    from dpcluster.distilled.evaluate import set_digest
    from dpcluster.hashing import stable_hash
    from dpcluster.results.set_evaluations import SET, SUBSET, write_evaluation
    from dpcluster.sweeps.layout import SweepLayout

    digest = set_digest(distilled)
    evaluation_id = "set-" + stable_hash({"set": digest, "data": spec.data.identity_dict(),
                                          "model": spec.model.identity_dict(),
                                          "training": evaluation.training.identity_dict(),
                                          "lr": evaluation.set_lr,  # the subsets': the training's
                                          "networks": len(evaluation.set_accuracies),
                                          "baseline": bool(evaluation.subset_accuracies)}, 12)
    common = {"set": where, "format": format, "set_digest": digest, "dataset": spec.data.partition_name,
              "model": spec.model.name, "images_per_class": distilled.images_per_class,
              "labels": distilled.label_kind, "epochs": evaluation.training.epochs,
              "augmentation": evaluation.training.augmentation, "seconds": evaluation.seconds}
    rows = [{**common, "kind": SET, "network": k, "test_accuracy": a, "lr": evaluation.set_lr}
            for k, a in enumerate(evaluation.set_accuracies)]
    rows += [{**common, "kind": SUBSET, "network": k, "test_accuracy": a, "lr": evaluation.subset_lr}
             for k, a in enumerate(evaluation.subset_accuracies)]
    return write_evaluation(SweepLayout(out).set_evaluations_dir, evaluation_id, rows)


def handle(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from dpcluster.distilled import read_distilled_set, read_options
    from dpcluster.distilled.evaluate import evaluate_set

    console = Console()
    spec = evaluate_set_spec(args)
    device, data = device_and_data(spec, args, console)
    source = spec.distilled
    distilled = read_distilled_set(source.path, source.format, data, read_options(source))
    console.print(f"{source.path}: {len(distilled)} images ({distilled.images_per_class} per class, "
                  f"{distilled.label_kind} labels)"
                  + (f", learned lr {distilled.learned_lr:.4g}" if distilled.learned_lr is not None else ""))
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as progress:
        task = progress.add_task("training networks", total=2 * args.networks)
        evaluation = evaluate_set(distilled, data, spec.model, spec.distilled_training, args.networks, device,
                                  use_learned_lr=source.use_learned_lr,
                                  on_network=lambda done, total: progress.update(task, completed=done, total=total))
    print_evaluation(console, evaluation, distilled)
    path = save_evaluation(args.out, evaluation, distilled, str(Path(source.path).expanduser().resolve()),
                           source.format, spec)
    console.print(f"wrote {path}")
    return 0
