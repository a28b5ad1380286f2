"""The AlexNet variant used on CIFAR in the dataset-distillation code the papers build on (MTT's networks.py):
five convolutions (128-192-256-192-192 channels), three max-pools, one linear classifier."""

from __future__ import annotations

import torch
from torch import nn


class AlexNet(nn.Module):
    def __init__(self, channels: int, size: tuple[int, int], num_classes: int):
        super().__init__()
        # 28x28 inputs (MNIST-like) get extra padding so the feature map matches 32x32 inputs.
        first_padding = 4 if size == (28, 28) else 2
        self.features = nn.Sequential(
            nn.Conv2d(channels, 128, kernel_size=5, stride=1, padding=first_padding),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Conv2d(128, 192, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Conv2d(192, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 192, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(192, 192, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=2, stride=2),
        )
        with torch.no_grad():
            features = self.features(torch.zeros(1, channels, *size)).numel()
        self.classifier = nn.Linear(features, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


def build(spec, input_shape: tuple[int, int, int], num_classes: int) -> AlexNet:
    channels, height, width = input_shape
    return AlexNet(channels, (height, width), num_classes)
