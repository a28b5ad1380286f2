"""``tensors``: the user's arrays, ``train.pt``/``test.pt`` or ``train.npz``/``test.npz`` in the root
(``dpcluster/data/tensors.py``). A spec names it with ``data.label``. Flips are not assumed to keep a label
(distil with ``distilled.augmentation = "dsa"`` where they do)."""

from dpcluster.data.registry import DataSource, register

TENSORS = register(DataSource(name="tensors", summary="your arrays: train/test .pt or .npz files with x and y",
                              loader="dpcluster.data.tensors:load", mirror_safe=False, needs_label=True,
                              reads=("layout",)))
