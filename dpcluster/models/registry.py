"""Networks by name. A built-in network is one module in ``dpcluster/models/networks/`` that registers a
:class:`Network`; its code is named by a ``package.module:function`` path and imported only when it is built, so
checking a spec (planning a sweep) loads no torch."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dpcluster.registry import Registry, import_package
from dpcluster.user_code import IDENTIFIER, check_factory_name, is_user_name

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
    # Defined outside dpcluster (a factory, or a torchvision name): its code is checked when first built (it
    # imports, returns a module, gives one output per class, has weights to prune), and its parameter shapes enter
    # the experiment id.
    user: bool = False


NETWORKS: Registry[Network] = Registry("model", lambda: import_package("dpcluster.models.networks"))
register = NETWORKS.register
network_names = NETWORKS.names

TORCHVISION = "torchvision:"
_TORCHVISION_NAME = re.compile(rf"torchvision:{IDENTIFIER}")


def check_network_name(name: str, key: str) -> None:
    """A registered network, ``torchvision:NAME`` or ``package.module:function`` (checked for its form only: the
    code is imported when the network is first built); else a SpecError naming ``key``."""
    from dpcluster.specs.base import check

    if not is_user_name(name):
        check(name in network_names(), key, f"must be one of {', '.join(network_names())}, "
                                            f"'torchvision:NAME' or 'package.module:function'; got {name!r}")
    elif name.startswith(TORCHVISION):
        check(bool(_TORCHVISION_NAME.fullmatch(name)), key, f"expected torchvision:NAME, got {name!r}")
    else:
        check_factory_name(name, key)


def get_network(name: str) -> Network:
    """The network ``name`` names: a registered one, or a user's (``torchvision:NAME``, ``package.module:function``)."""
    if name.startswith(TORCHVISION):
        return Network(name, f"torchvision's {name[len(TORCHVISION):]}", "dpcluster.models.user:build_torchvision",
                       user=True)
    if is_user_name(name):
        return Network(name, f"the factory {name}", "dpcluster.models.user:build_factory", user=True)
    return NETWORKS.get(name)
