"""The project's own distilled-set format: a folder with ``images.pt``, ``labels.pt`` and ``distilled.json``.

``images.pt`` holds float32 (N, C, H, W) images normalized like the source data set, ``labels.pt`` int64 (N,)
class indices, and ``distilled.json`` what is needed to use them (source data set, normalization, the learned
learning rate where the method has one). Every ``.pt`` is read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import torch

from dpcluster.errors import UserError

if TYPE_CHECKING:
    from dpcluster.data.base import DataBundle, TensorSet
    from dpcluster.distilled.registry import ReadOptions

FORMAT = "dpcluster-distilled"
VERSION = 1
IMAGES, LABELS, SIDECAR = "images.pt", "labels.pt", "distilled.json"


def numpy_scalars() -> list:
    """What ``torch.load(weights_only=True)`` must be allowed to read NumPy scalars (DC's ``accs_all_exps`` holds
    numpy.float64 accuracies): the scalar constructor under NumPy 1's and 2's names, and the dtypes. Rebuilding a
    scalar from its bytes and dtype runs no code of the file's."""
    import numpy as np

    scalar = (getattr(np, "_core", None) or np.core).multiarray.scalar  # NumPy 2 moved it to numpy._core

    dtypes = [type(np.dtype(kind)) for kind in ("f8", "f4", "f2", "i8", "i4", "u1", "b1")]
    return [scalar, (scalar, "numpy.core.multiarray.scalar"), np.dtype, *dtypes]


def load_tensor_file(path: Path, allowed: list | None = None) -> Any:
    """``torch.load(path, weights_only=True)`` onto the CPU, every failure turned into a one-line UserError;
    ``allowed``: the few more globals the format needs (``torch.serialization.safe_globals``)."""
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals(allowed or []):
            # torch warns about the pickle protocol of files it then refuses; the refusal below says enough.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            # map_location: files saved from a GPU must load on a CPU-only machine too.
            return torch.load(path, map_location="cpu", weights_only=True)
    except OSError as error:
        raise UserError(f"{path}: cannot read: {error.strerror or error}") from None
    except Exception as error:  # noqa: BLE001 - torch raises many types for bad files
        text = str(error)
        if "Weights only load failed" in text:
            blocked = re.search(r"GLOBAL (\S+)", text)
            what = f" (it references {blocked.group(1)})" if blocked else ""
            # Not distinguishable from garbage bytes in every case, so say both; never fall back to a full load.
            raise UserError(f"{path}: refused: it is not a plain tensor file and would need arbitrary code to load"
                            f"{what}, or it is corrupt") from None
        first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
        raise UserError(f"{path}: corrupt or truncated ({first})") from None


def is_distribution(labels: torch.Tensor) -> bool:
    """Whether every row of ``labels`` (N, K) is class probabilities: entries >= 0, summing to 1."""
    sums = labels.sum(dim=1)
    return bool((labels >= 0).all()) and bool(torch.allclose(sums, torch.ones_like(sums), atol=1e-4))


