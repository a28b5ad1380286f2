"""Training and evaluation: one loop for on-device tensors and streamed data sets, masks kept exact."""

from dpcluster.training.loop import TrainResult, evaluate, train

__all__ = ["TrainResult", "evaluate", "train"]
