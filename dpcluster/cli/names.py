"""How help texts list a registry's entries (distillers, set formats, backends): every name with its summary, read
from the registry, so a new entry appears in the help without an edit here."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol


class Entry(Protocol):
    name: str
    summary: str


def described(get: Callable[[str], Entry], names: Iterable[str]) -> str:
    """``name: summary; name: summary``, for a help text (escaped for argparse's %-formatting)."""
    return "; ".join(f"{entry.name}: {entry.summary}" for entry in map(get, names)).replace("%", "%%")
