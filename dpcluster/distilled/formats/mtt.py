"""``mtt``: MTT's ``images_best.pt`` / ``labels_best.pt`` and its successors' (DATM's soft labels and lr_best.pt,
FTD's ema_ files, SeqMatch's S1, S2, ... folders; :mod:`dpcluster.distilled.readers.mtt`)."""

from dpcluster.distilled.registry import SetFormat, register_format

# MTT's utils.get_dataset normalizes CIFAR-100 with CIFAR-10's constants, the ImageNet subsets with ImageNet's;
# MNIST's and Fashion-MNIST's are DC's get_dataset's, which MTT's code descends from. Without --zca its sets are
# saved in these; with --zca in the whitened space instead (distilled.zca).
_CIFAR10 = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))

MTT = register_format(SetFormat(
    name="mtt",
    summary="MTT's images_best.pt and labels_best.pt (and DATM's, FTD's, SeqMatch's, TESLA's)",
    reader="dpcluster.distilled.readers.mtt:import_mtt",
    upstream={"mnist": ((0.1307,), (0.3081,)), "fashion_mnist": ((0.2861,), (0.3530,)), "cifar10": _CIFAR10,
              "cifar100": _CIFAR10, "imagenet10": _IMAGENET, "imagenette": _IMAGENET, "imagenet": _IMAGENET},
))
