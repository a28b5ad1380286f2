"""``folder``: a data set of the user's as an ImageFolder tree, ``root/train/<class>/<images>`` and
``root/val/<class>/<images>`` (the same class folders). Without ``val/``, a seeded stratified split of ``train/``
holds out ``data.test_fraction`` of each class (at least one image of every class stays in training) as the
test split, drawn with ``data.split_seed``.

Images are decoded once into memory, resized (aspect kept: scaled to cover, then centre-cropped) to
``data.size`` ([height, width]) or ``data.resolution`` square, and normalized with the training split's own
per-channel mean and standard deviation. Every image must have the same number of channels, which the data set
then has: grayscale ("L") gives 1, "RGB" 3, with alpha 2 or 4; palette and bilevel images count as the mode they
convert to. Classes are the folder names, in sorted order (torchvision's ``ImageFolder``).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from dpcluster.data.base import DataBundle, TensorSet, as_split
from dpcluster.data.normalize import channel_stats, check_labels, normalize_
from dpcluster.errors import UserError
from dpcluster.specs.experiment import DataSpec

TITLE = "folder"
# Modes PIL opens images in, as the mode they are read in (the channels they give).
MODES = {"1": "L", "L": "L", "I;16": None, "LA": "LA", "RGB": "RGB", "RGBA": "RGBA", "CMYK": "RGB",
         "YCbCr": "RGB", "LAB": None, "HSV": None}
CHANNELS = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}


def _image_folder(folder: Path):
    """torchvision's ImageFolder over ``folder`` (no image is opened yet); a missing or empty class is one line."""
    from torchvision import datasets

    try:
        return datasets.ImageFolder(str(folder))
    except FileNotFoundError as error:  # no class folder, or a class folder with no image file
        raise UserError(f"{TITLE}: {folder}: {_first_line(error)}") from None


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _mode(path: str) -> str:
    """The mode ``path`` is read in (its header only is read)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            mode = image.mode
            if mode == "P":
                return "RGBA" if "transparency" in image.info else "RGB"
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as error:
        raise UserError(f"{TITLE}: {path}: cannot read as an image ({_first_line(error)})") from None
    read = MODES.get(mode)
    if read is None:
        raise UserError(f"{TITLE}: {path}: images in mode {mode} are not read (use 8-bit grayscale, RGB, or either "
                        f"with alpha)")
    return read


def common_mode(paths: list[str]) -> str:
    """The mode every image of ``paths`` is read in; two that differ are named in one line."""
    first_path, first = None, None
    for path in paths:
        mode = _mode(path)
        if first is None:
            first_path, first = path, mode
        elif mode != first:
            raise UserError(f"{TITLE}: images of different kinds in one data set: {first_path} is {first} "
                            f"({CHANNELS[first]} channel(s)) but {path} is {mode} ({CHANNELS[mode]}); convert them "
                            f"to one")
    return first


def fit(image, height: int, width: int):
    """``image`` (PIL) scaled to cover height x width, aspect kept, and centre-cropped to it."""
    from PIL import Image

    w, h = image.size
    scale = max(height / h, width / w)
    size = (max(width, round(w * scale)), max(height, round(h * scale)))
    if size != (w, h):
        image = image.resize(size, Image.Resampling.BILINEAR)
    left, top = (size[0] - width) // 2, (size[1] - height) // 2
    return image.crop((left, top, left + width, top + height))


class _Decoded(Dataset):
    """Images at ``paths`` as (C, H, W) float tensors in [0, 1], read in ``mode`` and fitted to ``size``."""

    def __init__(self, paths: list[str], mode: str, size: tuple[int, int]):
        self.paths, self.mode, self.size = paths, mode, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        from PIL import Image
        from torchvision.transforms.functional import pil_to_tensor

        path = self.paths[index]
        try:
            with Image.open(path) as image:
                image = fit(image.convert(self.mode), *self.size)
                return pil_to_tensor(image).float().div_(255.0)
        except (OSError, Image.DecompressionBombError) as error:
            raise UserError(f"{TITLE}: {path}: cannot decode ({_first_line(error)})") from None


def decode(paths: list[str], mode: str, size: tuple[int, int], workers: int) -> torch.Tensor:
    """Every image at ``paths`` into one preallocated (N, C, H, W) tensor."""
    x = torch.empty((len(paths), CHANNELS[mode], *size), dtype=torch.float32)
    loader = DataLoader(_Decoded(paths, mode, size), batch_size=64, shuffle=False,
                        num_workers=min(workers, max(0, math.ceil(len(paths) / 64) - 1)))
    start = 0
    try:
        for images in loader:
            x[start:start + len(images)] = images
            start += len(images)
    except Exception as error:  # noqa: BLE001 - from a worker, the message is the remote traceback
        # Its last line is the error in the worker, which names the file.
        lines = [line for line in str(error).splitlines() if line.strip()] or [type(error).__name__]
        raise UserError(lines[-1].removeprefix("dpcluster.errors.UserError: ")) from None
    return x


def stratified_split(labels: list[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(training, test) indices: of each class's n images, round(n * fraction) go to test, at most n - 1 (so
    every class keeps a training image), picked at random with ``seed``; each list in index order."""
    generator = torch.Generator().manual_seed(seed)
    y = torch.tensor(labels, dtype=torch.int64)
    held = []
    for label in torch.unique(y).tolist():
        members = torch.nonzero(y == label).flatten()
        count = min(len(members) - 1, math.floor(len(members) * fraction + 0.5))
        held.append(members[torch.randperm(len(members), generator=generator)[:count]])
    test = torch.cat(held).sort().values if held else torch.empty(0, dtype=torch.int64)
    keep = torch.ones(len(y), dtype=torch.bool)
    keep[test] = False
    return torch.nonzero(keep).flatten().tolist(), test.tolist()


