"""CIFAR-10 and CIFAR-100 from torchvision's on-disk python format under ``spec.root``; never downloaded."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torchvision import datasets

from dpcluster.data.base import DataBundle, TensorSet, as_split
from dpcluster.data.safe_pickle import load_data_pickle
from dpcluster.errors import UserError
from dpcluster.specs.experiment import DataSpec


@dataclass(frozen=True)
class _Kind:
    title: str
    # torchvision's class: where the files are and what they are called (its own loading is not used: it unpickles
    # the batches with plain pickle, which runs whatever code a crafted file names, and md5-checks every file
    # against the official release, refusing any other copy).
    dataset: type
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


KINDS = {
    "cifar10": _Kind("CIFAR-10", datasets.CIFAR10, 10, (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": _Kind("CIFAR-100", datasets.CIFAR100, 100, (0.5071, 0.4866, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def expected_files(kind: _Kind, root: str | Path) -> list[Path]:
    """Every file torchvision reads, in the order it reads them (training batches, test batch, meta)."""
    folder = Path(root) / kind.dataset.base_folder
    names = [name for name, _md5 in kind.dataset.train_list + kind.dataset.test_list]
    return [folder / name for name in names + [kind.dataset.meta["filename"]]]


def _batch(path: Path, title: str) -> tuple[np.ndarray, list[int]]:
    """One batch's rows (N x 3072 uint8: 1024 red, 1024 green, 1024 blue values, each row-major) and labels."""
    entry = load_data_pickle(path)
    if not isinstance(entry, dict) or "data" not in entry or not ("labels" in entry or "fine_labels" in entry):
        raise UserError(f"{title}: {path} is not a CIFAR batch (expected a dict with 'data' and 'labels' or "
                        f"'fine_labels')")
    rows = np.asarray(entry["data"])
    labels = list(entry["labels"] if "labels" in entry else entry["fine_labels"])
    if rows.dtype != np.uint8 or rows.ndim != 2 or rows.shape[1] != 3072:
        raise UserError(f"{title}: {path}: 'data' must be N x 3072 uint8 values, got {rows.dtype} {rows.shape}")
    if len(rows) != len(labels):
        raise UserError(f"{title}: {path} holds {len(rows)} image(s) but {len(labels)} label(s)")
    return rows, labels


def _split(kind: _Kind, root: str | Path, train: bool) -> TensorSet:
    folder = Path(root) / kind.dataset.base_folder
    parts = [_batch(folder / name, kind.title) for name, _md5 in
             (kind.dataset.train_list if train else kind.dataset.test_list)]
    rows = np.concatenate([rows for rows, _ in parts])
    labels = [label for _, batch_labels in parts for label in batch_labels]
    if not len(rows):
        raise UserError(f"{kind.title}: the {'training' if train else 'test'} batches under {folder} hold no image")
    # Rows are channel-first already; scaled to [0, 1] and normalized in place to keep peak memory down.
    x = torch.from_numpy(rows.reshape(-1, 3, 32, 32)).float().div_(255.0)
    x.sub_(torch.tensor(kind.mean).view(1, 3, 1, 1)).div_(torch.tensor(kind.std).view(1, 3, 1, 1))
    return TensorSet(x, torch.tensor(labels, dtype=torch.int64))


def load(spec: DataSpec) -> DataBundle:
    kind = KINDS[spec.name]
    files = expected_files(kind, spec.root)
    for path in files:
        if not path.is_file():
            raise UserError(f"{kind.title} not found: expected torchvision's python-format batches at {path} "
                            f"(nothing is downloaded)")
    train_set, test_set = _split(kind, spec.root, train=True), _split(kind, spec.root, train=False)
    meta = load_data_pickle(files[-1])
    classes = meta.get(kind.dataset.meta["key"]) if isinstance(meta, dict) else None
    if not isinstance(classes, list) or len(classes) != kind.num_classes:
        raise UserError(f"{kind.title}: {files[-1]} should list the {kind.num_classes} class names under "
                        f"{kind.dataset.meta['key']!r}")
    for split, tensors in (("training", train_set), ("test", test_set)):
        if len(tensors) and not 0 <= int(tensors.y.min()) <= int(tensors.y.max()) < kind.num_classes:
            raise UserError(f"{kind.title}: {split} labels under {files[0].parent} "
                            f"are outside 0..{kind.num_classes - 1}")
    return DataBundle(
        name=spec.name,
        num_classes=kind.num_classes,
        input_shape=(3, 32, 32),
        mean=kind.mean,
        std=kind.std,
        class_names=tuple(str(name) for name in classes),
        train=as_split(train_set, spec.placement),
        test=as_split(test_set, spec.placement),
    )
