"""The data sets, one module each; every module registers its source (``dpcluster.data.registry``)."""
