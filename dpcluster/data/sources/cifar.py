"""``cifar10`` and ``cifar100``, read from torchvision's on-disk format (the python pickled batches)."""

from dpcluster.data.registry import DataSource, register

# MTT's code normalizes both with CIFAR-10's constants (ours for CIFAR-100 are its own).
_MTT_CIFAR = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))

CIFAR10 = register(DataSource(name="cifar10", summary="CIFAR-10 from torchvision's on-disk batches",
                              loader="dpcluster.data.cifar:load", mtt_normalization=_MTT_CIFAR))
CIFAR100 = register(DataSource(name="cifar100", summary="CIFAR-100 from torchvision's on-disk batches",
                               loader="dpcluster.data.cifar:load", mtt_normalization=_MTT_CIFAR))
