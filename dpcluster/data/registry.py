"""Data sets by name. A data set is one module in ``dpcluster/data/sources/`` that registers a
:class:`DataSource`: its loader is named by a ``package.module:function`` path and imported only when the data
is loaded, so checking a spec (planning a sweep) loads no torch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dpcluster.registry import Registry, import_package
from dpcluster.user_code import check_factory_name, is_user_name

if TYPE_CHECKING:
    from dpcluster.specs import DataSpec


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
    # Its own checks of the rest of the DataSpec (raising SpecError); by default it takes no class list.
    check: Callable[[DataSpec], None] = _no_class_list
    # Whether the spec must name it with ``data.label`` (data of the user's: a folder, arrays, a factory), so two
    # such data sets never share an experiment id or a results partition.
    needs_label: bool = False
    # The DataSpec fields only some data sets read (``SOURCE_FIELDS``) that this one reads; set for another data
    # set they are refused.
    reads: tuple[str, ...] = ()


# DataSpec fields that only the data sets whose ``reads`` names them take.
SOURCE_FIELDS = ("layout", "size", "options")


DATA_SOURCES: Registry[DataSource] = Registry("data set", lambda: import_package("dpcluster.data.sources"))
register = DATA_SOURCES.register
get_source = DATA_SOURCES.get
source_names = DATA_SOURCES.names

def check_data_name(name: str, key: str) -> None:
    """A registered data set or ``package.module:function`` (checked for its form only: the code is imported when
    the data is loaded); else a SpecError naming ``key``."""
    from dpcluster.specs.base import check

    if is_user_name(name):
        check_factory_name(name, key)
    else:
        check(name in source_names(), key, f"must be one of {', '.join(source_names())} or "
                                           f"'package.module:function'; got {name!r}")


# What a factory's DataSpec may set of SOURCE_FIELDS.
FACTORY_READS = ("options",)


def readers(key: str) -> str:
    """Which data sets read the DataSpec field ``key`` (one of SOURCE_FIELDS), for messages."""
    names = [name for name in source_names() if key in get_source(name).reads]
    if key in FACTORY_READS:
        names.append("a package.module:function factory")
    return " and ".join(names) or "no data set"


def source_for(name: str) -> DataSource:
    """The data set ``name`` names: a registered one, or a user's factory (``package.module:function``, a function
    returning ``(train_dataset, test_dataset, num_classes)``; see ``dpcluster/data/factory.py``)."""
    if is_user_name(name):
        return DataSource(name=name, summary=f"the factory {name}", loader="dpcluster.data.factory:load",
                          needs_root=False, mirror_safe=False, needs_label=True, reads=FACTORY_READS)
    return get_source(name)
