"""ImageNet subsets read from an ImageFolder tree (``train/<wnid>/``, ``val/<wnid>/``): ``imagenet10`` and
``imagenette`` with their built-in class lists, ``imagenet`` with the classes the spec lists."""

from dpcluster.data.registry import DataSource, register

_MTT_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def _needs_classes(spec) -> None:
    from dpcluster.specs.base import check

    check(bool(spec.classes), "classes", "name = 'imagenet' needs a list of class wnids (or use imagenet10 / imagenette)")


IMAGENET10 = register(DataSource(name="imagenet10", summary="the ImageNet-10 subset of an ImageNet folder",
                                 loader="dpcluster.data.imagenet:load", mtt_normalization=_MTT_IMAGENET))
IMAGENETTE = register(DataSource(name="imagenette", summary="Imagenette (10 easy ImageNet classes)",
                                 loader="dpcluster.data.imagenet:load", mtt_normalization=_MTT_IMAGENET))
IMAGENET = register(DataSource(name="imagenet", summary="the ImageNet classes data.classes lists",
                               loader="dpcluster.data.imagenet:load", mtt_normalization=_MTT_IMAGENET,
                               check=_needs_classes))
