"""The ``dpcluster`` command line."""
