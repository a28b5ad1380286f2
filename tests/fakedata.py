"""Tiny data sets written in the exact on-disk formats the loaders read (CIFAR python batches, ImageFolder trees).

The CIFAR batches are written like the official files, which were pickled by Python 2: their string keys and
values are Python 2 ``str`` (pickle's BINSTRING opcodes), so they load as ``b"data"`` with
``encoding="bytes"`` (as the CIFAR page documents) and as ``"data"`` with ``encoding="latin1"`` (what
torchvision uses). Python 3's pickler cannot write that opcode for ``bytes``, so a small pickler subclass does.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import torch
from PIL import Image


class Py2Str(str):
    """A string to be pickled as a Python 2 ``str`` (a byte string)."""


class _Py2Pickler(pickle._Pickler):  # the pure-Python pickler, whose dispatch table can be extended
    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        data = obj.encode("latin1")
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[Py2Str] = save_py2_str


def _py2(value):
    """``value`` with every str (dict keys included) turned into a Py2Str."""
    if isinstance(value, str):
        return Py2Str(value)
    if isinstance(value, dict):
        return {_py2(k): _py2(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_py2(v) for v in value]
    return value


def write_py2_pickle(path: Path, obj) -> None:
    with open(path, "wb") as handle:
        _Py2Pickler(handle, protocol=2).dump(_py2(obj))


def _images(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)


def _rows(images: np.ndarray) -> np.ndarray:
    """(N, 32, 32, 3) images as CIFAR rows: 1024 red, then 1024 green, then 1024 blue values, each row-major."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(len(images), 3072))


def make_cifar10(root, n_train_per_batch: int = 4, n_test: int = 6, seed: int = 0) -> dict:
    """Write ``root/cifar-10-batches-py`` (5 training batches, test batch, meta).

    Returns the images (N, 32, 32, 3) uint8 and labels of both splits, in file order, to compare against.
    """
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    train_x, train_y = [], []
    for b in range(1, 6):
        x = _images(rng, n_train_per_batch)
        y = [int(v) for v in rng.integers(0, 10, n_train_per_batch)]
        write_py2_pickle(folder / f"data_batch_{b}", {
            "batch_label": f"training batch {b} of 5", "labels": y, "data": _rows(x),
            "filenames": [f"img_{b}_{i}.png" for i in range(n_train_per_batch)]})
        train_x.append(x)
        train_y += y
    test_x = _images(rng, n_test)
    test_y = [int(v) for v in rng.integers(0, 10, n_test)]
    write_py2_pickle(folder / "test_batch", {
        "batch_label": "testing batch 1 of 1", "labels": test_y, "data": _rows(test_x),
        "filenames": [f"test_{i}.png" for i in range(n_test)]})
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    write_py2_pickle(folder / "batches.meta", {"num_cases_per_batch": n_train_per_batch, "label_names": names,
                                               "num_vis": 3072})
    return {"train_x": np.concatenate(train_x), "train_y": train_y, "test_x": test_x, "test_y": test_y,
            "label_names": names}


def make_cifar100(root, n_train: int = 8, n_test: int = 4, seed: int = 0) -> dict:
    """Write ``root/cifar-100-python`` (train, test, meta); returns what was written, like make_cifar10."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = _images(rng, n)
        fine = [int(v) for v in rng.integers(0, 100, n)]
        write_py2_pickle(folder / split, {
            "filenames": [f"{split}_{i}.png" for i in range(n)], "batch_label": f"{split} batch",
            "fine_labels": fine, "coarse_labels": [v // 5 for v in fine], "data": _rows(x)})
        out[f"{split}_x"], out[f"{split}_y"] = x, fine
    names = [f"fine_{i}" for i in range(100)]
    write_py2_pickle(folder / "meta", {"fine_label_names": names,
                                       "coarse_label_names": [f"coarse_{i}" for i in range(20)]})
    out["label_names"] = names
    return out


def class_color(index: int, image: int = 0) -> tuple[int, int, int]:
    """The solid RGB colour make_imagefolder paints image ``image`` of the ``index``-th class with."""
    return ((40 * index + 3 * image) % 256, (255 - 25 * index) % 256, (90 + 7 * image) % 256)


def make_imagefolder(root, wnids, n_per_class: int = 2, size=(20, 12), splits=("train", "val"),
                     suffix: str = ".png") -> None:
    """Write ``root/<split>/<wnid>/img_<j><suffix>``: solid-colour images of ``size`` (width, height) or an int.

    Image j of the i-th wnid has the colour ``class_color(i, j)``. Use ``suffix=".JPEG"`` for lossy files.
    """
    width, height = (size, size) if isinstance(size, int) else size
    for split in splits:
        for i, wnid in enumerate(wnids):
            folder = Path(root) / split / wnid
            folder.mkdir(parents=True, exist_ok=True)
            for j in range(n_per_class):
                image = Image.new("RGB", (width, height), class_color(i, j))
                image.save(folder / f"img_{j}{suffix}", format="JPEG" if suffix.lower() in (".jpeg", ".jpg") else "PNG")


def numbered(n: int, c: int, h: int, w: int) -> torch.Tensor:
    """Every pixel of every image a different positive number, so a shifted copy can be recognised."""
    return torch.arange(1, n * c * h * w + 1, dtype=torch.float32).view(n, c, h, w)


def shift(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``image`` (C, H, W) moved so that out[:, h, w] = image[:, h + dy, w + dx], zero where that falls outside."""
    out = torch.zeros_like(image)
    _, h, w = image.shape
    out[:, max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)] = \
        image[:, max(0, dy):h - max(0, -dy), max(0, dx):w - max(0, -dx)]
    return out
