"""``folder``: the user's ImageFolder tree, ``root/train/<class>/`` and optionally ``root/val/<class>/``
(``dpcluster/data/folder.py``). A spec names it with ``data.label``. Flips are not assumed to keep a label
(distil with ``distilled.augmentation = "dsa"`` where they do)."""

from dpcluster.data.registry import DataSource, register

FOLDER = register(DataSource(name="folder", summary="your images: root/train/<class>/ (and root/val/<class>/)",
                             loader="dpcluster.data.folder:load", mirror_safe=False, needs_label=True,
                             reads=("size",)))
