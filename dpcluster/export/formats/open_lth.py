"""``open_lth``: open_lth's level layout (``level_<round>/main/``), as its lottery runner leaves a level:
``mask.pth`` (int 0/1 per pruned parameter), ``sparsity_report.json`` (``total`` and ``unpruned``), the masked
weights the level's training starts from as ``model_ep<E>_it<I>.pth`` at that step (``model_ep0_it0.pth``
always: the masked initial weights), and the trained network at the end of training
(``model_ep<epochs>_it0.pth``). Keys are the model's own state-dict names (open_lth's models name theirs their
own way)."""

from __future__ import annotations

import json
from pathlib import Path

from dpcluster.export.registry import ExportFormat, register


def write(ticket, folder: Path) -> list[Path]:
    import torch

    from dpcluster.pruning.model_masks import masked_state

    level = folder / f"level_{ticket.round}" / "main"
    level.mkdir(parents=True, exist_ok=True)
    mask = {key: value.int() for key, value in ticket.mask.items()}
    written = [level / "mask.pth", level / "sparsity_report.json"]
    torch.save(mask, written[0])
    total = sum(value.numel() for value in mask.values())
    unpruned = sum(int(value.sum()) for value in mask.values())
    written[1].write_text(json.dumps({"total": float(total), "unpruned": float(unpruned)}, indent=4))
    states = ticket.states()
    starts = {(0, 0): states["init"]}
    if "rewind" in states:
        epoch, iteration = divmod(ticket.start_step, ticket.steps_per_epoch)
        starts[(epoch, iteration)] = states["rewind"]
    for (epoch, iteration), state in starts.items():
        path = level / f"model_ep{epoch}_it{iteration}.pth"
        torch.save(masked_state(state, ticket.mask), path)
        written.append(path)
    path = level / f"model_ep{ticket.spec.training.epochs}_it0.pth"
    torch.save(states["trained"], path)
    return written + [path]


OPEN_LTH = register(ExportFormat("open_lth", "open_lth's level_N/main/ (mask.pth, model_ep0_it0.pth, ...)", write))
