"""One module per export format; each registers itself (see ``dpcluster/export/registry.py``)."""
