"""``cifar10`` and ``cifar100``, read from torchvision's on-disk format (the python pickled batches)."""

from dpcluster.data.registry import DataSource, register

CIFAR10 = register(DataSource(name="cifar10", summary="CIFAR-10 from torchvision's on-disk batches",
                              loader="dpcluster.data.cifar:load"))
CIFAR100 = register(DataSource(name="cifar100", summary="CIFAR-100 from torchvision's on-disk batches",
                               loader="dpcluster.data.cifar:load"))
