"""``alexnet``: the first paper's AlexNet for small images."""

from dpcluster.models.registry import Network, register

ALEXNET = register(Network(name="alexnet", summary="AlexNet for small images (the first paper's CIFAR-10 network)",
                           builder="dpcluster.models.alexnet:build"))
