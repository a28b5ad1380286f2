"""Distillers and distilled-set formats by name.

A distiller (``distilled.source``) is one module in ``dpcluster/distilled/distillers/`` that registers a
:class:`Distiller`; a format a set is read in (``distilled.format``, with ``source = "file"``) is one module in
``dpcluster/distilled/formats/`` that registers a :class:`SetFormat`. Their code is named by a
``package.module:function`` path and imported only when it runs, so checking a spec (planning a sweep) and
building the CLI load no torch."""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dpcluster.distilled.normalization import UPSTREAM, Normalization
from dpcluster.registry import Registry, import_package

if TYPE_CHECKING:
    from dpcluster.specs import DistilledSpec

# The ``distilled.source`` that reads a set from ``distilled.path`` (in ``distilled.format``) instead of
# distilling one here.
FILE_SOURCE = "file"


@dataclass(frozen=True)
class Distiller:
    name: str
    # One line for help texts and the README.
    summary: str
    # ``package.module:function`` distilling a set: DistillRequest -> DistilledSet (see distilled/request.py).
    distil: str
    # Part of the cache key of every set it makes: bump it when a change to the algorithm changes its output for
    # the same settings, so stale cached sets are not reused.
    version: int
    # The field of DistilledSpec holding its settings (a Spec: part of the cache key; its ``iterations``, where it
    # has one, is what ``dpcluster distill --iterations`` sets), or None for a distiller without settings.
    settings: str | None = None

    def settings_of(self, spec: DistilledSpec) -> Any:
        """Its settings in ``spec`` (None where it has none)."""
        return getattr(spec, self.settings) if self.settings is not None else None


# distilled.labels: how a file's float labels are read. "auto": as the format's code means them (one-hot rows as
# classes, probabilities as they are, DATM's learned logits soft-maxed); "hard": each row's argmax; "softmax":
# each row taken as logits.
AUTO, HARD, SOFTMAX = "auto", "hard", "softmax"
LABEL_READINGS = (AUTO, HARD, SOFTMAX)


@dataclass(frozen=True)
class ReadOptions:
    """What a spec says of a set read from a file: ``distilled.zca``, ``.normalization``, ``.labels``, ``.entry``."""

    # The images are ZCA-whitened as data.zca whitens (MTT's --zca).
    zca: bool = False
    # The space the images are stored in (see dpcluster.distilled.normalization).
    normalization: str = UPSTREAM
    # How float labels are read (LABEL_READINGS).
    labels: str = AUTO
    # Which of a file's several sets (DC's res_*.pt keeps one per experiment); None: the only one.
    entry: int | None = None


@dataclass(frozen=True)
class SetFormat:
    name: str
    # One line for help texts and the README.
    summary: str
    # ``package.module:function`` reading a set: (path, DataBundle, ReadOptions) -> DistilledSet, the options
    # being what the spec says of the file (distilled.zca, .normalization, .labels, .entry; see
    # dpcluster/distilled/readers/common.py).
    reader: str
    # What ``distilled.normalization = "upstream"`` means: the (mean, std) the code writing this format normalizes
    # each data set with, by data-set name; None for formats that store pixels (image files) or record their own.
    upstream: Mapping[str, Normalization] | None = None
    # Whether a file holds several sets, one chosen by ``distilled.entry``.
    entries: bool = False
    # Whether the files record their normalization and whitening themselves (no distilled.normalization/zca).
    self_describing: bool = False


DISTILLER_REGISTRY: Registry[Distiller] = Registry(
    "distiller", lambda: import_package("dpcluster.distilled.distillers"))
register_distiller = DISTILLER_REGISTRY.register
get_distiller = DISTILLER_REGISTRY.get
distiller_names = DISTILLER_REGISTRY.names

SET_FORMATS: Registry[SetFormat] = Registry("distilled-set format",
                                             lambda: import_package("dpcluster.distilled.formats"))
register_format = SET_FORMATS.register
get_format = SET_FORMATS.get
format_names = SET_FORMATS.names


def source_names() -> tuple[str, ...]:
    """Every ``distilled.source``: the distillers, then ``"file"``."""
    return (*distiller_names(), FILE_SOURCE)

