"""The containers every data set is returned in: tensors in memory (TensorSet) or a torch Dataset, in a DataBundle."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from dpcluster.errors import UserError


@dataclass
class TensorSet:
    """A whole split as two tensors: normalized images ``x`` (N, C, H, W) float32 and labels ``y`` (N,) int64, or
    for a distilled set with soft labels class probabilities (N, K) float32 (cross-entropy takes either)."""

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self):
        if self.x.shape[0] != self.y.shape[0]:
            raise ValueError(f"x has {self.x.shape[0]} images but y has {self.y.shape[0]} labels")

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def to(self, device) -> "TensorSet":
        return TensorSet(self.x.to(device), self.y.to(device))

    def nbytes(self) -> int:
        return self.x.element_size() * self.x.nelement() + self.y.element_size() * self.y.nelement()


class TensorSetDataset(Dataset):
    """A TensorSet seen as a Dataset (for a DataLoader): yields (image tensor, int label); ``targets`` lists labels."""

    def __init__(self, tensors: TensorSet):
        self.tensors = tensors
        self.targets = tensors.y.tolist()

    def __len__(self) -> int:
        return len(self.tensors)

    def __getitem__(self, index: int):
        return self.tensors.x[index], self.targets[index]


def as_split(tensors: TensorSet, placement: str) -> TensorSet | Dataset:
    """An in-memory split as the placement asks: a Dataset for "loader", else the TensorSet itself."""
    return TensorSetDataset(tensors) if placement == "loader" else tensors


Split = TensorSet | Dataset


def split_off(split: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """``split`` as (the rest, a held-out ``fraction`` of it), drawn by ``seed``: a validation split that the rest
    never trains on. Pure: the same split, fraction and seed hold out the same examples."""
    count = len(split)
    held = max(1, round(count * fraction))
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    rest_index, held_index = order[held:].sort().values, order[:held].sort().values
    if isinstance(split, TensorSet):
        rest_index, held_index = rest_index.to(split.x.device), held_index.to(split.x.device)
        return TensorSet(split.x[rest_index], split.y[rest_index]), TensorSet(split.x[held_index], split.y[held_index])
    labels = labels_of(split)

    def subset(index: torch.Tensor) -> Dataset:
        part = torch.utils.data.Subset(split, index.tolist())
        part.targets = labels[index].tolist()  # so labels_of need not decode its images
        return part

    return subset(rest_index), subset(held_index)


def labels_of(split: Split) -> torch.Tensor:
    """The (N,) int64 labels of a split, without decoding images where the Dataset lists its ``targets``."""
    if isinstance(split, TensorSet):
        return split.y.detach().cpu().long()
    targets = getattr(split, "targets", None)
    if targets is None:  # Some other Dataset: the labels cost a pass over it.
        targets = [int(split[i][1]) for i in range(len(split))]
    return torch.as_tensor(targets, dtype=torch.int64)


@dataclass
class DataBundle:
    """One data set: both splits and what a model and the distillation code need to know about it."""

    name: str
    num_classes: int
    input_shape: tuple[int, int, int]
    # The per-channel normalization the images are in: image = (pixel - mean) / std, pixels in [0, 1]. For
    # ZCA-whitened data (``zca``) the images are not normalized pixels at all; mean and std are then 0 and 1
    # per channel (the identity), so nothing converts ZCA-space images as if they were.
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...]
    train: Split
    test: Split
    # Whether the images of both splits are ZCA-whitened as MTT does (fitted on the training split's [0, 1] pixels).
    zca: bool = False
    # Whose whitening space the images are in when ``zca``: "mtt", "frepo" or "kip" (see data/zca.py).
    zca_style: str = "mtt"

    @property
    def mirror_safe(self) -> bool:
        """Whether a horizontal mirror image keeps its label (not for digits), so flips may augment it."""
        from dpcluster.data.registry import source_for

        return source_for(self.name).mirror_safe

    def train_labels(self) -> torch.Tensor:
        return labels_of(self.train)

    def train_images_of_class(self, label: int, count: int, generator: torch.Generator) -> torch.Tensor:
        """``count`` random training images of class ``label`` as a (count, C, H, W) CPU tensor.

        Drawn without replacement when the class has at least ``count`` images; otherwise every image is used
        as evenly as possible (whole random permutations, then part of one more).
        """
        indices = torch.nonzero(self.train_labels() == label).flatten()
        if len(indices) == 0:
            raise UserError(f"{self.name}: class {label} has no training images")
        repeats = -(-count // len(indices))  # ceil
        order = torch.cat([torch.randperm(len(indices), generator=generator) for _ in range(max(repeats, 1))])
        chosen = indices[order[:count]]
        if isinstance(self.train, TensorSet):
            x = self.train.x
            return x[chosen.to(x.device)].cpu()
        if count == 0:
            return torch.empty((0, *self.input_shape))
        return torch.stack([self.train[int(i)][0] for i in chosen]).cpu()


def stratified_indices(labels: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """``count`` indices of ``labels`` drawn with ``seed``: each class's share of them is its share of the split
    (largest remainders settle the rounding), each class's picks at random within it, all in a seeded random
    order."""
    generator = torch.Generator().manual_seed(seed)
    classes, sizes = torch.unique(labels, return_counts=True)
    exact = sizes.double() * count / len(labels)
    take = exact.floor().long()
    short = count - int(take.sum())
    if short:  # the largest remainders get one more each (ties by class order)
        take[torch.argsort(exact - take, descending=True, stable=True)[:short]] += 1
    picked = []
    for label, n in zip(classes.tolist(), take.tolist()):
        members = torch.nonzero(labels == label).flatten()
        picked.append(members[torch.randperm(len(members), generator=generator)[:n]])
    chosen = torch.cat(picked)
    return chosen[torch.randperm(len(chosen), generator=generator)]


def measurement_subset(split: TensorSet | Dataset, count: int | None, seed: int) -> TensorSet:
    """A fixed subset of a split to measure networks on (the Hessian's batch, BatchNorm's recomputation, the
    curves' test examples) as one TensorSet: ``count`` examples drawn class-stratified with ``seed`` (the whole
    split for None, or a count past its size), so every method and level of a sweep is measured on the same
    examples and every class is there in its share. Splits stored by class (ImageFolder) would give one or two
    classes to their first examples."""
    if count is None or count >= len(split):
        index = torch.arange(len(split))
    else:
        index = stratified_indices(labels_of(split), count, seed)
    if isinstance(split, TensorSet):
        return TensorSet(split.x[index.to(split.x.device)], split.y[index.to(split.y.device)])
    items = [split[int(i)] for i in index]
    return TensorSet(torch.stack([x for x, _ in items]), torch.tensor([int(y) for _, y in items]))
