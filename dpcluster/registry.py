"""A registry of named things (methods, job kinds) that their own modules add themselves to on import."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, Protocol, TypeVar


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
