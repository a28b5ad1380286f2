"""``dpcluster``: the project's own format (:mod:`dpcluster.distilled.format`), what ``dpcluster distill`` and the
cache write; it records its normalization, whitening and kind of labels itself."""

from dpcluster.distilled.registry import SetFormat, register_format

DPCLUSTER = register_format(SetFormat(
    name="dpcluster",
    summary="the project's folder of images.pt, labels.pt and distilled.json",
    reader="dpcluster.distilled.format:read_set_folder",
    self_describing=True,
))
