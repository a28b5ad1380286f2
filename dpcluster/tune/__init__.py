"""Hyperparameter search with Ray Tune over any experiment-spec field, running the project's own engine."""
