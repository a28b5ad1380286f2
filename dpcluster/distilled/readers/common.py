"""What every reader of a set made elsewhere shares: the checks of images and labels (one line naming the file and
the fix), labels hard or soft, learning-rate files, ZCA agreement, and the set made of them (:func:`stored_set`,
in the normalization it was stored in: ``read_distilled_set`` converts it to the data's)."""

from __future__ import annotations

import math
from pathlib import Path
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from dpcluster.distilled.format import DistilledSet, is_distribution, load_tensor_file
from dpcluster.distilled.normalization import UPSTREAM, Normalization, source_normalization
from dpcluster.distilled.registry import AUTO, HARD, SOFTMAX, ReadOptions
from dpcluster.errors import UserError

if TYPE_CHECKING:
    from dpcluster.data.base import DataBundle


def describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"{value.dtype} tensor of shape {list(value.shape)}"
    return type(value).__name__


def checked_images(images: Any, data: "DataBundle", where: Path | str) -> torch.Tensor:
    """``images`` as a float32 (N, C, H, W) tensor of ``data``'s shape, else one line naming ``where``."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or not images.is_floating_point():
        raise UserError(f"{where}: expected float images (N, C, H, W), got {describe(images)}")
    if tuple(images.shape[1:]) != tuple(data.input_shape):
        raise UserError(f"{where}: images are {list(images.shape[1:])} (C, H, W), data set {data.name!r} needs "
                        f"{list(data.input_shape)}")
    return images.float()


def _one_hot_rows(labels: torch.Tensor) -> bool:
    """Whether every row is one value at its argmax and one other value elsewhere (one-hot, or KIP's and FRePo's
    centred and scaled one-hot, 1 - 1/C and -1/C): such labels name a class and nothing more."""
    top = labels.max(dim=1, keepdim=True).values
    rest = torch.where(labels == top, torch.full_like(labels, float("nan")), labels)
    low = rest.nan_to_num(float("inf")).min(dim=1).values
    high = rest.nan_to_num(float("-inf")).max(dim=1).values
    single_top = (labels == top).sum(dim=1) == 1
    return bool((single_top & torch.isclose(low, high)).all())


def checked_labels(labels: Any, count: int, data: "DataBundle", where: Path | str, reading: str,
                   logits: bool) -> torch.Tensor:
    """``labels`` for ``count`` images: int64 class indices (N,) or float class probabilities (N, K).

    Float (N, K) labels are read as ``reading`` says: "hard", each row's argmax; "softmax", rows as logits;
    "auto", one-hot rows (centred and scaled too) as classes, rows that are distributions as they are, and other
    rows as logits where the format's code writes logits (``logits``: DATM's learned labels), else refused:
    learned regression targets (KIP's, FRePo's) are no distribution."""
    if not isinstance(labels, torch.Tensor) or labels.dim() not in (1, 2):
        raise UserError(f"{where}: expected class indices (N,) or soft labels (N, K), got {describe(labels)}")
    if len(labels) != count:
        raise UserError(f"{where}: {len(labels)} labels for {count} images")
    if labels.dim() == 1:
        if labels.is_floating_point():
            if not bool((labels == labels.round()).all()):
                raise UserError(f"{where}: expected class indices (N,), got non-integer values")
        labels = labels.long()
        if count and (int(labels.min()) < 0 or int(labels.max()) >= data.num_classes):
            raise UserError(f"{where}: labels must be in 0..{data.num_classes - 1} for {data.name}, found "
                            f"{int(labels.min())}..{int(labels.max())}")
        return labels
    if labels.shape[1] != data.num_classes:
        raise UserError(f"{where}: soft labels of {labels.shape[1]} classes, data set {data.name!r} has "
                        f"{data.num_classes}")
    labels = labels.double()
    if not bool(torch.isfinite(labels).all()):
        raise UserError(f"{where}: labels contain NaN or infinite values")
    if reading == HARD or (reading == AUTO and _one_hot_rows(labels)):
        return labels.argmax(dim=1)
    if reading == SOFTMAX or (reading == AUTO and logits and not is_distribution(labels)):
        return labels.softmax(dim=1).float()
    if not is_distribution(labels):
        raise UserError(f"{where}: the labels are learned real values, not class probabilities (rows must be "
                        f">= 0 and sum to 1); set distilled.labels = \"hard\" for each row's argmax, or "
                        f"\"softmax\" to read them as logits")
    return labels.float()


def images_per_class(labels: torch.Tensor, num_classes: int, where: Path | str) -> int:
    """The set's size per class: every class the same number of times; soft labels, the rows per class (a
    learned soft label may drift to another class's argmax)."""
    if labels.dim() == 2:
        if len(labels) % num_classes or not len(labels):
            raise UserError(f"{where}: {len(labels)} soft-labelled images do not split evenly over "
                            f"{num_classes} classes")
        return len(labels) // num_classes
    counts = torch.bincount(labels, minlength=num_classes).tolist()
    if len(set(counts)) != 1 or counts[0] == 0:
        raise UserError(f"{where}: expected the same number of images for each of {num_classes} classes, found "
                        f"per-class counts {counts}")
    return counts[0]


