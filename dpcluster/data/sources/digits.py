"""``digits``: scikit-learn's bundled 8x8 digits (1,797 images), split with a fixed seeded stratified split."""

from dpcluster.data.registry import DataSource, register

DIGITS = register(DataSource(name="digits", summary="scikit-learn's bundled 8x8 digits (the built-in default)",
                             loader="dpcluster.data.digits:load", needs_root=False, mirror_safe=False))
