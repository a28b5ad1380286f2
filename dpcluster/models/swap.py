"""Modules of a network swapped for others for a while (SyncBatchNorm during data-parallel training, twice
differentiable activations during Hessian-vector products), and put back afterwards."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from torch import nn


@contextlib.contextmanager
def swapped_modules(model: nn.Module, replacement: Callable[[nn.Module], nn.Module | None]) -> Iterator[None]:
    """Within it, every submodule for which ``replacement`` gives a module is that module; the originals are put
    back at the end, whatever happened."""
    swapped = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if (new := replacement(child)) is not None:
                setattr(parent, name, new)
                swapped.append((parent, name, child))
    try:
        yield
    finally:
        for parent, name, original in reversed(swapped):
            setattr(parent, name, original)
