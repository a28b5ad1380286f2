"""Metrics streamed to the trackers researchers use (TensorBoard, MLflow, Weights & Biases): ``--track NAME[:TARGET]``
on ``run``, ``sweep`` and ``tune``. A tracker is one module in ``trackers/`` registering a :class:`Tracker`
(``registry.py``); :class:`TrackingReporter` turns the engine's hooks into its metrics. Every job opens its
trackers where it runs (a Slurm node, a Ray worker), from what the sweep folder's ``tracking.json`` says."""
