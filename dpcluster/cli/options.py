"""Options shared by the commands: those that start from an experiment spec (``run``, ``distill``,
``evaluate-set``), ``--set`` (every command that loads a spec), ``--track`` (``run``, ``sweep``, ``tune``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from dpcluster.errors import SpecError, UserError
from dpcluster.specs import ExperimentSpec
from dpcluster.data.registry import source_names
from dpcluster.models.registry import network_names


def add_set_option(p: argparse.ArgumentParser, applies_to: str = "the spec") -> None:
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help=f"set one field of {applies_to} by its dotted key, typed and checked as in the spec file "
                        f"(training.lr=0.02, model.width=64, data.root=/data/cifar, seeds=[0,1]); repeatable, "
                        f"applied in order, before the command's other options")


def add_spec_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="experiment spec (TOML); options below override it")
    add_set_option(p, "the experiment spec")
    p.add_argument("--data", help=f"data set: {', '.join(source_names())}")
    p.add_argument("--data-root", help="folder holding the data set in torchvision's on-disk format")
    p.add_argument("--model", help=f"model: {', '.join(network_names())}, torchvision:NAME, or "
                                   f"package.module:function (a factory of yours)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--out", type=Path, default=Path("runs"), help="output folder (default ./runs)")


def writable_folder(path: Path, option: str) -> Path:
    """``path`` as a folder this process may write into (it need not exist yet); anything else is one line naming
    ``option``, before anything is written."""
    import os

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{option} {path}: is a file, not a folder")
    existing = next(p for p in (path, *path.absolute().parents) if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{option} {path}: cannot write to {existing} (read-only, or not yours)")
    return path


def override(spec: ExperimentSpec, section: str, option: str, **changes) -> ExperimentSpec:
    """``spec`` with fields of one section changed; a bad value is reported against the option."""
    try:
        return spec.replace(**{section: getattr(spec, section).replace(**changes)})
    except SpecError as error:
        raise UserError(f"{option}: {error.message}") from None


def spec_from_options(args: argparse.Namespace) -> ExperimentSpec:
    spec = ExperimentSpec.load(args.config) if args.config else ExperimentSpec()
    spec = spec.with_assignments(args.set)
    if args.data is not None or args.data_root is not None:
        changes = {"name": args.data} if args.data is not None else {}
        if args.data_root is not None:
            changes["root"] = args.data_root
        spec = override(spec, "data", "--data", **changes)
    if args.model is not None:
        spec = override(spec, "model", "--model", name=args.model)
    return spec


def device_and_data(spec: ExperimentSpec, args: argparse.Namespace, console):
    """The device ``--device`` names and the spec's data placed on it, after checking ``--out`` is writable (so a
    mistake surfaces before the data loads)."""
    from dpcluster.data import load_data
    from dpcluster.runtime import place_data, resolve_device

    writable_folder(args.out, "--out")
    device = resolve_device(args.device)
    console.print(f"Loading {spec.data.name} ...")
    return device, place_data(load_data(spec.data), device, spec.data.placement)


def add_track_option(p: argparse.ArgumentParser) -> None:
    from dpcluster.tracking.registry import get_tracker, tracker_names

    trackers = "; ".join(f"{name}: {get_tracker(name).summary}" for name in tracker_names())
    p.add_argument("--track", action="append", default=[], metavar="NAME[:TARGET]",
                   help=f"stream every training's per-epoch loss and accuracy, every level's accuracy, sparsity and "
                        f"time-to-mask and every distillation's loss to a tracker ({trackers}); repeatable; kept "
                        f"in the folder for its later jobs, --track none stops it")


def tracks_of(args: argparse.Namespace, out: Path):
    """The ``--track`` options as tracks (None: the folder's choice stays), each checked before anything runs."""
    from dpcluster.tracking.registry import parse_track

    if not args.track:
        return None
    if args.track == ["none"]:
        return []
    return [parse_track(text, out) for text in args.track]


def save_tracks(tracks, out: Path) -> None:
    """Keep the tracks in the folder, where every job (on any backend) reads them."""
    if tracks is None:
        return
    from dpcluster.sweeps.layout import SweepLayout
    from dpcluster.tracking.registry import write_tracks

    write_tracks(SweepLayout(out).tracking_file, tracks)
