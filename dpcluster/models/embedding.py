"""What distribution matching compares: a network's embedding of a batch. The built-in networks say it themselves
(``embed``: the features their last linear layer reads); any other network's is the input of its last
``nn.Linear`` in module order, or the output of a module the user names (``distilled.embedding = "avgpool"``),
caught with a forward hook."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from dpcluster.errors import UserError


def embedder(model: nn.Module, module_name: str | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function from a batch to its embedding, one flattened row per example."""
    if module_name is None and callable(getattr(type(model), "embed", None)):
        return model.embed
    modules = dict(model.named_modules())
    if module_name is not None:
        if module_name not in modules or module_name == "":
            raise UserError(f"distilled.embedding: the network has no module {module_name!r} "
                            f"(its modules: {', '.join(name for name in modules if name)})")
        return _hooked(model, modules[module_name], output=True)
    linears = [module for module in modules.values() if isinstance(module, nn.Linear)]
    if not linears:
        raise UserError("distribution matching needs the network's embedding: it has no nn.Linear whose input "
                        "is one; name the module whose output is (distilled.embedding)")
    return _hooked(model, linears[-1], output=False)


def _hooked(model: nn.Module, module: nn.Module, output: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    def embed(x: torch.Tensor) -> torch.Tensor:
        caught = []

        def hook(_module, inputs, result):
            caught.append(result if output else inputs[0])

        handle = module.register_forward_hook(hook)
        try:
            model(x)
        finally:
            handle.remove()
        return caught[-1].flatten(1)

    return embed
