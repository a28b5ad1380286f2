import pytest
import torch

from dpcluster.models import build_model
from dpcluster.errors import UserError
from dpcluster.pruning.masks import (
    count_kept, count_total, full_mask, keep_top, layer_counts, magnitude_scores, mask_hash, next_mask,
    random_scores, sparsity,
)
from dpcluster.pruning.model_masks import capture_state, prunable_weights, restore_state
from dpcluster.specs import ModelSpec


def _weights(seed=0):
    torch.manual_seed(seed)
    return prunable_weights(build_model(ModelSpec(width=16), (1, 8, 8), 10))


@pytest.mark.parametrize("criterion", ["magnitude", "random"])
@pytest.mark.parametrize("scope", ["global", "layerwise"])
def test_sparsity_after_k_rounds_is_exact(criterion, scope):
    weights = _weights()
    mask = full_mask(weights)
    total = count_total(mask)
    generator = torch.Generator().manual_seed(0)
    for k in range(1, 16):
        previous = mask
        scores = magnitude_scores(weights) if criterion == "magnitude" else random_scores(mask, generator)
        mask = next_mask(scores, mask, 0.2, k, scope)
        expected_kept = total * 0.8 ** k
        tolerance = 1 if scope == "global" else len(mask)  # one rounding per layer
        if scope == "layerwise":
            for name, kept, size in layer_counts(mask):
                assert kept == round(size * 0.8 ** k), name
        assert abs(count_kept(mask) - expected_kept) <= tolerance
        assert abs(sparsity(mask) - (1 - 0.8 ** k)) <= tolerance / total
        # Pruned weights stay pruned.
        assert not any((mask[n] & ~previous[n]).any() for n in mask)


def test_global_pruning_keeps_the_largest_magnitudes():
    weights = {"a.weight": torch.tensor([[0.1, -5.0], [3.0, 0.2]]), "b.weight": torch.tensor([-0.3, 4.0, 0.05])}
    mask = keep_top(magnitude_scores(weights), full_mask(weights), keep=3)
    assert mask["a.weight"].tolist() == [[False, True], [True, False]]
    assert mask["b.weight"].tolist() == [False, True, False]
    # A pruned weight is never chosen again, whatever its magnitude.
    weights["a.weight"][0, 0] = 100.0
    mask2 = keep_top(magnitude_scores(weights), mask, keep=2)
    assert not mask2["a.weight"][0, 0]
    assert count_kept(mask2) == 2


def test_only_conv_and_linear_weights_are_prunable_and_ignore_is_checked():
    model = build_model(ModelSpec(width=8), (1, 8, 8), 10)
    names = set(prunable_weights(model))
    assert names == {"features.0.weight", "features.4.weight", "features.8.weight", "classifier.weight"}
    assert "classifier.weight" not in prunable_weights(model, ("classifier",))
    with pytest.raises(UserError, match="not a conv or linear layer"):
        prunable_weights(model, ("features.1",))


def test_mask_hash_changes_with_content():
    weights = _weights()
    mask = full_mask(weights)
    pruned = next_mask(magnitude_scores(weights), mask, 0.2, 1)
    assert mask_hash(mask) == mask_hash(full_mask(weights))
    assert mask_hash(mask) != mask_hash(pruned)


def test_restore_state_restores_parameters_and_buffers():
    model = build_model(ModelSpec(width=8, norm="batchnorm"), (1, 8, 8), 10)
    state = capture_state(model)
    model.train()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    model(torch.randn(16, 1, 8, 8))  # moves BatchNorm running stats and counters
    restore_state(model, state)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
