"""ImageNet subsets read from an ImageFolder tree (``train/<wnid>/``, ``val/<wnid>/``): ``imagenet10`` and
``imagenette`` with their built-in class lists, ``imagenet`` with the classes the spec lists."""

from dpcluster.data.registry import DataSource, register


def _needs_classes(spec) -> None:
    from dpcluster.specs.base import check

    check(bool(spec.classes), "classes", "name = 'imagenet' needs a list of class wnids (or use imagenet10 / imagenette)")


IMAGENET10 = register(DataSource(name="imagenet10", summary="the ImageNet-10 subset of an ImageNet folder",
                                 loader="dpcluster.data.imagenet:load"))
IMAGENETTE = register(DataSource(name="imagenette", summary="Imagenette (10 easy ImageNet classes)",
                                 loader="dpcluster.data.imagenet:load"))
IMAGENET = register(DataSource(name="imagenet", summary="the ImageNet classes data.classes lists",
                               loader="dpcluster.data.imagenet:load",
                               check=_needs_classes))
