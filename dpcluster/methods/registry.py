"""What each pruning method is, as data the round engine reads: which data trains the weights it prunes by,
how it chooses the weights to keep, and where its subnetworks start training. A new method is one new module in
this package that calls :func:`register`; nothing else names methods.

Round r holds mask m_r. A method's round trains m_r on its *inner data* (real data from the rewind point,
the distilled set from initialisation, or nothing), scores the weights by its *criterion* (the magnitude of the
inner loop's weights, or an independent random draw that no weight influences) and keeps the highest scores.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dpcluster.registry import Registry

if TYPE_CHECKING:
    from dpcluster.specs import ExperimentSpec

CRITERIA = ("magnitude", "random")


@dataclass(frozen=True)
class Method:
    name: str
    # One line for help texts and the README.
    summary: str
    # How the weights to keep are chosen: by the magnitude of the inner loop's weights, or at random.
    criterion: str = "magnitude"
    # Whether it prunes at all (dense does not: it trains the full network once).
    prunes: bool = True
    # Whether it needs a distilled set.
    uses_distilled_set: bool = False
    # Which data trains the weights that prune a mask of the given sparsity: "real", "distilled" or "none".
    inner_data_at: Callable[["ExperimentSpec", float], str] = lambda spec, sparsity: "none"
    # Whether its real-data rounds rewind (to ``pruning.rewind``): only then does the rewind point change it.
    rewinds: bool = False

    def __post_init__(self):
        if self.criterion not in CRITERIA:
            raise ValueError(f"method {self.name}: criterion must be one of {CRITERIA}, got {self.criterion!r}")

    def inner_data(self, spec: "ExperimentSpec", sparsity: float) -> str:
        """Which data trains the weights that prune a mask of ``sparsity`` further."""
        return self.inner_data_at(spec, sparsity) if self.prunes else "none"

    def validates_from_rewind(self, spec: "ExperimentSpec", sparsity: float) -> bool:
        """Whether a subnetwork of ``sparsity`` is trained on real data from the rewind point rather than from
        initialisation: exactly where its next real-data inner loop would start (IMP's definition). Subnetworks
        pruned with distilled data, random ones and the dense network train from initialisation."""
        return self.inner_data(spec, sparsity) == "real"


def _load_all() -> None:
    # The method modules register themselves on import, in the order help texts list them.
    from dpcluster.methods import dense, imp, distilled, hybrid, random  # noqa: F401, I001


METHODS: Registry[Method] = Registry("method", _load_all)
register = METHODS.register
get_method = METHODS.get
method_names = METHODS.names
