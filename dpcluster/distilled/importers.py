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

# MTT's code (utils.get_dataset) hard-codes a normalization per data set, for runs without --zca, and saves its
# images in it: each data source says which (``DataSource.mtt_normalization``: CIFAR-10's constants for CIFAR-100
# too, ImageNet's for its subsets); when ours differs, the images are converted, not silently misread. With --zca
# MTT's images are not normalized at all: ToTensor's [0, 1] pixels, ZCA-whitened.


def mtt_normalization(data_name: str):
    """The (mean, std) MTT saves sets of ``data_name`` in, or None where MTT does not distil it."""
    from dpcluster.data.registry import source_for

    return source_for(data_name).mtt_normalization


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
    file to take another checkpoint).

    ``zca`` says the set was distilled with MTT's ``--zca``: its images are then ZCA-whitened pixels, taken as
    they are (never renormalized), and ``data`` must be ZCA-whitened too (``data.zca``, which whitens as MTT
    does). Otherwise the images are taken as normalized with ``source_mean``/``source_std``, by default MTT's
    own values for ``data`` (or ``data``'s when MTT has none), and converted to ``data``'s; ``data`` must then
    not be whitened. A mismatch either way is refused with one line naming the setting to change."""
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
    _check_zca(images_file, zca, data)
    if zca:
        # ZCA space: the identity normalization, as load_data gives whitened data (no conversion possible).
        channels = images.shape[1]
        mean, std = (0.0,) * channels, (1.0,) * channels
    else:
        default_mean, default_std = mtt_normalization(data.name) or (tuple(data.mean), tuple(data.std))
        mean = tuple(source_mean) if source_mean is not None else default_mean
        std = tuple(source_std) if source_std is not None else default_std
    distilled = DistilledSet(
        images=images.float(), labels=labels, source_dataset=data.name,
        images_per_class=_per_class(labels, data.num_classes, labels_file), method="mtt",
        mean=mean, std=std, learned_lr=learned_lr, num_classes=data.num_classes, zca=zca,
        extra={"imported_from": str(images_file.resolve())})
    return distilled.matched_to(data, where=str(images_file))


def _check_zca(where: Path, zca: bool, data: "DataBundle") -> None:
    """Refuse, in one line, an imported set whose ZCA whitening (``zca``) disagrees with the data's."""
    if zca and not data.zca:
        raise UserError(f"{where}: distilled.zca = true says the set is ZCA-whitened, but the data is not; set "
                        f"data.zca = true to whiten {data.name} as MTT does (or distilled.zca = false if the set "
                        f"was distilled without --zca)")
    if data.zca and not zca:
        raise UserError(f"{where}: data.zca = true whitens {data.name}, but distilled.zca = false says the set is "
                        f"not ZCA-whitened; set distilled.zca = true if it was distilled with MTT's --zca, "
                        f"else data.zca = false")


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
    except Image.DecompressionBombError:
        # Its header claims more pixels than any distilled image has (PIL would allocate them all).
        raise UserError(f"{file}: claims to be larger than {2 * Image.MAX_IMAGE_PIXELS:,} pixels; not a distilled "
                        f"image (the set's images are {width}x{height})") from None
    except (OSError, UnidentifiedImageError) as error:
        raise UserError(f"{file}: cannot read as an image ({error})") from None
    x = raw.view(height, width, channels).permute(2, 0, 1).float() / 255.0
    mean = torch.tensor(data.mean, dtype=torch.float32).view(-1, 1, 1)
    std = torch.tensor(data.std, dtype=torch.float32).view(-1, 1, 1)
    return (x - mean) / std


def import_png(root: str | Path, data: "DataBundle", learned_lr: float | None = None,
               zca: bool = False) -> DistilledSet:
    """Import ``root/<class>/*.png`` (``<class>`` a class index or name of ``data``); every class must be present
    with the same number of images. Images are converted to ``data``'s channels and size, scaled to [0, 1] and
    normalized with ``data``'s mean/std.

    PNG files hold pixels, never ZCA-whitened values, and the whitening fitted on the data is not kept, so
    ZCA-whitened data (``data.zca``) and ``zca`` (a whitened set) are refused with one line."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: no such folder of PNG images")
    if zca:
        raise UserError(f"{root}: PNG images hold pixels, not ZCA-whitened values; set distilled.zca = false, or "
                        f"import MTT's images_best.pt with distilled.format = \"mtt\"")
    if data.zca:
        raise UserError(f"{root}: PNG images cannot be used with ZCA-whitened data; set data.zca = false, or "
                        f"import MTT's whitened images_best.pt with distilled.format = \"mtt\" and "
                        f"distilled.zca = true")
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
