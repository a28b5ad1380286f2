"""``random``: the baseline every ticket must beat. Each round removes a uniformly random 20% of the remaining
weights (across all layers, or per layer with ``pruning.strategy = "layerwise"``); no training informs the mask,
and no weight value can change it. Its subnetworks train on real data from initialisation."""

from dpcluster.methods.registry import Method, register

RANDOM = register(Method(
    name="random",
    summary="remove a uniformly random share of the remaining weights, whatever their values",
    criterion="random",
))
