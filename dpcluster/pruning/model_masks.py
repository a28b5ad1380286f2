"""Where masks meet a model: which weights are prunable, applying a mask, and capturing/restoring state."""

from __future__ import annotations

import torch
from torch import nn

from dpcluster.errors import UserError
from dpcluster.pruning.masks import Mask, Weights

PRUNABLE = (nn.Conv2d, nn.Linear)


def prunable_weights(model: nn.Module, ignore: tuple[str, ...] = ()) -> Weights:
    """Conv and linear weights by parameter name, leaving out the modules named in ``ignore``."""
    modules = dict(model.named_modules())
    unknown = [name for name in ignore if name not in modules or not isinstance(modules[name], PRUNABLE)]
    if unknown:
        known = ", ".join(n for n, m in modules.items() if isinstance(m, PRUNABLE))
        raise UserError(f"pruning.ignore: {', '.join(unknown)} is not a conv or linear layer of this model "
                        f"(its layers: {known})")
    return {f"{name}.weight": module.weight for name, module in modules.items()
            if isinstance(module, PRUNABLE) and name not in ignore}


@torch.no_grad()
def apply_mask(model: nn.Module, mask: Mask) -> None:
    """Zero the pruned weights in place."""
    params = dict(model.named_parameters())
    for name, m in mask.items():
        params[name].mul_(m.to(params[name].device, params[name].dtype))


def capture_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of every parameter and buffer (running stats and counters included)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def restore_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    model.load_state_dict(state, strict=True)


def masked_state(state: dict[str, torch.Tensor], mask: Mask) -> dict[str, torch.Tensor]:
    """``state`` with the pruned weights zeroed (a new dict; ``state`` is not changed)."""
    return {k: (v * mask[k] if k in mask else v) for k, v in state.items()}
