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
