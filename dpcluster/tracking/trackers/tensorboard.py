"""``tensorboard``: event files, one folder per run under TARGET (``tensorboard --logdir TARGET`` shows them)."""

from dpcluster.tracking.registry import Tracker, register

TENSORBOARD = register(Tracker(
    name="tensorboard", summary="TensorBoard event files, a folder per run",
    open="dpcluster.tracking.sinks:TensorBoardSink", needs="tensorboard",
    default="tensorboard"))
