"""CIFAR-10 and CIFAR-100 from torchvision's on-disk python format under ``spec.root``; never downloaded."""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision import datasets

from dpcluster.data.base import DataBundle, TensorSet, as_split
from dpcluster.errors import UserError
from dpcluster.specs.experiment import DataSpec


class _LocalFiles:
    """Mixin for torchvision's CIFAR classes that trusts the files on disk.

    torchvision compares every file with the md5 sum of the official release, so any other copy of the data
    (re-packed batches, the small sets the tests write) is refused as "not found or corrupted". Here only the
    files' presence is checked; the parsing itself stays torchvision's, and a batch that does not parse is
    reported by :func:`load`.
    """

    def _check_integrity(self) -> bool:
        folder = os.path.join(self.root, self.base_folder)
        return all(os.path.isfile(os.path.join(folder, name)) for name, _md5 in self.train_list + self.test_list)

    def _load_meta(self) -> None:
        # The stock version md5-checks the meta file as well; otherwise it is the same.
        with open(os.path.join(self.root, self.base_folder, self.meta["filename"]), "rb") as infile:
            data = pickle.load(infile, encoding="latin1")
        self.classes = data[self.meta["key"]]
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}


class _CIFAR10(_LocalFiles, datasets.CIFAR10):
    pass


class _CIFAR100(_LocalFiles, datasets.CIFAR100):
    pass


@dataclass(frozen=True)
class _Kind:
    title: str
    dataset: type
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


KINDS = {
    "cifar10": _Kind("CIFAR-10", _CIFAR10, 10, (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": _Kind("CIFAR-100", _CIFAR100, 100, (0.5071, 0.4866, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def expected_files(kind: _Kind, root: str | Path) -> list[Path]:
    """Every file torchvision reads, in the order it reads them (training batches, test batch, meta)."""
    folder = Path(root) / kind.dataset.base_folder
    names = [name for name, _md5 in kind.dataset.train_list + kind.dataset.test_list]
    return [folder / name for name in names + [kind.dataset.meta["filename"]]]


def _unreadable_file(files: list[Path]) -> Path | None:
    """The first file that does not unpickle to a dict; only called after loading failed, to name the culprit."""
    for path in files:
        try:
            with open(path, "rb") as handle:
                if not isinstance(pickle.load(handle, encoding="latin1"), dict):
                    return path
        except Exception:
            return path
    return None


def _tensors(dataset, kind: _Kind) -> TensorSet:
    # .data is (N, 32, 32, 3) uint8; back to channel-first, contiguous (a bare .float() would keep the
    # channels-last strides), then scaled to [0, 1] and normalized in place to keep peak memory down.
    x = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous().float().div_(255.0)
    x.sub_(torch.tensor(kind.mean).view(1, 3, 1, 1)).div_(torch.tensor(kind.std).view(1, 3, 1, 1))
    y = torch.tensor(dataset.targets, dtype=torch.int64)
    return TensorSet(x, y)


def load(spec: DataSpec) -> DataBundle:
    kind = KINDS[spec.name]
    files = expected_files(kind, spec.root)
    for path in files:
        if not path.is_file():
            raise UserError(f"{kind.title} not found: expected torchvision's python-format batches at {path} "
                            f"(nothing is downloaded)")
    try:
        train = kind.dataset(spec.root, train=True, download=False)
        test = kind.dataset(spec.root, train=False, download=False)
    except Exception as error:
        culprit = _unreadable_file(files) or files[0].parent
        detail = (str(error).splitlines() or [""])[0]
        raise UserError(f"{kind.title}: could not read {culprit} (corrupt or not torchvision's python format): "
                        f"{type(error).__name__}: {detail}") from error
    train_set, test_set = _tensors(train, kind), _tensors(test, kind)
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
        class_names=tuple(str(name) for name in train.classes),
        train=as_split(train_set, spec.placement),
        test=as_split(test_set, spec.placement),
    )
