"""``dense``: no pruning; the full network trained once on real data from initialisation (the baseline)."""

from dpcluster.methods.registry import Method, register

DENSE = register(Method(
    name="dense",
    summary="no pruning: the unpruned network trained on real data",
    prunes=False,
))
