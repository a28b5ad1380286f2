"""Model registry: ``build_model(spec, input_shape, num_classes)``.

Every model exposes ``embed(x)`` (the features fed to the last linear layer), which distribution
matching uses, and ``classifier`` (that last layer).
"""

from __future__ import annotations

import torch
from torch import nn

from dpcluster.models.alexnet import AlexNet
from dpcluster.models.convnet import ConvNet
from dpcluster.specs import ModelSpec


def build_model(spec: ModelSpec, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    channels, height, width = input_shape
    if spec.name == "convnet":
        return ConvNet(channels, (height, width), num_classes, spec.depth, spec.width, spec.norm, spec.pooling)
    if spec.name == "alexnet":
        return AlexNet(channels, (height, width), num_classes)
    # The ResNets come from torchvision, imported only when asked for: a job on the other models skips that cost.
    if spec.name == "resnet18":
        from dpcluster.models.resnet import cifar_resnet18

        return cifar_resnet18(channels, num_classes)
    if spec.name == "resnet10":
        from dpcluster.models.resnet import imagenet_resnet10

        return imagenet_resnet10(channels, num_classes)
    raise ValueError(f"unknown model {spec.name!r}")  # ModelSpec already rejects this


def check_model(spec: ModelSpec, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """The model of ``spec``, built on torch's meta device (shapes, no memory) once it is known to be one that can
    learn on these inputs and fit in this machine's memory; otherwise a one-line UserError naming the setting."""
    import os

    from dpcluster.errors import UserError
    from dpcluster.models.convnet import degenerate_depth

    if spec.name == "convnet":
        why = degenerate_depth(input_shape[1:], spec.depth, spec.norm, spec.pooling)
        if why:
            raise UserError(f"model.depth = {spec.depth}: {why}")
    with torch.device("meta"):
        model = build_model(spec, input_shape, num_classes)
    parameters = sum(p.numel() for p in model.parameters())
    # fp32 weights, their gradients, two optimizer moments (Adam), and the initial weights kept for rewinding.
    needed = parameters * 4 * 5
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if needed > memory:
        shape = f"width {spec.width}, depth {spec.depth}" if spec.name == "convnet" else "as built"
        raise UserError(f"model {spec.name} ({shape}): {parameters / 1e9:.1f} G parameters need about "
                        f"{needed / 2**30:,.0f} GiB to train (weights, gradients, optimizer state and the initial "
                        f"weights, fp32); this machine has {memory / 2**30:,.0f} GiB")
    return model


__all__ = ["build_model", "check_model", "ConvNet", "AlexNet"]
