"""``npz``: KIP's, FRePo's and RCIG's NumPy archives, channels-last (:mod:`dpcluster.distilled.readers.arrays`)."""

from dpcluster.distilled.registry import SetFormat, register_format

NPZ = register_format(SetFormat(
    name="npz",
    summary="KIP's, FRePo's and RCIG's .npz (images/labels, image/label or x_proto/y_proto; channels-last)",
    reader="dpcluster.distilled.readers.arrays:import_npz",
    # FRePo's lib/dataset/dataloader.py standardizes with these (CIFAR's are the training sets' own statistics,
    # which KIP's notebooks compute).
    upstream={"mnist": ((0.1307,), (0.3081,)), "fashion_mnist": ((0.2861,), (0.3530,)),
              "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
              "cifar100": ((0.5071, 0.4866, 0.4409), (0.2673, 0.2564, 0.2762))},
))
