"""ResNets from torchvision: ResNet-18 with the CIFAR stem (3x3 stride-1 first conv, no max-pool), and
ResNet-10 ([1, 1, 1, 1] basic blocks, ImageNet stem) for ImageNet subsets."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet, resnet18


class _Embeddable(ResNet):
    """torchvision's ResNet with ``embed`` and the last layer under the project's common name."""

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


def _finish(model: ResNet, channels: int, num_classes: int, cifar_stem: bool) -> _Embeddable:
    model.__class__ = _Embeddable
    if cifar_stem:
        model.conv1 = nn.Conv2d(channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    elif channels != 3:
        model.conv1 = nn.Conv2d(channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    model.classifier = model.fc
    del model.fc
    return model


def cifar_resnet18(spec, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    return _finish(resnet18(num_classes=num_classes), input_shape[0], num_classes, cifar_stem=True)


def imagenet_resnet10(spec, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    return _finish(ResNet(BasicBlock, [1, 1, 1, 1], num_classes=num_classes), input_shape[0], num_classes,
                   cifar_stem=False)
