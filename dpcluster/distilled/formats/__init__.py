"""The formats a distilled set is read in (``distilled.format``, with ``distilled.source = "file"``): one module
each, registering a :class:`dpcluster.distilled.registry.SetFormat` (importing them loads no torch)."""
