"""``hybrid``: distilled pruning until ``pruning.hybrid_switch`` sparsity, then real-data IMP from there on
(McDermott & Parhi): a stable mask found with distilled data, continued with IMP to higher sparsities."""

from dpcluster.methods.registry import Method, register

HYBRID = register(Method(
    name="hybrid",
    summary="distilled rounds until pruning.hybrid_switch sparsity, real-data IMP beyond it",
    uses_distilled_set=True,
    rewinds=True,
    inner_data_at=lambda spec, sparsity: "distilled" if sparsity < spec.pruning.hybrid_switch else "real",
))