def _shape_problem(images: torch.Tensor, labels: torch.Tensor, num_classes: int,
                   images_per_class: int) -> tuple[str, str] | None:
    """What is wrong with the tensors, as (file, message), or None. The file names the culprit in errors."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or not images.is_floating_point():
        got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
        return IMAGES, f"expected a float tensor (N, C, H, W), got {got}"
    hard = isinstance(labels, torch.Tensor) and labels.dim() == 1 and labels.dtype == torch.int64
    soft = isinstance(labels, torch.Tensor) and labels.dim() == 2 and labels.dtype == torch.float32
    if not (hard or soft):
        got = f"{labels.dtype} {tuple(labels.shape)}" if isinstance(labels, torch.Tensor) else type(labels).__name__
        return LABELS, f"expected an int64 tensor (N,) of class indices or float32 (N, K) probabilities, got {got}"
    if len(labels) != len(images):
        return LABELS, f"{len(labels)} labels for {len(images)} images"
    if soft:
        if labels.shape[1] != num_classes:
            return LABELS, f"soft labels of {labels.shape[1]} classes for a set of {num_classes}"
        if not is_distribution(labels):
            return LABELS, "soft labels must be class probabilities (rows >= 0, summing to 1)"
        if len(labels) != images_per_class * num_classes:
            return LABELS, f"{len(labels)} soft-labelled images, expected {images_per_class} per class"
    elif len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        return LABELS, f"labels must be in 0..{num_classes - 1}, found {int(labels.min())}..{int(labels.max())}"
    if hard:
        counts = torch.bincount(labels, minlength=num_classes).tolist()
        if any(count != images_per_class for count in counts):
            return LABELS, f"expected {images_per_class} images of every class, found per-class counts {counts}"
    if not bool(torch.isfinite(images).all()):
        return IMAGES, "images contain NaN or infinite values"
    return None


@dataclass(frozen=True, eq=False)
class DistilledSet:
    """A distilled (synthetic) training set, normalized with ``mean``/``std`` of ``source_dataset``; a ZCA-whitened
    set (``zca``) is in the whitened space of its data instead, with the identity normalization (0 and 1)."""

    images: torch.Tensor
    # Class indices (N,) int64, or soft labels: class probabilities (N, K) float32, trained on with soft
    # cross-entropy (as DATM's learned labels and TESLA's teacher labels are).
    labels: torch.Tensor
    source_dataset: str
    images_per_class: int
    method: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    learned_lr: float | None
    num_classes: int
    # The images are ZCA-whitened (MTT's --zca); such a set is used only with ZCA-whitened real data, whitened
    # in the same space (``zca_style``: "mtt", "frepo" or "kip"; see dpcluster/data/zca.py).
    zca: bool = False
    zca_style: str = "mtt"
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        # Kept on the CPU and detached: the set is data, moved to a device by whoever trains on it.
        object.__setattr__(self, "images", self.images.detach().to("cpu", torch.float32).contiguous())
        object.__setattr__(self, "labels", self.labels.detach().cpu().contiguous())
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        problem = _shape_problem(self.images, self.labels, self.num_classes, self.images_per_class)
        if problem:
            raise UserError(f"distilled set: {problem[0]}: {problem[1]}")
        if len(self.mean) != self.images.shape[1] or len(self.std) != self.images.shape[1]:
            raise UserError(f"distilled set: normalization has {len(self.mean)} means / {len(self.std)} stds "
                            f"for {self.images.shape[1]} channels")
        if self.learned_lr is not None and not (math.isfinite(self.learned_lr) and self.learned_lr > 0):
            raise UserError(f"distilled set: learned lr must be a positive number, got {self.learned_lr}")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def soft_labels(self) -> bool:
        """Whether the labels are class probabilities (N, K) rather than class indices."""
        return self.labels.dim() == 2

    @property
    def label_kind(self) -> str:
        """"soft" or "hard", as the sidecar records it."""
        return "soft" if self.soft_labels else "hard"

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def training_augmentation(self, data: "DataBundle") -> str:
        """The augmentation to train on this set with: the one it was distilled with; for a set that does not
        say (an import), DSA as MTT uses, without flips where they change labels."""
        from dpcluster.data.augment import resolve_augmentation

        return self.extra.get("augmentation") or resolve_augmentation("auto", data)

    def as_tensor_set(self) -> "TensorSet":
        from dpcluster.data.base import TensorSet
        return TensorSet(self.images, self.labels)

    def renormalized(self, mean: tuple[float, ...], std: tuple[float, ...]) -> "DistilledSet":
        """The same images expressed in another normalization (exact up to float rounding)."""
        shape = (1, -1, 1, 1)
        raw = self.images * torch.tensor(self.std).view(shape) + torch.tensor(self.mean).view(shape)
        images = (raw - torch.tensor(mean, dtype=torch.float32).view(shape)) / torch.tensor(std).view(shape)
        return replace(self, images=images, mean=tuple(mean), std=tuple(std))

    def matched_to(self, data: "DataBundle", where: str = "distilled set") -> "DistilledSet":
        """This set checked against the data set it is used with, renormalized to its mean/std if needed.

        A ZCA-whitened set is never renormalized: its images are whitened pixels, not mean/std-normalized ones,
        and whitened data has the identity normalization (mean 0, std 1; see ``DataBundle``). It is used only
        with whitened data, and a non-whitened set only with non-whitened data."""
        if self.source_dataset != data.name:
            raise UserError(f"{where}: distilled from {self.source_dataset!r}, but the data set is {data.name!r}")
        if self.num_classes != data.num_classes:
            raise UserError(f"{where}: has {self.num_classes} classes, data set {data.name!r} has {data.num_classes}")
        if self.input_shape != tuple(data.input_shape):
            raise UserError(f"{where}: images are {list(self.input_shape)} (C, H, W), data set {data.name!r} "
                            f"needs {list(data.input_shape)}")
        if self.zca != data.zca:
            raise UserError(f"{where}: the set is {'' if self.zca else 'not '}ZCA-whitened but the real data is "
                            f"{'' if data.zca else 'not '}(set data.zca = {str(self.zca).lower()})")
        if self.zca and self.zca_style != data.zca_style:
            raise UserError(f"{where}: the set is in {self.zca_style}'s whitening space, the data in "
                            f"{data.zca_style}'s; set data.zca = \"{self.zca_style}\"")
        if self.zca:
            if not _identity(self.mean, self.std):
                # Older versions fitted ZCA on mean/std-normalized images and kept those constants: such a
                # set lives in another whitened space than today's data (fitted on raw pixels, as MTT does).
                raise UserError(f"{where}: a ZCA-whitened set with normalization mean {list(self.mean)}, std "
                                f"{list(self.std)} (whitened before ZCA was fitted on raw pixels as MTT does); "
                                f"distil or import it again")
            return self
        same = len(self.mean) == len(data.mean) and all(
            math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-7)
            for a, b in zip(self.mean + self.std, tuple(data.mean) + tuple(data.std)))
        return self if same else self.renormalized(tuple(data.mean), tuple(data.std))

    # --- files ------------------------------------------------------------------------------------
    def sidecar(self) -> dict[str, Any]:
        normalization: dict[str, Any] = {"mean": list(self.mean), "std": list(self.std)}
        if self.zca:
            normalization["zca"] = True
            if self.zca_style != "mtt":  # sets whitened as MTT does say only zca, as before styles existed
                normalization["zca_style"] = self.zca_style
        return {
            "format": FORMAT, "version": VERSION, "source_dataset": self.source_dataset,
            "images_per_class": self.images_per_class, "method": self.method, "normalization": normalization,
            "learned_lr": self.learned_lr, "num_classes": self.num_classes, "labels": self.label_kind,
            "input_shape": list(self.input_shape), "extra": dict(self.extra),
        }

    def save(self, folder: str | Path, overwrite: bool = False) -> Path:
        """Write the set to ``folder`` atomically: files go to a temporary sibling that is then renamed, so a
        reader (another job sharing the cache) sees either no folder or a whole one."""
        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
        try:
            torch.save(self.images, tmp / IMAGES)
            torch.save(self.labels, tmp / LABELS)
            (tmp / SIDECAR).write_text(json.dumps(self.sidecar(), indent=2) + "\n")
            if overwrite and folder.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old-", dir=folder.parent))
                os.replace(folder, old / "set")
                os.replace(tmp, folder)
                shutil.rmtree(old, ignore_errors=True)
            else:
                try:
                    # A directory rename never replaces a non-empty folder, so a concurrent writer is not clobbered.
                    os.rename(tmp, folder)
                except OSError:
                    raise UserError(f"{folder}: already exists (not overwritten)") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "DistilledSet":
        folder = Path(folder)
        if not folder.is_dir():
            raise UserError(f"{folder}: no such distilled-set folder")
        meta = _read_sidecar(folder / SIDECAR)
        images = load_tensor_file(folder / IMAGES)
        labels = load_tensor_file(folder / LABELS)
        problem = _shape_problem(images, labels, meta["num_classes"], meta["images_per_class"])
        if problem:
            raise UserError(f"{folder / problem[0]}: {problem[1]}")
        if list(images.shape[1:]) != meta["input_shape"]:
            raise UserError(f"{folder / IMAGES}: images are {list(images.shape[1:])}, "
                            f"{SIDECAR} says input_shape {meta['input_shape']}")
        norm = meta["normalization"]
        if not isinstance(meta.get("extra") or {}, dict):
            raise UserError(f"{folder / SIDECAR}: 'extra' must be a table (a JSON object), got {meta['extra']!r}")
        try:
            distilled = cls(images=images, labels=labels, source_dataset=meta["source_dataset"],
                            images_per_class=meta["images_per_class"], method=meta["method"],
                            mean=tuple(norm["mean"]), std=tuple(norm["std"]), learned_lr=meta["learned_lr"],
                            num_classes=meta["num_classes"], zca=bool(norm.get("zca", False)),
                            zca_style=str(norm.get("zca_style", "mtt")), extra=meta.get("extra") or {})
        except UserError as error:
            raise UserError(f"{folder}: {error}") from None
        if meta.get("labels", "hard") != distilled.label_kind:
            raise UserError(f"{folder / LABELS}: {distilled.label_kind} labels, but {SIDECAR} says "
                            f"{meta.get('labels')!r}")
        return distilled


def read_set_folder(path: str | Path, data: "DataBundle", options: "ReadOptions") -> DistilledSet:
    """The ``dpcluster`` format's reader: the set in ``path``. It records its normalization and ZCA whitening
    itself (the spec may not state them), so ``data`` is not read here; ``options.labels = "hard"`` takes soft
    labels' argmax."""
    distilled = DistilledSet.load(path)
    if options.labels == "hard" and distilled.soft_labels:
        distilled = replace(distilled, labels=distilled.labels.argmax(dim=1))
    return distilled


