"""What every distiller is given (:class:`DistillRequest`) and what they share: the augmentation a distillation
uses and the network it distils with. A distiller is a function taking a :class:`DistillRequest` and returning a
:class:`DistilledSet`, named by a :class:`dpcluster.distilled.registry.Distiller` (one module in
``dpcluster/distilled/distillers/``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dpcluster.specs import DistilledSpec, ModelSpec

if TYPE_CHECKING:
    from dpcluster.data.base import DataBundle
    from dpcluster.distilled.format import DistilledSet

Progress = Callable[[int, int, float], None]


@dataclass
class DistillRequest:
    spec: DistilledSpec
    data: "DataBundle"
    model_spec: ModelSpec
    device: object
    # Where intermediate products live (expert trajectories) and the distillation's own checkpoint.
    work_dir: Path
    state_path: Path | None = None
    progress: Progress | None = None
    # Called with (iteration, set so far) at each checkpoint; `dpcluster distill` evaluates the set there.
    on_checkpoint: Callable[[int, "DistilledSet"], None] | None = None
    checkpoint_every: int = 100
    # Called as (expert, experts, epoch, epochs) while expert trajectories are trained (MTT).
    expert_progress: Callable[[int, int, int, int], None] | None = None


def distill_augmentation(spec: DistilledSpec, data: "DataBundle") -> str:
    """The augmentation a distillation uses; "auto" is DSA, without flips where they change labels."""
    # Both DM and MTT augment with DSA, as in their papers (DM: one siamese draw per class for the real and
    # the synthetic images; MTT: a random draw per student minibatch).
    from dpcluster.data.augment import resolve_augmentation

    return resolve_augmentation(spec.augmentation, data)


def distillation_model(spec: DistilledSpec, model: ModelSpec, input_shape: tuple[int, int, int]) -> ModelSpec:
    """The network a set is distilled with: ``spec.model`` when given, else the experiment's ``model``, except that
    a ConvNet too deep for the image size is made shallower until its last block sees maps of at least 4x4.

    Why: on 8x8 digits the default depth-3 ConvNet normalizes 2x2 maps in its last block, and trajectory
    matching's unrolled second-order gradients through such a normalization spike by orders of magnitude and
    wreck the images. A set distilled on the depth-2 net trains the depth-3 net well (architectures transfer)."""
    if spec.model is not None:
        return spec.model
    from dpcluster.models.registry import get_network

    if not get_network(model.name).uses_convnet_settings or model.pooling == "none":
        return model
    depth, side = model.depth, min(input_shape[1:])
    while depth > 1 and side >> (depth - 1) < 4:
        depth -= 1
    return model.replace(depth=depth)
