"""``hybrid``: distilled pruning up to ``pruning.hybrid_switch`` sparsity, then real-data IMP from there on
(McDermott & Parhi: "by first generating a stable sparsity mask at initialization, we can find lottery tickets at
significantly higher sparsities than traditional iterative magnitude pruning").

Every mask of sparsity at most ``hybrid_switch`` comes from a distilled round (with the default rate 0.2 and
switch 0.5: 20%, 36% and 48.8%); every sparser one from a real-data IMP round (59%, 67%, ...). The IMP rounds are
IMP's own, down to the rewind point: they rewind to the dense network's weights after ``pruning.rewind`` of
real-data training, masked, exactly the point IMP of the same seed rewinds to (a test checks the tensors are
equal), so the two differ only in the mask the IMP rounds start from.
"""

from dpcluster.methods.registry import Method, register


def _inner_data(spec, sparsity: float) -> str:
    # The round that prunes a mask of ``sparsity`` produces one of 1 - (1 - sparsity)(1 - rate): distilled data
    # while that stays within the switch.
    produced = 1 - (1 - sparsity) * (1 - spec.pruning.rate)
    return "distilled" if produced <= spec.pruning.hybrid_switch + 1e-9 else "real"


HYBRID = register(Method(
    name="hybrid",
    summary="distilled rounds up to pruning.hybrid_switch sparsity, real-data IMP beyond it",
    uses_distilled_set=True,
    rewinds=True,
    inner_data_at=_inner_data,
))