def _identity(mean: tuple[float, ...], std: tuple[float, ...]) -> bool:
    """Whether ``mean``/``std`` is the identity normalization (0 and 1 per channel) of ZCA-space images."""
    return all(m == 0 for m in mean) and all(s == 1 for s in std)


def _read_sidecar(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text())
    except OSError as error:
        raise UserError(f"{path}: cannot read: {error.strerror or error}") from None
    except json.JSONDecodeError as error:
        raise UserError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise UserError(f"{path}: not a {FORMAT} sidecar (missing \"format\": \"{FORMAT}\")")
    if meta.get("version") != VERSION:
        raise UserError(f"{path}: version {meta.get('version')!r} is not supported (this reader knows {VERSION})")
    kinds = {"source_dataset": str, "images_per_class": int, "method": str, "normalization": dict,
             "num_classes": int, "input_shape": list}
    for key, kind in kinds.items():
        if not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool):
            raise UserError(f"{path}: {key!r} missing or not a {kind.__name__}")
    norm = meta["normalization"]
    for key in ("mean", "std"):
        if not isinstance(norm.get(key), list) or not all(isinstance(v, (int, float)) for v in norm[key]):
            raise UserError(f"{path}: normalization.{key} missing or not a list of numbers")
    lr = meta.get("learned_lr")
    if lr is not None and (isinstance(lr, bool) or not isinstance(lr, (int, float))):
        raise UserError(f"{path}: learned_lr must be null or a number, got {lr!r}")
    meta["learned_lr"] = None if lr is None else float(lr)
    if meta["num_classes"] < 1 or meta["images_per_class"] < 1:
        raise UserError(f"{path}: num_classes and images_per_class must be >= 1")
    return meta
