"""``mnist`` and ``fashion_mnist``, read from their IDX files (plain or gzipped) in the root or in torchvision's
``ROOT/MNIST/raw`` / ``ROOT/FashionMNIST/raw`` (``dpcluster/data/mnist.py``)."""

from dpcluster.data.registry import DataSource, register

MNIST = register(DataSource(name="mnist", summary="MNIST's digits from their IDX files (plain or .gz)",
                            loader="dpcluster.data.mnist:load", mirror_safe=False))
# A mirrored shoe, shirt or bag is still one.
FASHION_MNIST = register(DataSource(name="fashion_mnist", summary="Fashion-MNIST from its IDX files (plain or .gz)",
                                    loader="dpcluster.data.mnist:load", mirror_safe=True))
