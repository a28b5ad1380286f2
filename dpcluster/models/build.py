"""Building a spec's network: ``build_model(spec, input_shape, num_classes)``, and ``check_model``, which builds it
on torch's meta device to check it before anything is trained or written."""

from __future__ import annotations

import os

import torch
from torch import nn

from dpcluster.errors import UserError
from dpcluster.models.registry import get_network
from dpcluster.registry import resolve
from dpcluster.specs import ModelSpec


def build_model(spec: ModelSpec, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    return resolve(get_network(spec.name).builder)(spec, input_shape, num_classes)


def check_model(spec: ModelSpec, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """The model of ``spec``, built on torch's meta device (shapes, no memory) once it is known to be one that can
    learn on these inputs and fit in this machine's memory; otherwise a one-line UserError naming the setting."""
    network = get_network(spec.name)
    if network.degenerate is not None and (why := resolve(network.degenerate)(spec, input_shape)):
        raise UserError(why)
    if network.user:
        from dpcluster.models.user import check_user_network

        # Built for real, on the CPU: a factory need not know torch's meta device, and its forward pass is checked.
        model = build_model(spec, input_shape, num_classes)
        check_user_network(model, spec, input_shape, num_classes)
    else:
        with torch.device("meta"):
            model = build_model(spec, input_shape, num_classes)
    parameters = sum(p.numel() for p in model.parameters())
    # fp32 weights, their gradients, two optimizer moments (Adam), and the initial weights kept for rewinding.
    needed = parameters * 4 * 5
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if needed > memory:
        raise UserError(f"model {network.describe(spec)}: {parameters / 1e9:.1f} G parameters need about "
                        f"{needed / 2**30:,.0f} GiB to train (weights, gradients, optimizer state and the initial "
                        f"weights, fp32); this machine has {memory / 2**30:,.0f} GiB")
    return model
