"""``mnist`` and ``fashion_mnist``, read from their IDX files (plain or gzipped) in the root or in torchvision's
``ROOT/MNIST/raw`` / ``ROOT/FashionMNIST/raw`` (``dpcluster/data/mnist.py``)."""

from dpcluster.data.registry import DataSource, register

# MTT's code (from DC's get_dataset) normalizes them with these.
MNIST = register(DataSource(name="mnist", summary="MNIST's digits from their IDX files (plain or .gz)",
                            loader="dpcluster.data.mnist:load", mirror_safe=False,
                            mtt_normalization=((0.1307,), (0.3081,))))
# A mirrored shoe, shirt or bag is still one.
FASHION_MNIST = register(DataSource(name="fashion_mnist", summary="Fashion-MNIST from its IDX files (plain or .gz)",
                                    loader="dpcluster.data.mnist:load", mirror_safe=True,
                                    mtt_normalization=((0.2861,), (0.3530,))))
