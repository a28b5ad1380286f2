"""Model registry: ``build_model(spec, input_shape, num_classes)``.

Every model exposes ``embed(x)`` (the features fed to the last linear layer), which distribution
matching uses, and ``classifier`` (that last layer).
"""

from __future__ import annotations

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


__all__ = ["build_model", "ConvNet", "AlexNet"]