def read_lr(path: Path) -> float:
    """One positive learning rate from ``path`` (a 0-dim tensor, as DATM and SeqMatch save it, or a float)."""
    value = load_tensor_file(path)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = float(value.reshape(()).item())
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise UserError(f"{path}: expected one positive learning rate, got {value!r}")
    return float(value)


# Learning-rate files beside a set: DATM's and PAD's lr_best.pt, SeqMatch's best_lr.pt, other forks' names.
LR_FILES = ("lr_{tag}.pt", "{tag}_lr.pt", "syn_lr_{tag}.pt", "synthetic_lr.pt", "syn_lr.pt", "lr.pt")


def find_lr(folder: Path, tag: str) -> float | None:
    """The learning rate saved beside a set of checkpoint ``tag`` ("best"), or None when there is no such file."""
    for name in LR_FILES:
        if (folder / name.format(tag=tag)).is_file():
            return read_lr(folder / name.format(tag=tag))
    return None


def check_zca(where: Path | str, zca: bool, data: "DataBundle", styles: tuple[str, ...] = ("mtt",),
              whose: str = "MTT's --zca") -> None:
    """Refuse, in one line, a set whose ZCA whitening (``zca``) disagrees with the data's: a whitened set needs
    data whitened in one of ``styles`` (the whitening spaces of the code that writes the format, ``whose``; none
    for a code that never whitens), and a plain set plain data."""
    if zca and not styles:
        raise UserError(f"{where}: {whose} never ZCA-whiten their sets; set distilled.zca = false")
    hint = " or ".join("data.zca = true" if style == "mtt" else f'data.zca = "{style}"' for style in styles)
    if zca and not data.zca:
        raise UserError(f"{where}: distilled.zca = true says the set is ZCA-whitened, but the data is not; set "
                        f"{hint} to whiten {data.name} as {whose} does (or distilled.zca = false if the set is "
                        f"not whitened)")
    if zca and data.zca_style not in styles:
        raise UserError(f"{where}: the set is whitened as {whose} does, but data.zca whitens {data.name} "
                        f"{data.zca_style}'s way; set {hint}")
    if data.zca and not zca:
        fix = (f"set distilled.zca = true if it was distilled with {whose}, else data.zca = false" if styles
               else f"{whose} never whiten: set data.zca = false")
        raise UserError(f"{where}: data.zca whitens {data.name}, but distilled.zca = false says the set is not "
                        f"ZCA-whitened; {fix}")


def stored_set(images: torch.Tensor, labels: torch.Tensor, data: "DataBundle", options: ReadOptions, *,
               method: str, upstream: Mapping[str, Normalization] | None, origin: Path, labels_where: Path | str,
               learned_lr: float | None = None, extra: Mapping[str, Any] | None = None) -> DistilledSet:
    """The set a reader read, in the space it was stored in: ZCA-whitened (``options.zca``: its data's whitened
    space, the identity normalization; a stated normalization is refused), else ``options.normalization`` over
    the format's ``upstream`` constants. ``origin`` is the file or folder it came from; ``labels_where`` names
    the labels in errors about its size per class."""
    channels = data.input_shape[0]
    if options.zca:
        if options.normalization != UPSTREAM:
            raise UserError(f"{origin}: a ZCA-whitened set is in its data's whitened space, which "
                            f"distilled.normalization cannot describe; leave it at \"upstream\"")
        mean, std = (0.0,) * channels, (1.0,) * channels
    else:
        mean, std = source_normalization(options.normalization, data, str(origin), upstream)
    return DistilledSet(
        images=images, labels=labels, source_dataset=data.name,
        images_per_class=images_per_class(labels, data.num_classes, labels_where), method=method, mean=mean,
        std=std, learned_lr=learned_lr, num_classes=data.num_classes, zca=options.zca, zca_style=data.zca_style,
        extra={"imported_from": str(Path(origin).resolve()), **(extra or {})})
