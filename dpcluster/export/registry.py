"""Export formats by name: each is one module in ``dpcluster/export/formats/`` that registers an
:class:`ExportFormat`, whose ``write`` puts a :class:`~dpcluster.export.ticket.Ticket` into a folder."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dpcluster.registry import Registry, import_package

if TYPE_CHECKING:
    from dpcluster.export.ticket import Ticket


@dataclass(frozen=True)
class ExportFormat:
    name: str
    # One line for help texts and the README.
    summary: str
    # Writes the ticket into the folder given (its own subfolder of the export); returns the files written.
    write: Callable[[Ticket, Path], list[Path]]


FORMATS: Registry[ExportFormat] = Registry("export format", lambda: import_package("dpcluster.export.formats"))
register = FORMATS.register


def format_names() -> tuple[str, ...]:
    return FORMATS.names()


def get_format(name: str) -> ExportFormat:
    return FORMATS.get(name)
