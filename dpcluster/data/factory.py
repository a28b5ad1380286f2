"""A data set of the user's own code: ``data.name = "package.module:function"``, the function called with
``data.options`` as keyword arguments (none without them) and returning ``(train_dataset, test_dataset,
num_classes)``: two torch Datasets (anything with ``len`` and indexing) of ``(image, label)`` pairs, each image a
(C, H, W) tensor of pixels (uint8 0..255, or floating point in [0, 1]) of one shape, each label an int in
0..num_classes-1. Both are read once into memory and normalized with the training split's own per-channel mean
and standard deviation; the class names are the training dataset's ``classes`` where it lists num_classes of
them (as torchvision's do), else 0..num_classes-1.

The module must be importable (on ``PYTHONPATH``, or installed). A failure to import it, the function raising,
and anything it returns that is not as above are one line each, naming the factory.
"""

from __future__ import annotations

import numbers

import torch

from dpcluster.data.base import DataBundle, TensorSet, as_split
from dpcluster.data.normalize import channel_stats, check_labels, normalize_
from dpcluster.errors import UserError
from dpcluster.user_code import call_user, first_line
from dpcluster.specs.experiment import DataSpec


def _options(spec: DataSpec) -> dict:
    return spec.options.as_dict() if spec.options is not None else {}


def call_factory(spec: DataSpec):
    return call_user(spec.name, "data", kwargs=_options(spec))


def _is_dataset(value: object) -> bool:
    return hasattr(value, "__len__") and hasattr(value, "__getitem__") and not isinstance(value, (str, bytes, dict))


def _item(dataset, index: int, where: str) -> tuple[torch.Tensor, int]:
    try:
        item = dataset[index]
    except Exception as error:  # noqa: BLE001 - the user's dataset
        raise UserError(f"{where}[{index}] raised {type(error).__name__}: {first_line(str(error))}") from None
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        raise UserError(f"{where}[{index}] is a {type(item).__name__}, not an (image, label) pair")
    image, label = item
    if not isinstance(image, torch.Tensor) or image.dim() != 3:
        got = f"a tensor of shape {list(image.shape)}" if isinstance(image, torch.Tensor) else \
            f"a {type(image).__name__}"
        raise UserError(f"{where}[{index}]: the image is {got}, not a (C, H, W) tensor (convert PIL images with "
                        f"torchvision.transforms.functional.pil_to_tensor or to_tensor)")
    if not (image.is_floating_point() or image.dtype == torch.uint8):
        raise UserError(f"{where}[{index}]: the image holds {str(image.dtype).removeprefix('torch.')} values, "
                        f"not uint8 (0..255) or floating point pixels")
    if isinstance(label, torch.Tensor) and label.numel() == 1 and not label.is_floating_point() \
            and label.dtype != torch.bool:
        label = int(label)
    if isinstance(label, bool) or not isinstance(label, numbers.Integral):  # numpy's integers are Integral
        raise UserError(f"{where}[{index}]: the label is {label!r}, not an int")
    return image, int(label)


def materialize(dataset, where: str) -> TensorSet:
    """Every item of ``dataset`` into one (N, C, H, W) float32 tensor of [0, 1] pixels and its labels."""
    count = len(dataset)
    if not count:
        raise UserError(f"{where} is empty")
    first, label = _item(dataset, 0, where)
    x = torch.empty((count, *first.shape), dtype=torch.float32)
    y = torch.empty(count, dtype=torch.int64)
    for index in range(count):
        image, label = (first, label) if index == 0 else _item(dataset, index, where)
        if image.shape != first.shape:
            raise UserError(f"{where}[{index}]: the image is {list(image.shape)}, but item 0's is "
                            f"{list(first.shape)} (every image must have one shape)")
        image = image.detach().cpu()
        x[index] = image.float().div_(255.0) if image.dtype == torch.uint8 else image.float()
        y[index] = label
    if not bool(torch.isfinite(x).all()):
        raise UserError(f"{where}: images hold NaN or infinite values")
    return TensorSet(x, y)


def load(spec: DataSpec) -> DataBundle:
    name = spec.name
    result = call_factory(spec)
    if not isinstance(result, tuple) or len(result) != 3:
        got = f"a tuple of {len(result)}" if isinstance(result, tuple) else f"a {type(result).__name__}"
        raise UserError(f"data {name}: the factory returned {got}, not (train_dataset, test_dataset, num_classes)")
    train_set, test_set, num_classes = result
    for which, dataset in (("train_dataset", train_set), ("test_dataset", test_set)):
        if not _is_dataset(dataset):
            raise UserError(f"data {name}: {which} is a {type(dataset).__name__}, not a torch Dataset (with len "
                            f"and indexing)")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise UserError(f"data {name}: num_classes is {num_classes!r}, not an int >= 1")
    train = materialize(train_set, f"data {name}: train_dataset")
    test = materialize(test_set, f"data {name}: test_dataset")
    if train.x.shape[1:] != test.x.shape[1:]:
        raise UserError(f"data {name}: the training images are {list(train.x.shape[1:])} but the test images are "
                        f"{list(test.x.shape[1:])}")
    check_labels(f"data {name}", train.y, test.y, num_classes)
    mean, std = channel_stats(train.x)
    normalize_(train.x, mean, std)
    normalize_(test.x, mean, std)
    classes = getattr(train_set, "classes", None)
    if not (isinstance(classes, (list, tuple)) and len(classes) == num_classes):
        classes = range(num_classes)
    return DataBundle(
        name=name,
        num_classes=num_classes,
        input_shape=tuple(train.x.shape[1:]),
        mean=mean,
        std=std,
        class_names=tuple(str(c) for c in classes),
        train=as_split(train, spec.placement),
        test=as_split(test, spec.placement),
    )
