"""``images`` (and ``png``, its older name): folders of PNG or JPEG images per class, SRe2L's and RDED's among
them (:mod:`dpcluster.distilled.readers.images`)."""

from dpcluster.distilled.registry import SetFormat, register_format

IMAGES = register_format(SetFormat(
    name="images",
    summary="a folder of PNG or JPEG images per class (SRe2L's new000/, RDED's 00000/, or class names)",
    reader="dpcluster.distilled.readers.images:import_images",
))
PNG = register_format(SetFormat(
    name="png",
    summary="the same as images (its older name)",
    reader="dpcluster.distilled.readers.images:import_images",
))
