"""``torch_prune``: state dicts in ``torch.nn.utils.prune``'s form, ``<module>.<param>_orig`` and
``<module>.<param>_mask`` for every pruned parameter, everything else as the model has it. They load into the
same architecture after ``prune.identity(module, param)`` on each pruned parameter (``load_state_dict``), or
``_orig`` into the parameter and ``prune.custom_from_mask`` with ``_mask``.

    torch_prune/trained.pt   the level's trained subnetwork
    torch_prune/init.pt      the initial weights under the mask (what a retraining from initialisation starts from)
    torch_prune/rewind.pt    the rewind point's weights under the mask, where the level's training starts there
"""

from __future__ import annotations

from pathlib import Path

from dpcluster.export.registry import ExportFormat, register


def pruned_form(state: dict, mask: dict) -> dict:
    """``state`` with each masked parameter as ``_orig`` (its values as stored: prune multiplies them by the mask
    in every forward pass) and ``_mask`` (float, as prune's buffers are), in the state's own order."""
    out = {}
    for key, value in state.items():
        if key in mask:
            out[f"{key}_orig"] = value
            out[f"{key}_mask"] = mask[key].to(value.dtype)
        else:
            out[key] = value
    return out


def write(ticket, folder: Path) -> list[Path]:
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, state in ticket.states().items():
        path = folder / f"{name}.pt"
        torch.save(pruned_form(state, ticket.mask), path)
        written.append(path)
    return written


TORCH_PRUNE = register(ExportFormat("torch_prune", "torch.nn.utils.prune state dicts (<name>_orig, <name>_mask)", write))
