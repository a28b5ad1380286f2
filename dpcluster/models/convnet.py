"""The ConvNet of the dataset-distillation literature (DC, DM, MTT) and of the distilled-pruning papers:
``depth`` blocks of conv3x3 -> norm -> ReLU -> pool, then one linear classifier."""

from __future__ import annotations

import torch
from torch import nn


def _norm(kind: str, channels: int, size: tuple[int, int]) -> nn.Module:
    if kind == "instancenorm":
        # MTT's "instancenorm" is a GroupNorm with one group per channel (affine), not nn.InstanceNorm2d.
        return nn.GroupNorm(channels, channels, affine=True)
    if kind == "layernorm":
        return nn.LayerNorm([channels, *size], elementwise_affine=True)
    if kind == "batchnorm":
        return nn.BatchNorm2d(channels)
    return nn.Identity()


def _pool(kind: str) -> nn.Module:
    if kind == "avgpooling":
        return nn.AvgPool2d(2, 2)
    if kind == "maxpooling":
        return nn.MaxPool2d(2, 2)
    return nn.Identity()


def block_map_sides(size: tuple[int, int], depth: int, pooling: str) -> list[int]:
    """The smaller side of the maps each block's norm sees (pooling halves them after each block, down to 1)."""
    side, sides = min(size), []
    for _ in range(depth):
        sides.append(side)
        if pooling != "none" and side >= 2:
            side //= 2
    return sides


def degenerate_depth(size: tuple[int, int], depth: int, norm: str, pooling: str) -> str | None:
    """Why a ConvNet this deep cannot learn on images of ``size`` (None if it can): instance norm over a 1x1 map
    subtracts the only value from itself, so every input gives the same output from that block on."""
    sides = block_map_sides(size, depth, pooling)
    if norm != "instancenorm" or sides[-1] >= 2:
        return None
    deepest = max(d for d in range(1, depth + 1) if block_map_sides(size, d, pooling)[-1] >= 2)
    first = sides.index(1) + 1
    return (f"on {size[0]}x{size[1]} images block {first} of {depth} and every one after it see 1x1 maps, where "
            f"instance norm outputs 0 for every input (the network cannot learn): at most depth {deepest} here "
            f"(its last block sees {block_map_sides(size, deepest, pooling)[-1]}x"
            f"{block_map_sides(size, deepest, pooling)[-1]} maps)")


class ConvNet(nn.Module):
    def __init__(self, channels: int, size: tuple[int, int], num_classes: int, depth: int = 3,
                 width: int = 128, norm: str = "instancenorm", pooling: str = "avgpooling"):
        super().__init__()
        layers: list[nn.Module] = []
        in_channels, (h, w) = channels, size
        for _ in range(depth):
            layers += [nn.Conv2d(in_channels, width, 3, padding=1), _norm(norm, width, (h, w)), nn.ReLU(inplace=True)]
            if pooling != "none" and min(h, w) >= 2:
                # Small inputs (8x8 digits with a deep net) stop pooling once a side reaches 1.
                layers.append(_pool(pooling))
                h, w = h // 2, w // 2
            in_channels = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width * h * w, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


def build(spec, input_shape: tuple[int, int, int], num_classes: int) -> ConvNet:
    channels, height, width = input_shape
    return ConvNet(channels, (height, width), num_classes, spec.depth, spec.width, spec.norm, spec.pooling)


def degenerate_for(spec, input_shape: tuple[int, int, int]) -> str | None:
    """``degenerate_depth`` for the spec's settings, as the ``model.depth`` setting's message."""
    why = degenerate_depth(input_shape[1:], spec.depth, spec.norm, spec.pooling)
    return f"model.depth = {spec.depth}: {why}" if why else None
