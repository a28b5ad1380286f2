"""``resnet18`` and ``resnet10``: torchvision's ResNets as the second paper uses them."""

from dpcluster.models.registry import Network, register

RESNET18 = register(Network(name="resnet18", summary="ResNet-18 with a CIFAR stem (3x3 conv, no max pool)",
                            builder="dpcluster.models.resnet:cifar_resnet18"))
RESNET10 = register(Network(name="resnet10", summary="ResNet-10 with torchvision's ImageNet stem",
                            builder="dpcluster.models.resnet:imagenet_resnet10"))
