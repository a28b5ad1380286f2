"""``mlflow``: an MLflow experiment named after the sweep, a run per training level; TARGET is a tracking URI
(``http://host:5000``, ``sqlite:///mlflow.db``) or a folder for a local file store (the default)."""

from dpcluster.tracking.registry import Tracker, register

MLFLOW = register(Tracker(
    name="mlflow", summary="MLflow runs in an experiment named after the sweep (a local file store by default)",
    open="dpcluster.tracking.sinks:MlflowSink", needs="mlflow",
    default="mlruns"))
