"""Networks by name. A built-in network is one module in ``dpcluster/models/networks/`` that registers a
:class:`Network`; its code is named by a ``package.module:function`` path and imported only when it is built, so
checking a spec (planning a sweep) loads no torch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dpcluster.registry import Registry, import_package

if TYPE_CHECKING:
    from dpcluster.specs import ModelSpec


@dataclass(frozen=True)
class Network:
    name: str
    # One line for help texts and the README.
    summary: str
    # ``package.module:function`` building it: (ModelSpec, input_shape (C, H, W), num_classes) -> nn.Module.
    builder: str
    # ``package.module:function`` saying why it cannot learn on inputs of this shape (None when it can), checked
    # before it is built; None: it learns on any shape it builds for.
    degenerate: str | None = None
    # Whether the spec's ConvNet settings (depth, width, norm, pooling) shape it: they name it in messages, and
    # distillation may make it shallower for small images.
    uses_convnet_settings: bool = False
    # How a message names it: the name, and for the ConvNet its width and depth.
    describe: Callable[[ModelSpec], str] = lambda spec: spec.name


NETWORKS: Registry[Network] = Registry("model", lambda: import_package("dpcluster.models.networks"))
register = NETWORKS.register
get_network = NETWORKS.get
network_names = NETWORKS.names
