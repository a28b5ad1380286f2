"""The built-in networks, one module each; every module registers its network (``dpcluster.models.registry``)."""
