"""The registered job kinds, one module each (see ``dpcluster.sweeps.jobs``)."""
