"""MTT's saved tensors and its successors' (DATM, PAD, FTD, TESLA, SeqMatch, SelMatch): ``images_best.pt`` and
``labels_best.pt`` in a folder, another checkpoint by naming its ``images_<tag>.pt`` (FTD's
``ema_images_<tag>.pt`` too), or a set split over subfolders, each such a folder (SeqMatch's ``S1``, ``S2``, ...),
joined in order. Labels are class indices, TESLA's teacher probabilities, or DATM's learned logits (soft-maxed,
as its loss does). A learning rate saved beside the images (DATM's ``lr_best.pt``, SeqMatch's ``best_lr.pt``, ...)
is the set's learned rate; MTT itself saves none."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from dpcluster.distilled.format import DistilledSet, load_tensor_file
from dpcluster.distilled.readers.common import check_zca, checked_images, checked_labels, find_lr, stored_set
from dpcluster.distilled.registry import ReadOptions
from dpcluster.errors import UserError

if TYPE_CHECKING:
    from dpcluster.data.base import DataBundle

_BEST = "images_best.pt"


def _natural(path: Path) -> tuple:
    # S2 before S10.
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name))


def _parts(path: Path) -> list[tuple[Path, Path, str]]:
    """(images file, labels file, tag) of each part of the set at ``path``, in order."""
    if path.is_file():
        prefix, found, tag = path.stem.partition("images_")
        if not found or path.suffix != ".pt":
            raise UserError(f"{path}: not an MTT images file (images_<tag>.pt, or FTD's ema_images_<tag>.pt)")
        return [(path, path.parent / f"{prefix}labels_{tag}.pt", tag)]
    if not path.is_dir():
        raise UserError(f"{path}: no such MTT output (a folder with {_BEST} and labels_best.pt)")
    if (path / _BEST).is_file():
        return [(path / _BEST, path / "labels_best.pt", "best")]
    subsets = sorted((folder for folder in path.iterdir() if (folder / _BEST).is_file()), key=_natural)
    if not subsets:
        raise UserError(f"{path}: no {_BEST} here or in its subfolders (an MTT output, or a set split over "
                        f"folders such as SeqMatch's S1, S2, ...)")
    return [(folder / _BEST, folder / "labels_best.pt", "best") for folder in subsets]


def import_mtt(path: str | Path, data: "DataBundle", options: ReadOptions = ReadOptions()) -> DistilledSet:
    """The MTT-style set at ``path`` (see the module's text), checked against ``data``, as stored.

    ``options.zca`` says the set was distilled with MTT's ``--zca``: its images are then ZCA-whitened pixels,
    taken as they are, and ``data`` must be whitened too (``data.zca``, which whitens as MTT does). Otherwise the
    images are in ``options.normalization``, by default MTT's constants for ``data`` (CIFAR-10's for CIFAR-100
    too, ImageNet's for its subsets). A set split over folders takes the last
    part's learning rate: SeqMatch trains its whole set with it."""
    from dpcluster.distilled.formats.mtt import MTT

    path = Path(path)
    parts = _parts(path)
    images, labels, learned_lr = [], [], None
    for images_file, labels_file, tag in parts:
        part = checked_images(load_tensor_file(images_file), data, images_file)
        images.append(part)
        labels.append(checked_labels(load_tensor_file(labels_file), len(part), data, labels_file, options.labels,
                                     logits=True))
        learned_lr = find_lr(images_file.parent, tag) or learned_lr
    if len({label.dim() for label in labels}) > 1:
        raise UserError(f"{path}: some parts have class indices, others soft labels")
    # Errors about the whole set name its one labels file, or the folder its parts are in.
    origin, labels_where = (parts[0][0], parts[0][1]) if len(parts) == 1 else (path, path)
    check_zca(origin, options.zca, data)
    return stored_set(torch.cat(images), torch.cat(labels), data, options, method="mtt", upstream=MTT.upstream,
                      origin=origin, labels_where=labels_where, learned_lr=learned_lr)
