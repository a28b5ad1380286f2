"""``tensors``: a data set of the user's as arrays in ``spec.root``, ``train.pt`` and ``test.pt`` (each a dict with
tensors ``x`` and ``y``, read with ``torch.load(weights_only=True)``) or ``train.npz`` and ``test.npz`` (arrays
``x`` and ``y``, read with ``allow_pickle=False``): neither can run code.

``x`` is (N, C, H, W) or (N, H, W, C), or (N, H, W) for one channel: the layout is ``data.layout`` or, unset (or
"auto"), told from the shape: channels last when the last size is 1, 3 or 4 and the second is not. Images are
uint8 (0..255, scaled to [0, 1]) or floating point (pixels, [0, 1] by convention). ``y`` holds integer labels
0..C-1 with every class in the training split. Both splits are normalized with the training split's own
per-channel mean and standard deviation.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from dpcluster.data.base import DataBundle, TensorSet, as_split
from dpcluster.data.normalize import channel_stats, check_labels, normalize_
from dpcluster.errors import UserError
from dpcluster.specs.experiment import DataSpec

FORMATS = (".pt", ".npz")
CHANNEL_SIZES = (1, 3, 4)
TITLE = "tensors"


def find_files(root: Path) -> dict[str, Path]:
    """``train`` and ``test`` files of one format in ``root``; else one line naming what is missing."""
    if not root.is_dir():
        raise UserError(f"{TITLE}: data.root {root} is not a folder (expected train.pt and test.pt, or train.npz "
                        f"and test.npz, in it)")
    present = [suffix for suffix in FORMATS if (root / f"train{suffix}").is_file() or
               (root / f"test{suffix}").is_file()]
    if not present:
        raise UserError(f"{TITLE}: no train.pt and test.pt (or train.npz and test.npz) in {root}")
    if len(present) > 1:
        raise UserError(f"{TITLE}: {root} holds both .pt and .npz files; keep one pair (train and test) of one format")
    files = {split: root / f"{split}{present[0]}" for split in ("train", "test")}
    for path in files.values():
        if not path.is_file():
            raise UserError(f"{TITLE}: {path} not found (the {present[0]} pair is train{present[0]} and "
                            f"test{present[0]})")
    return files


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _read_pt(path: Path) -> tuple[object, object]:
    try:
        entry = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - unpickling errors, zip errors, refused globals, truncation
        raise UserError(f"{path}: cannot read as tensors saved by torch.save ({_first_line(error)})") from None
    if not isinstance(entry, dict):
        raise UserError(f"{path}: expected a dict with tensors 'x' and 'y', got a {type(entry).__name__}")
    missing = [key for key in ("x", "y") if key not in entry]
    if missing:
        raise UserError(f"{path}: no key {' or '.join(map(repr, missing))} (keys: {', '.join(map(repr, entry))}; "
                        f"expected 'x' images and 'y' labels)")
    return entry["x"], entry["y"]


def _read_npz(path: Path) -> tuple[object, object]:
    try:
        with np.load(path, allow_pickle=False) as arrays:
            missing = [key for key in ("x", "y") if key not in arrays.files]
            if missing:
                raise UserError(f"{path}: no array {' or '.join(map(repr, missing))} (arrays: "
                                f"{', '.join(map(repr, arrays.files))}; expected 'x' images and 'y' labels)")
            return arrays["x"], arrays["y"]
    except UserError:
        raise
    except ValueError as error:  # object arrays, which only pickling could read
        raise UserError(f"{path}: {_first_line(error)} (arrays of numbers only; objects are never unpickled)") \
            from None
    except (OSError, EOFError, zipfile.BadZipFile) as error:
        raise UserError(f"{path}: cannot read as a .npz archive ({_first_line(error)})") from None


def _as_tensor(value: object, path: Path, key: str) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise UserError(f"{path}: {key!r} holds {value.dtype} values, not numbers")
        if not value.dtype.isnative:  # torch reads native byte order only
            value = value.astype(value.dtype.newbyteorder("="))
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, torch.Tensor):
        return value.detach()
    raise UserError(f"{path}: {key!r} must be a tensor, got a {type(value).__name__}")


def layout_of(x: torch.Tensor, layout: str | None) -> str:
    """"nchw" or "nhwc" for the 4-d images ``x``: ``layout`` where set, else told from the shape."""
    if layout in ("nchw", "nhwc"):
        return layout
    return "nhwc" if x.shape[3] in CHANNEL_SIZES and x.shape[1] not in CHANNEL_SIZES else "nchw"


def _images(x: torch.Tensor, path: Path, layout: str | None) -> tuple[torch.Tensor, str]:
    """``x`` as (N, C, H, W) float32 pixels, and the layout it was read in."""
    if x.dtype == torch.bool or torch.is_complex(x) or (not x.is_floating_point() and x.dtype != torch.uint8):
        raise UserError(f"{path}: 'x' holds {str(x.dtype).removeprefix('torch.')} values; images must be uint8 "
                        f"(0..255) or floating point (pixels in [0, 1])")
    if x.dim() == 3:  # one channel, not stored
        x = x.unsqueeze(3 if layout == "nhwc" else 1)
    if x.dim() != 4:
        raise UserError(f"{path}: 'x' has shape {list(x.shape)}; expected images as (N, C, H, W), (N, H, W, C) or "
                        f"(N, H, W)")
    layout = layout_of(x, layout)
    if layout == "nhwc":
        x = x.permute(0, 3, 1, 2)
    if x.dtype == torch.uint8:
        return x.contiguous().float().div_(255.0), layout
    x = x.to(torch.float32).contiguous()
    if not bool(torch.isfinite(x).all()):
        raise UserError(f"{path}: 'x' holds NaN or infinite values")
    return x, layout


def _labels(y: torch.Tensor, path: Path, count: int) -> torch.Tensor:
    if y.dim() != 1:
        raise UserError(f"{path}: 'y' has shape {list(y.shape)}; expected one label per image, ({count},)")
    if y.is_floating_point() or y.dtype == torch.bool or torch.is_complex(y):
        raise UserError(f"{path}: 'y' holds {str(y.dtype).removeprefix('torch.')} values; labels must be integers")
    if len(y) != count:
        raise UserError(f"{path}: 'x' holds {count} image(s) but 'y' holds {len(y)} label(s)")
    return y.to(torch.int64)


def _split(path: Path, layout: str | None) -> tuple[TensorSet, str]:
    """The split in ``path`` and the layout its images were read in."""
    x, y = _read_pt(path) if path.suffix == ".pt" else _read_npz(path)
    x, y = _as_tensor(x, path, "x"), _as_tensor(y, path, "y")
    images, layout = _images(x, path, layout)
    labels = _labels(y, path, len(images))
    if not len(images):
        raise UserError(f"{path}: holds no image")
    return TensorSet(images, labels), layout


def load(spec: DataSpec) -> DataBundle:
    files = find_files(Path(spec.root))
    train, layout = _split(files["train"], spec.layout)
    # The test split is read in the layout the training split was found in, so both are read alike.
    test, _ = _split(files["test"], layout)
    if train.x.shape[1:] != test.x.shape[1:]:
        raise UserError(f"{TITLE}: the images of {files['train']} are {_chw(train.x)} (C x H x W) but those of "
                        f"{files['test']} are {_chw(test.x)}")
    if int(train.y.min()) < 0:
        raise UserError(f"{TITLE}: {files['train']} has label {int(train.y.min())}; labels are 0..C-1")
    num_classes = int(train.y.max()) + 1
    check_labels(f"{TITLE} in {spec.root}", train.y, test.y, num_classes)
    mean, std = channel_stats(train.x)
    normalize_(train.x, mean, std)
    normalize_(test.x, mean, std)
    return DataBundle(
        name=spec.name,
        num_classes=num_classes,
        input_shape=tuple(train.x.shape[1:]),
        mean=mean,
        std=std,
        class_names=tuple(str(c) for c in range(num_classes)),
        train=as_split(train, spec.placement),
        test=as_split(test, spec.placement),
    )


def _chw(x: torch.Tensor) -> str:
    return "x".join(map(str, x.shape[1:]))
