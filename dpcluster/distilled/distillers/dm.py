"""``dm``: distribution matching (Zhao & Bilen), :mod:`dpcluster.distilled.dm`."""

from dpcluster.distilled.registry import Distiller, register_distiller

DM = register_distiller(Distiller(
    name="dm",
    summary="distribution matching (Zhao & Bilen)",
    distil="dpcluster.distilled.dm:distill",
    version=3,
    settings="dm",
))
