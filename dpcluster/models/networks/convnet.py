"""``convnet``: the papers' ConvNet (depth × [conv 3x3, norm, ReLU, pool], then a linear classifier)."""

from dpcluster.models.registry import Network, register

CONVNET = register(Network(
    name="convnet",
    summary="the papers' ConvNet: model.depth blocks of model.width channels, model.norm and model.pooling",
    builder="dpcluster.models.convnet:build",
    degenerate="dpcluster.models.convnet:degenerate_for",
    uses_convnet_settings=True,
    describe=lambda spec: f"{spec.name} (width {spec.width}, depth {spec.depth})",
))
