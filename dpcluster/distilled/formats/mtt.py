"""``mtt``: MTT's saved ``images_best.pt`` / ``labels_best.pt`` (:func:`dpcluster.distilled.importers.import_mtt`)."""

from dpcluster.distilled.registry import SetFormat, register_format

MTT = register_format(SetFormat(
    name="mtt",
    summary="MTT's images_best.pt and labels_best.pt",
    reader="dpcluster.distilled.importers:import_mtt",
))
