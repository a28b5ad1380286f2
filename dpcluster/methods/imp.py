"""``imp``: iterative magnitude pruning (Frankle & Carbin; with rewinding, Frankle et al. 2020). Each round trains
the subnetwork on real data from the rewind point and keeps the largest-magnitude weights."""

from dpcluster.methods.registry import Method, register

IMP = register(Method(
    name="imp",
    summary="train on real data from the rewind point, prune the smallest magnitudes, rewind",
    rewinds=True,
    inner_data_at=lambda spec, sparsity: "real",
))
