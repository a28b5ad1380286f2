"""The backends of ``dpcluster sweep``, one module each registering a
:class:`dpcluster.sweeps.backend_registry.BackendEntry` (importing them loads no scheduler client)."""
