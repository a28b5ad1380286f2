"""NumPy ``.npz`` sets of the kernel and JAX methods: KIP's released files (``images``, ``labels``), FRePo's
``np.savez(image=x_proto, label=y_proto)``, and RCIG's or FRePo's parameters saved as ``x_proto`` / ``y_proto``.
Images are channels-last (N, H, W, C); labels are one-hot rows (KIP's and FRePo's centred ``1 - 1/C`` / ``-1/C``,
possibly scaled), class probabilities, class indices, or learned regression targets (which are no distribution:
``distilled.labels`` says how to read them). Read without pickle."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from dpcluster.distilled.format import DistilledSet
from dpcluster.distilled.readers.common import check_zca, checked_images, checked_labels, stored_set
from dpcluster.distilled.registry import ReadOptions
from dpcluster.errors import UserError

if TYPE_CHECKING:
    from dpcluster.data.base import DataBundle

# (images key, labels key): KIP's, FRePo's, their parameters'.
KEYS = (("images", "labels"), ("image", "label"), ("x_proto", "y_proto"))


def _arrays(file: Path) -> dict:
    import numpy as np

    if not file.is_file():
        raise UserError(f"{file}: no such file")
    if not zipfile.is_zipfile(file):
        # np.load would try anything else as a pickle.
        raise UserError(f"{file}: not a readable .npz archive (np.savez writes a zip file)")
    try:
        with np.load(file, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except ValueError as error:  # an object array, which only pickle could read
        raise UserError(f"{file}: refused: it holds Python objects that only pickle could load ({error})") from None
    except (OSError, zipfile.BadZipFile, EOFError) as error:
        raise UserError(f"{file}: not a readable .npz archive ({error})") from None


def import_npz(path: str | Path, data: "DataBundle", options: ReadOptions = ReadOptions()) -> DistilledSet:
    """The set in the ``.npz`` file ``path``, its images in ``options.normalization``: by default the per-channel
    standardization FRePo's code uses (KIP's files standardize with the same statistics of the training set).

    A whitened set (``options.zca``: KIP's ``zca`` files, FRePo's and RCIG's for every data set but the MNISTs)
    is in its code's whitening space, not MTT's: it needs data whitened the same way, ``data.zca = "frepo"``
    (FRePo, RCIG) or ``"kip"`` (see :func:`dpcluster.data.zca.whiten`)."""
    from dpcluster.distilled.formats.npz import NPZ

    file = Path(path)
    arrays = _arrays(file)
    keys = next((pair for pair in KEYS if all(key in arrays for key in pair)), None)
    if keys is None:
        expected = " or ".join(f"{a!r}/{b!r}" for a, b in KEYS)
        raise UserError(f"{file}: expected arrays {expected}, found {', '.join(map(repr, arrays)) or 'none'}")
    # Their whitening spaces, not MTT's: data.zca = "frepo" (FRePo, RCIG) or "kip" whitens the data the same way.
    check_zca(file, options.zca, data, styles=("frepo", "kip"), whose="FRePo, RCIG or KIP")
    raw_images, raw_labels = arrays[keys[0]], arrays[keys[1]]
    if raw_images.ndim != 4:
        raise UserError(f"{file}: {keys[0]!r} must be channels-last images (N, H, W, C), got shape "
                        f"{list(raw_images.shape)}")
    if raw_images.dtype.kind != "f":
        raise UserError(f"{file}: {keys[0]!r} must hold floats, got {raw_images.dtype}")
    where = f"{file} {keys[0]!r}"
    images = checked_images(torch.from_numpy(raw_images.astype("float32")).permute(0, 3, 1, 2).contiguous(),
                            data, where)
    if raw_labels.dtype.kind not in "fiu":
        raise UserError(f"{file}: {keys[1]!r} must hold numbers, got {raw_labels.dtype}")
    labels = checked_labels(torch.from_numpy(raw_labels.copy()), len(images), data, f"{file} {keys[1]!r}",
                            options.labels, logits=False)
    return stored_set(images, labels, data, options, method="npz", upstream=NPZ.upstream, origin=file,
                      labels_where=f"{file} {keys[1]!r}")
