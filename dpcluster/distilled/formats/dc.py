"""``dc``: DC's, DSA's and DM's ``res_<method>_<dataset>_<model>_<ipc>ipc.pt``, one set per experiment
(:mod:`dpcluster.distilled.readers.dc`)."""

from dpcluster.distilled.registry import SetFormat, register_format

DC = register_format(SetFormat(
    name="dc",
    summary="DC's, DSA's and DM's res_*.pt (one set per experiment: distilled.entry)",
    reader="dpcluster.distilled.readers.dc:import_dc",
    # VICO-UoE/DatasetCondensation's utils.get_dataset.
    upstream={"mnist": ((0.1307,), (0.3081,)), "fashion_mnist": ((0.2861,), (0.3530,)),
              "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
              "cifar100": ((0.5071, 0.4866, 0.4409), (0.2673, 0.2564, 0.2762))},
    entries=True,
))
