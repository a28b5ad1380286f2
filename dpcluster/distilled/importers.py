"""Importers for distilled sets made elsewhere: MTT's saved tensors and folders of PNG images."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from dpcluster.distilled.format import DistilledSet, load_tensor_file
from dpcluster.errors import UserError

if TYPE_CHECKING:
    from dpcluster.data.base import DataBundle

# The normalization MTT (and the DC/DM code it builds on) hard-codes per data set. MTT saves its images in
# that normalization; when ours differs, the images are converted, not silently misread.
MTT_NORMALIZATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((0.5071, 0.4866, 0.4409), (0.2673, 0.2564, 0.2762)),
    "imagenet10": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "imagenette": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}

# MTT itself only logs its learned lr to wandb; several follow-ups save it next to the images.
_LR_FILES = ("lr_{tag}.pt", "synthetic_lr.pt", "syn_lr.pt")
_PNG_SUFFIXES = (".png",)


def _per_class(labels: torch.Tensor, num_classes: int, where: Path) -> int:
    counts = torch.bincount(labels, minlength=num_classes).tolist()
    if len(counts) > num_classes or len(set(counts)) != 1 or counts[0] == 0:
        raise UserError(f"{where}: expected the same number of images for each of {num_classes} classes, "
                        f"found per-class counts {counts}")
    return counts[0]


def _read_lr(path: Path) -> float:
    value = load_tensor_file(path)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = float(value.reshape(()).item())
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise UserError(f"{path}: expected one positive learning rate, got {value!r}")
    return float(value)


def import_mtt(path: str | Path, data: "DataBundle", learned_lr: float | None = None,
               source_mean: tuple[float, ...] | None = None, source_std: tuple[float, ...] | None = None,
               zca: bool = False) -> DistilledSet:
    """Import MTT's ``images_best.pt`` / ``labels_best.pt`` from folder ``path`` (or name an ``images_<tag>.pt``
    file to take another checkpoint). The images are taken as normalized with ``source_mean``/``source_std``,
    by default MTT's own values for ``data`` (or ``data``'s when MTT has none), and converted to ``data``'s."""
    path = Path(path)
    if path.is_file():
        folder, tag = path.parent, path.stem.removeprefix("images_")
        images_file = path
    elif path.is_dir():
        folder, tag = path, "best"
        images_file = folder / "images_best.pt"
    else:
        raise UserError(f"{path}: no such MTT output (a folder with images_best.pt and labels_best.pt)")
    labels_file = folder / f"labels_{tag}.pt"
    images = load_tensor_file(images_file)
    labels = load_tensor_file(labels_file)
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or not images.is_floating_point():
        raise UserError(f"{images_file}: expected a float tensor (N, C, H, W), got {_describe(images)}")
    if not isinstance(labels, torch.Tensor) or labels.dim() != 1 or labels.is_floating_point():
        raise UserError(f"{labels_file}: expected class indices (N,), got {_describe(labels)} "
                        "(soft labels are not supported)")
    labels = labels.long()
    if len(labels) != len(images):
        raise UserError(f"{labels_file}: {len(labels)} labels for {len(images)} images in {images_file.name}")
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= data.num_classes):
        raise UserError(f"{labels_file}: labels must be in 0..{data.num_classes - 1} for {data.name}, "
                        f"found {int(labels.min())}..{int(labels.max())}")
    if tuple(images.shape[1:]) != tuple(data.input_shape):
        raise UserError(f"{images_file}: images are {list(images.shape[1:])} (C, H, W), data set {data.name!r} "
                        f"needs {list(data.input_shape)}")
    if learned_lr is None:
        for name in _LR_FILES:
            if (folder / name.format(tag=tag)).is_file():
                learned_lr = _read_lr(folder / name.format(tag=tag))
                break
    default_mean, default_std = MTT_NORMALIZATION.get(data.name, (tuple(data.mean), tuple(data.std)))
    mean = tuple(source_mean) if source_mean is not None else default_mean
    std = tuple(source_std) if source_std is not None else default_std
    distilled = DistilledSet(
        images=images.float(), labels=labels, source_dataset=data.name,
        images_per_class=_per_class(labels, data.num_classes, labels_file), method="mtt",
        mean=mean, std=std, learned_lr=learned_lr, num_classes=data.num_classes, zca=zca,
        extra={"imported_from": str(images_file.resolve())})
    return distilled.matched_to(data, where=str(images_file))


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"{value.dtype} tensor of shape {list(value.shape)}"
    return type(value).__name__


def _class_index(name: str, data: "DataBundle", where: Path) -> int:
    # A class name wins over an index: a data set could name classes "3", "7", ... out of order.
    if name in data.class_names:
        return data.class_names.index(name)
    if name.isdigit() and int(name) < data.num_classes:
        return int(name)
    raise UserError(f"{where}: folder {name!r} is neither a class index (0..{data.num_classes - 1}) "
                    f"nor a class name of {data.name}")


def _png_tensor(file: Path, data: "DataBundle") -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError  # PIL is only needed by this importer

    channels, height, width = data.input_shape
    if channels not in (1, 3):
        raise UserError(f"{file}: PNG import supports 1- and 3-channel data sets, {data.name} has {channels}")
    try:
        with Image.open(file) as image:
            image = image.convert("L" if channels == 1 else "RGB")
            if image.size != (width, height):
                image = image.resize((width, height), Image.Resampling.BILINEAR)
            raw = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    except (OSError, UnidentifiedImageError) as error:
        raise UserError(f"{file}: cannot read as an image ({error})") from None
    x = raw.view(height, width, channels).permute(2, 0, 1).float() / 255.0
    mean = torch.tensor(data.mean, dtype=torch.float32).view(-1, 1, 1)
    std = torch.tensor(data.std, dtype=torch.float32).view(-1, 1, 1)
    return (x - mean) / std


def import_png(root: str | Path, data: "DataBundle", learned_lr: float | None = None) -> DistilledSet:
    """Import ``root/<class>/*.png`` (``<class>`` a class index or name of ``data``); every class must be present
    with the same number of images. Images are converted to ``data``'s channels and size, scaled to [0, 1] and
    normalized with ``data``'s mean/std."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: no such folder of PNG images")
    per_class: dict[int, list[Path]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        label = _class_index(folder.name, data, folder)
        if label in per_class:
            raise UserError(f"{folder}: class {label} has more than one folder")
        per_class[label] = sorted(f for f in folder.iterdir() if f.suffix.lower() in _PNG_SUFFIXES)
    missing = [c for c in range(data.num_classes) if not per_class.get(c)]
    if missing:
        raise UserError(f"{root}: no PNG images for classes {missing} (expected root/<class>/*.png)")
    counts = {c: len(files) for c, files in per_class.items()}
    if len(set(counts.values())) != 1:
        raise UserError(f"{root}: every class needs the same number of images, found {dict(sorted(counts.items()))}")
    images, labels = [], []
    for label in range(data.num_classes):
        for file in per_class[label]:
            images.append(_png_tensor(file, data))
            labels.append(label)
    return DistilledSet(
        images=torch.stack(images), labels=torch.tensor(labels, dtype=torch.int64), source_dataset=data.name,
        images_per_class=counts[0], method="png", mean=tuple(data.mean), std=tuple(data.std),
        learned_lr=learned_lr, num_classes=data.num_classes, extra={"imported_from": str(root.resolve())})
