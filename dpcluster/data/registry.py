"""Data sets by name. A data set is one module in ``dpcluster/data/sources/`` that registers a
:class:`DataSource`: its loader is named by a ``package.module:function`` path and imported only when the data
is loaded, so checking a spec (planning a sweep) loads no torch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dpcluster.registry import Registry, import_package

if TYPE_CHECKING:
    from dpcluster.specs import DataSpec

Normalization = tuple[tuple[float, ...], tuple[float, ...]]


def _no_class_list(spec: DataSpec) -> None:
    from dpcluster.specs.base import check

    check(spec.classes is None, "classes", f"only name = 'imagenet' takes a class list ({spec.name} has its own)")


@dataclass(frozen=True)
class DataSource:
    name: str
    # One line for help texts and the README.
    summary: str
    # ``package.module:function`` loading it: DataSpec -> DataBundle (nothing is ever downloaded).
    loader: str
    # Whether it is read from ``data.root`` (every data set but the bundled digits).
    needs_root: bool = True
    # Whether a horizontal mirror image keeps its label (not for digits), so flips may augment it.
    mirror_safe: bool = True
    # The normalization MTT's code saves its sets of this data in (mean, std per channel), where MTT distils it:
    # a set made there is converted to this data's own normalization on import.
    mtt_normalization: Normalization | None = None
    # Its own checks of the rest of the DataSpec (raising SpecError); by default it takes no class list.
    check: Callable[[DataSpec], None] = _no_class_list


DATA_SOURCES: Registry[DataSource] = Registry("data set", lambda: import_package("dpcluster.data.sources"))
register = DATA_SOURCES.register
get_source = DATA_SOURCES.get
source_names = DATA_SOURCES.names
