"""``png``: a folder of PNG images per class (:func:`dpcluster.distilled.importers.import_png`)."""

from dpcluster.distilled.registry import SetFormat, register_format

PNG = register_format(SetFormat(
    name="png",
    summary="a folder root/<class>/*.png",
    reader="dpcluster.distilled.importers:import_png",
))
