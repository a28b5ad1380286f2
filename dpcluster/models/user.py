"""Networks of the user's: ``torchvision:NAME`` (any classification model torchvision builds, untrained, its first
convolution adapted to the data's channels) and ``package.module:function`` (a factory called as
``function(input_shape, num_classes, **model.options)`` returning an ``nn.Module``).

Such a network is checked the first time it is built for an experiment (``check_user_network``): a failure to
import, a factory that raises or returns something else, a forward pass that fails or gives the wrong number of
outputs, and a network with nothing to prune are one line each, naming the model. Its parameter shapes enter the
experiment id (``architecture``), so a changed architecture never reuses results.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import torch
from torch import nn

from dpcluster.errors import UserError
from dpcluster.hashing import stable_hash
from dpcluster.models.registry import TORCHVISION
from dpcluster.user_code import call_user

if TYPE_CHECKING:
    from dpcluster.specs import DataSpec, ModelSpec


def _options(spec: ModelSpec) -> dict:
    return spec.options.as_dict() if spec.options is not None else {}


def build_torchvision(spec: ModelSpec, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    import torchvision

    name = spec.name[len(TORCHVISION):]
    known = torchvision.models.list_models(module=torchvision.models)
    if name not in known:
        raise UserError(f"model {spec.name}: torchvision has no classification model {name!r} "
                        f"(it has {', '.join(known)})")
    options = _options(spec)
    if "weights" in options:
        raise UserError(f"model {spec.name}: options.weights: networks are pruned from their initialisation; "
                        f"pretrained weights are not loaded")
    try:
        model = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **options)
    except (TypeError, ValueError) as error:
        raise UserError(f"model {spec.name}: torchvision refused its options: {error}".splitlines()[0]) from None
    _adapt_first_convolution(model, input_shape[0])
    return model


def _adapt_first_convolution(model: nn.Module, channels: int) -> None:
    """Replace the first convolution (in module order) by one taking ``channels`` input channels, all else the
    same, where torchvision built it for another number (3)."""
    for parent in model.modules():
        for child_name, child in parent.named_children():
            if isinstance(child, nn.Conv2d):
                if child.in_channels != channels:
                    setattr(parent, child_name, nn.Conv2d(
                        channels, child.out_channels, child.kernel_size, child.stride, child.padding, child.dilation,
                        child.groups if child.groups == 1 else channels, child.bias is not None, child.padding_mode))
                return


def build_factory(spec: ModelSpec, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    model = call_user(spec.name, "model", (tuple(input_shape), num_classes), _options(spec))
    if not isinstance(model, nn.Module):
        raise UserError(f"model {spec.name}: the factory returned a {type(model).__name__}, not a torch nn.Module")
    return model


def check_user_network(model: nn.Module, spec: ModelSpec, input_shape: tuple[int, int, int],
                       num_classes: int) -> None:
    """One forward pass on one example (in eval mode, on the CPU) gives ``num_classes`` outputs; else a UserError."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(1, *input_shape))
    except Exception as error:  # noqa: BLE001 - the user's network: its failure is one line naming it
        raise UserError(f"model {spec.name}: a forward pass on one {'x'.join(map(str, input_shape))} input failed: "
                        f"{type(error).__name__}: {error}".splitlines()[0]) from None
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, num_classes):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise UserError(f"model {spec.name}: a forward pass gave {got}, not one output per class "
                        f"(expected (1, {num_classes}))")


@functools.lru_cache(maxsize=64)
def architecture(model: ModelSpec, data: DataSpec) -> str:
    """A hash of the parameter names and shapes of the user network ``model`` as built for ``data`` (whose shape
    and classes are read by loading it once per process): what makes a changed architecture a new experiment."""
    from dpcluster.data import load_data
    from dpcluster.models.build import build_model

    bundle = load_data(data)
    network = build_model(model, bundle.input_shape, bundle.num_classes)
    return stable_hash([[name, list(p.shape)] for name, p in network.named_parameters()], 12)

