"""ImageNet class subsets from an ImageFolder-style tree: ``root/{train,val}/<wnid>/<image files>``."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from dpcluster.data.base import DataBundle, TensorSet
from dpcluster.errors import UserError
from dpcluster.specs.experiment import DataSpec

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

# ImageNette (fast.ai): 10 easily told apart classes.
IMAGENETTE = ("n01440764", "n02102040", "n02979186", "n03000684", "n03028079",
              "n03394916", "n03417042", "n03425413", "n03445777", "n03888605")
# ImageNet-10 of the dataset-distillation literature (IDC, Kim et al. 2022): the first ten classes of the
# ImageNet-100 list of Tian et al.'s CMC, which IDC takes its subsets from.
IMAGENET10 = ("n02869837", "n01749939", "n02488291", "n02107142", "n13037406",
              "n02091831", "n04517823", "n04589890", "n03062245", "n01773797")

BUILT_IN = {"imagenet10": IMAGENET10, "imagenette": IMAGENETTE}
SPLITS = ("train", "val")


class SubsetImageFolder(datasets.ImageFolder):
    """An ImageFolder that sees only ``wnids``, labelled by their position in that list (not alphabetically)."""

    def __init__(self, root: str | Path, wnids: tuple[str, ...], transform=None):
        self.wnids = tuple(wnids)  # set before super().__init__, which calls find_classes
        super().__init__(str(root), transform=transform)

    def find_classes(self, directory):
        return list(self.wnids), {wnid: i for i, wnid in enumerate(self.wnids)}


def class_list(spec: DataSpec) -> tuple[str, ...]:
    wnids = BUILT_IN.get(spec.name) or tuple(spec.classes)
    duplicates = sorted({w for w in wnids if wnids.count(w) > 1})
    if duplicates:
        raise UserError(f"data.classes lists {', '.join(duplicates)} more than once")
    return wnids


def _check_folders(root: Path, wnids: tuple[str, ...]) -> None:
    """Raise a one-line UserError naming the first expected folder that is missing."""
    for folder in [root] + [root / split for split in SPLITS] + [root / split / w for split in SPLITS for w in wnids]:
        if not folder.is_dir():
            raise UserError(f"ImageNet subset not found: expected the folder {folder} "
                            f"(layout root/train/<wnid>/*.JPEG and root/val/<wnid>/...; nothing is downloaded)")


def transform(resolution: int):
    return transforms.Compose([
        transforms.Resize(resolution),  # shorter side to `resolution`, aspect kept
        transforms.CenterCrop(resolution),
        transforms.ToTensor(),
        transforms.Normalize(MEAN, STD),
    ])


def materialize(dataset: SubsetImageFolder, resolution: int, workers: int) -> TensorSet:
    """Decode every image once into one preallocated tensor (no second copy from concatenating batches)."""
    x = torch.empty((len(dataset), 3, resolution, resolution), dtype=torch.float32)
    loader = DataLoader(dataset, batch_size=64, shuffle=False, num_workers=workers)
    start = 0
    try:
        for images, _labels in loader:
            x[start:start + len(images)] = images
            start += len(images)
    except OSError as error:  # PIL's UnidentifiedImageError and truncated files
        # From a worker process the message is the whole remote traceback; its last line names the file.
        lines = [line for line in str(error).splitlines() if line.strip()] or [type(error).__name__]
        raise UserError(f"ImageNet subset under {dataset.root}: an image could not be decoded: {lines[-1]}") from error
    return TensorSet(x, torch.tensor(dataset.targets, dtype=torch.int64))


def load(spec: DataSpec) -> DataBundle:
    wnids = class_list(spec)
    root = Path(spec.root)
    if spec.zca:  # refused before anything is read; whitening itself is load_data's
        from dpcluster.data import zca
        if spec.placement == "loader":
            raise zca.in_memory_error(spec.name)
        zca.check_size((3, spec.resolution, spec.resolution), spec.name)
    _check_folders(root, wnids)
    splits = {}
    for split in SPLITS:
        try:
            splits[split] = SubsetImageFolder(root / split, wnids, transform=transform(spec.resolution))
        except FileNotFoundError as error:  # a class folder with no image file in it
            raise UserError(f"ImageNet subset under {root / split}: {(str(error).splitlines() or [''])[0]}") from error
    # ZCA needs the images in memory, so with it "auto" decodes them up front as "device" does.
    if spec.placement == "device" or (spec.zca and spec.placement == "auto"):
        splits = {split: materialize(ds, spec.resolution, spec.workers) for split, ds in splits.items()}
    return DataBundle(
        name=spec.name,
        num_classes=len(wnids),
        input_shape=(3, spec.resolution, spec.resolution),
        mean=MEAN,
        std=STD,
        class_names=wnids,
        train=splits["train"],
        test=splits["val"],
    )
