"""``safetensors``: one ``ticket.safetensors`` for tools outside PyTorch: ``init.<key>``, ``rewind.<key>`` (where
the level's training starts at a rewind point), ``trained.<key>`` for every entry of the model's state (buffers
included), and ``mask.<key>`` (uint8, 1 = kept) for every pruned parameter; the ticket's identity in the file's
metadata."""

from __future__ import annotations

from pathlib import Path

from dpcluster.export.registry import ExportFormat, register


def write(ticket, folder: Path) -> list[Path]:
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name, state in ticket.states().items():
        tensors.update({f"{name}.{key}": value.contiguous() for key, value in state.items()})
    tensors.update({f"mask.{key}": value.to(torch.uint8).contiguous() for key, value in ticket.mask.items()})
    path = folder / "ticket.safetensors"
    save_file(tensors, str(path), metadata={key: str(value) for key, value in ticket.identity().items()})
    return [path]


SAFETENSORS = register(ExportFormat("safetensors", "safetensors: init.*, rewind.*, mask.*, trained.*", write))
