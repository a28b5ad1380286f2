"""``wandb``: Weights & Biases runs in a project named after the sweep; offline (run folders under TARGET, for
``wandb sync``) unless the user has logged in."""

from dpcluster.tracking.registry import Tracker, register

WANDB = register(Tracker(
    name="wandb", summary="Weights & Biases runs (offline run folders unless you have logged in)",
    open="dpcluster.tracking.sinks:WandbSink", needs="wandb",
    default="wandb"))
