"""The trackers, one module each, registering a :class:`dpcluster.tracking.registry.Tracker`."""