def load(spec: DataSpec) -> DataBundle:
    root = Path(spec.root)
    train_dir, val_dir = root / "train", root / "val"
    if not train_dir.is_dir():
        raise UserError(f"{TITLE}: no folder {train_dir} (expected root/train/<class>/<images>, and optionally "
                        f"root/val/<class>/<images>)")
    train_folder = _image_folder(train_dir)
    classes = tuple(train_folder.classes)
    if val_dir.is_dir():
        val_folder = _image_folder(val_dir)
        if tuple(val_folder.classes) != classes:
            only_train = sorted(set(classes) - set(val_folder.classes))
            only_val = sorted(set(val_folder.classes) - set(classes))
            raise UserError(f"{TITLE}: {val_dir} and {train_dir} hold different classes: "
                            + "; ".join(part for part in (
                                f"only in train/: {_names(only_train)}" if only_train else "",
                                f"only in val/: {_names(only_val)}" if only_val else "") if part))
        train_samples, test_samples = train_folder.samples, val_folder.samples
    else:
        train_index, test_index = stratified_split(train_folder.targets, spec.test_fraction, spec.split_seed)
        if not test_index:
            raise UserError(f"{TITLE}: {train_dir} has too few images to hold out data.test_fraction = "
                            f"{spec.test_fraction} of them as a test split (or add {val_dir})")
        train_samples = [train_folder.samples[i] for i in train_index]
        test_samples = [train_folder.samples[i] for i in test_index]
    size = tuple(spec.size) if spec.size is not None else (spec.resolution, spec.resolution)
    mode = common_mode([path for path, _ in train_samples + test_samples])
    splits = {}
    for split, samples in (("train", train_samples), ("test", test_samples)):
        x = decode([path for path, _ in samples], mode, size, spec.workers)
        splits[split] = TensorSet(x, torch.tensor([label for _, label in samples], dtype=torch.int64))
    check_labels(f"{TITLE} in {root}", splits["train"].y, splits["test"].y, len(classes))
    mean, std = channel_stats(splits["train"].x)
    for tensors in splits.values():
        normalize_(tensors.x, mean, std)
    return DataBundle(
        name=spec.name,
        num_classes=len(classes),
        input_shape=(CHANNELS[mode], *size),
        mean=mean,
        std=std,
        class_names=classes,
        train=as_split(splits["train"], spec.placement),
        test=as_split(splits["test"], spec.placement),
    )


def _names(names: list[str]) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
