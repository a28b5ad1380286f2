"""MNIST and Fashion-MNIST from their IDX files under ``spec.root``; never downloaded.

The four files (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
``t10k-labels-idx1-ubyte``, each plain or gzipped as ``.gz``) are found directly in the root (as Debian's
``dataset-fashion-mnist`` installs them in ``/usr/share/datasets/fashion-mnist``) or in torchvision's layout,
``root/MNIST/raw/`` and ``root/FashionMNIST/raw/``. Where a file is there both plain and gzipped the plain one is
read (torchvision keeps both after extracting).

Images are 1 x 28 x 28, scaled to [0, 1] and normalized with the usual fixed constants (MNIST 0.1307 / 0.3081,
Fashion-MNIST 0.2860 / 0.3530: the mean and standard deviation of each training split's pixels), not with
statistics of whatever files are found, so every copy of a data set is normalized alike (as CIFAR's are).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dpcluster.data.base import DataBundle, TensorSet, as_split
from dpcluster.data.idx import IMAGES, LABELS, read_idx
from dpcluster.errors import UserError
from dpcluster.specs.experiment import DataSpec

FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


@dataclass(frozen=True)
class _Kind:
    title: str
    # torchvision's folder under the root: ROOT/<folder>/raw/<files>.
    folder: str
    mean: float
    std: float
    class_names: tuple[str, ...]


KINDS = {
    "mnist": _Kind("MNIST", "MNIST", 0.1307, 0.3081, tuple(str(d) for d in range(10))),
    "fashion_mnist": _Kind("Fashion-MNIST", "FashionMNIST", 0.2860, 0.3530,
                           ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                            "Bag", "Ankle boot")),
}
NUM_CLASSES = 10


def _find(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def find_files(kind: _Kind, root: str | Path) -> dict[str, Path]:
    """The four files by name: from the first of ROOT and ROOT/<folder>/raw that holds all four; else a one-line
    UserError naming what is missing where."""
    root = Path(root)
    names = [name for pair in FILES.values() for name in pair]
    folders = (root, root / kind.folder / "raw")
    best: list[str] | None = None
    for folder in folders:
        found = {name: _find(folder, name) for name in names}
        if all(found.values()):
            return found
        missing = [f"{folder / name}[.gz]" for name, path in found.items() if path is None]
        if best is None or len(missing) < len(best):
            best = missing
    raise UserError(f"{kind.title} not found under {root}: expected its four IDX files (plain or .gz) there or "
                    f"in {root / kind.folder / 'raw'}; missing {', '.join(best)} (nothing is downloaded)")


def _split(kind: _Kind, images_path: Path, labels_path: Path) -> TensorSet:
    images = read_idx(images_path, IMAGES)
    labels = read_idx(labels_path, LABELS)
    if len(images) != len(labels):
        raise UserError(f"{kind.title}: {images_path} holds {len(images)} image(s) but {labels_path} holds "
                        f"{len(labels)} label(s)")
    if not len(images):
        raise UserError(f"{kind.title}: {images_path} holds no image")
    if len(labels) and int(labels.max()) >= NUM_CLASSES:
        raise UserError(f"{kind.title}: {labels_path} has label {int(labels.max())}, outside 0..{NUM_CLASSES - 1}")
    x = torch.from_numpy(images).unsqueeze(1).float().div_(255.0).sub_(kind.mean).div_(kind.std)
    return TensorSet(x, torch.from_numpy(labels.astype(np.int64)))


def load(spec: DataSpec) -> DataBundle:
    kind = KINDS[spec.name]
    files = find_files(kind, spec.root)
    splits = {split: _split(kind, files[images], files[labels]) for split, (images, labels) in FILES.items()}
    shapes = {split: tuple(tensors.x.shape[1:]) for split, tensors in splits.items()}
    if shapes["train"] != shapes["test"]:
        raise UserError(f"{kind.title}: the training images are {'x'.join(map(str, shapes['train'][1:]))} but "
                        f"{files[FILES['test'][0]]} holds {'x'.join(map(str, shapes['test'][1:]))} images")
    return DataBundle(
        name=spec.name,
        num_classes=NUM_CLASSES,
        input_shape=shapes["train"],
        mean=(kind.mean,),
        std=(kind.std,),
        class_names=kind.class_names,
        train=as_split(splits["train"], spec.placement),
        test=as_split(splits["test"], spec.placement),
    )
