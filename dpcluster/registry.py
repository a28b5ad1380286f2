"""A registry of named things (methods, job kinds, networks, data sets, ...) that their own modules add themselves
to on import; and the two helpers every registry's entries use: importing each module of a package (a new entry
is one new module there), and resolving ``package.module:attribute`` paths (an entry's code, loaded only when it
is used, so naming an entry costs no import of torch)."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar


class Named(Protocol):
    name: str


T = TypeVar("T", bound=Named)


class Registry(Generic[T]):
    def __init__(self, what: str, load_all: Callable[[], None]):
        # ``load_all`` imports every module that registers an item, so the registry is complete whoever asks first.
        self.what, self._load_all, self._items = what, load_all, {}

    def register(self, item: T) -> T:
        if item.name in self._items:
            raise ValueError(f"{self.what} {item.name!r} is registered twice")
        self._items[item.name] = item
        return item

    def get(self, name: str) -> T:
        self._load_all()
        try:
            return self._items[name]
        except KeyError:
            raise ValueError(f"unknown {self.what} {name!r}; known: {', '.join(self._items)}") from None

    def names(self) -> tuple[str, ...]:
        """Every name, in the order the modules registered them."""
        self._load_all()
        return tuple(self._items)


def import_package(package: str) -> None:
    """Import every module of ``package`` (each registers its entries), in name order."""
    module = importlib.import_module(package)
    for info in sorted(pkgutil.iter_modules(module.__path__), key=lambda m: m.name):
        importlib.import_module(f"{package}.{info.name}")


def resolve(path: str) -> Any:
    """The object ``package.module:attribute`` names, importing its module; ImportError or AttributeError (with
    the path) when either is not there."""
    module_name, _, attribute = path.partition(":")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise AttributeError(f"module {module_name!r} has no {attribute!r}") from None
