"""``distilled``: distilled pruning (McDermott et al., Algorithm 1). Each round trains the subnetwork on the
distilled set from initialisation and keeps the largest-magnitude weights; only the final training of each
subnetwork uses real data, from initialisation."""

from dpcluster.methods.registry import Method, register

DISTILLED = register(Method(
    name="distilled",
    summary="train on the distilled set from initialisation, prune the smallest magnitudes, rewind to initialisation",
    uses_distilled_set=True,
    inner_data_at=lambda spec, sparsity: "distilled",
))
