"""``distilled.normalization``: the space an imported set's images are stored in, stated in one spec line.

- ``"upstream"`` (the default): the constants the code that wrote the format normalizes each data set with
  (``SetFormat.upstream``; MTT's, DC's, ...), the data's own for a data set that code does not know, or [0, 1]
  pixels for formats of image files.
- ``"data"``: already in this data set's own normalization.
- ``"pixels"``: [0, 1] pixels, not normalized.
- ``"MEAN,.../STD,..."``: explicit per-channel constants, e.g. ``"0.4914,0.4822,0.4465/0.247,0.243,0.261"``.

A set's images are converted from that space to the data's on import (``DistilledSet.matched_to``). A
ZCA-whitened set (``distilled.zca``) is in its data's whitened space, which has no mean/std to state. Importing
this module loads no torch: specs check the line with :func:`parse_normalization`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

from dpcluster.errors import UserError

if TYPE_CHECKING:
    from dpcluster.data.base import DataBundle

Normalization = tuple[tuple[float, ...], tuple[float, ...]]

UPSTREAM, DATA, PIXELS = "upstream", "data", "pixels"
NAMED = (UPSTREAM, DATA, PIXELS)


def parse_normalization(text: str) -> str | Normalization:
    """One of :data:`NAMED`, or the (mean, std) of ``"MEAN,.../STD,..."``; ValueError saying why otherwise."""
    if text in NAMED:
        return text
    mean_text, slash, std_text = text.partition("/")
    if not slash:
        raise ValueError(f"must be {', '.join(NAMED)} or \"MEAN,.../STD,...\" (per-channel constants); got {text!r}")
    try:
        mean = tuple(float(v) for v in mean_text.split(","))
        std = tuple(float(v) for v in std_text.split(","))
    except ValueError:
        raise ValueError(f"\"MEAN,.../STD,...\" needs numbers on both sides of the '/'; got {text!r}") from None
    if len(mean) != len(std):
        raise ValueError(f"{len(mean)} means but {len(std)} stds in {text!r}")
    if not all(math.isfinite(v) for v in mean) or not all(math.isfinite(s) and s > 0 for s in std):
        raise ValueError(f"means must be finite and stds positive in {text!r}")
    return mean, std


def source_normalization(text: str, data: "DataBundle", where: str,
                         upstream: Mapping[str, Normalization] | None) -> Normalization:
    """The (mean, std) a set's images are stored in, for ``distilled.normalization = text``, in a format whose
    code normalizes data sets with ``upstream`` (None: it stores pixels). A whitened set never comes here."""
    stated = parse_normalization(text)
    channels = data.input_shape[0]
    pixels = ((0.0,) * channels, (1.0,) * channels)
    if stated == UPSTREAM:
        if upstream is None:
            return pixels
        # A data set the format's code does not know (digits, the user's own) was distilled by code that
        # normalized it some other way: most likely with its own statistics, which are the data's.
        mean, std = upstream.get(data.name, (tuple(data.mean), tuple(data.std)))
    elif stated == DATA:
        mean, std = tuple(data.mean), tuple(data.std)
    elif stated == PIXELS:
        mean, std = pixels
    else:
        mean, std = stated
    if len(mean) != channels:
        raise UserError(f"{where}: distilled.normalization has {len(mean)} channels, data set {data.name!r} has "
                        f"{channels}")
    return tuple(mean), tuple(std)


def pixel_files_only(text: str, where: str) -> None:
    """Refuse a stated normalization for a format of image files (PNG, JPEG), which always hold 0-255 pixels."""
    if text not in (UPSTREAM, PIXELS):
        raise UserError(f"{where}: image files hold 0-255 pixels, whatever distilled.normalization says; set "
                        f"distilled.normalization = \"upstream\" (or \"pixels\")")
