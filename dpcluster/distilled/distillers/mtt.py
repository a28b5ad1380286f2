"""``mtt``: trajectory matching (Cazenavette et al.), :mod:`dpcluster.distilled.mtt`, on expert trajectories
trained first (:mod:`dpcluster.distilled.experts`, cached next to the sets)."""

from dpcluster.distilled.registry import Distiller, register_distiller

MTT = register_distiller(Distiller(
    name="mtt",
    summary="trajectory matching (Cazenavette et al.), with a learned learning rate",
    distil="dpcluster.distilled.mtt:distill",
    # 2: starts drawn below max_start_epoch.
    version=2,
    settings="mtt",
))
