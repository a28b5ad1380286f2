"""Folders of image files per class: PNG folders, SRe2L's ``new000/class000_id000.jpg`` and RDED's
``00000/class00000_id00000.jpg`` (JPEG or PNG). A class folder is named by a class index (zero-padded or not, or
SRe2L's ``new`` and three digits) or by a class name. Images hold 0-255 pixels; they are converted to the data's
channels and size, as [0, 1] pixels (normalized with its mean/std by ``read_distilled_set``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from dpcluster.distilled.format import DistilledSet
from dpcluster.distilled.normalization import pixel_files_only
from dpcluster.distilled.readers.common import stored_set
from dpcluster.distilled.registry import ReadOptions
from dpcluster.errors import UserError

if TYPE_CHECKING:
    from dpcluster.data.base import DataBundle

SUFFIXES = (".png", ".jpg", ".jpeg")
# SRe2L names class k's folder new%03d.
_SRE2L = re.compile(r"new(\d+)")


def _class_index(name: str, data: "DataBundle", where: Path) -> int:
    # A class name wins over an index: a data set could name classes "3", "7", ... out of order.
    if name in data.class_names:
        return data.class_names.index(name)
    sre2l = _SRE2L.fullmatch(name)
    index = sre2l.group(1) if sre2l else name
    if index.isdigit() and int(index) < data.num_classes:
        return int(index)
    raise UserError(f"{where}: folder {name!r} is neither a class index (0..{data.num_classes - 1}) "
                    f"nor a class name of {data.name}")


def _pixels(file: Path, data: "DataBundle") -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError  # PIL is only needed by this importer

    channels, height, width = data.input_shape
    if channels not in (1, 3):
        raise UserError(f"{file}: image files suit 1- and 3-channel data sets, {data.name} has {channels}")
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
    return raw.view(height, width, channels).permute(2, 0, 1).float() / 255.0


def import_images(root: str | Path, data: "DataBundle", options: ReadOptions = ReadOptions()) -> DistilledSet:
    """Import ``root/<class>/*.{png,jpg,jpeg}`` (``<class>`` as the module says); every class must be present
    with the same number of images. Images are converted to ``data``'s channels and size and scaled to [0, 1].

    Image files hold pixels, never ZCA-whitened values, and the whitening fitted on the data is not kept, so
    ZCA-whitened data (``data.zca``), ``options.zca`` and a stated normalization are refused with one line."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: no such folder of images (root/<class>/*.png or *.jpg)")
    pixel_files_only(options.normalization, str(root))
    if options.zca:
        raise UserError(f"{root}: image files hold pixels, not ZCA-whitened values; set distilled.zca = false, or "
                        f"import MTT's images_best.pt with distilled.format = \"mtt\"")
    if data.zca:
        raise UserError(f"{root}: image files cannot be used with ZCA-whitened data; set data.zca = false, or "
                        f"import MTT's whitened images_best.pt with distilled.format = \"mtt\" and "
                        f"distilled.zca = true")
    per_class: dict[int, list[Path]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        label = _class_index(folder.name, data, folder)
        if label in per_class:
            raise UserError(f"{folder}: class {label} has more than one folder")
        per_class[label] = sorted(f for f in folder.iterdir() if f.suffix.lower() in SUFFIXES)
    missing = [c for c in range(data.num_classes) if not per_class.get(c)]
    if missing:
        raise UserError(f"{root}: no images for classes {missing} (expected root/<class>/*.png or *.jpg)")
    counts = {c: len(files) for c, files in per_class.items()}
    if len(set(counts.values())) != 1:
        raise UserError(f"{root}: every class needs the same number of images, found {dict(sorted(counts.items()))}")
    images, labels = [], []
    for label in range(data.num_classes):
        for file in per_class[label]:
            images.append(_pixels(file, data))
            labels.append(label)
    # [0, 1] pixels (upstream None), which read_distilled_set normalizes with the data's mean/std.
    return stored_set(torch.stack(images), torch.tensor(labels, dtype=torch.int64), data, options, method="images",
                      upstream=None, origin=root, labels_where=root)
