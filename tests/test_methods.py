"""Each method against its definition.

The masks and validations of ``imp``, ``distilled`` and ``hybrid`` are recomputed here from the papers' definitions,
written out independently of the round engine (train on the named data from the named state, keep the largest
magnitudes, train the subnetwork on real data from the named state), and must match the engine's exactly.
``random`` is checked statistically: its masks must not depend on any weight.
"""

import math

import pytest
import torch

from dpcluster.data.base import TensorSet
from dpcluster.methods.engine import Inputs, mask_path, prune_round, run_experiment
from dpcluster.methods.registry import get_method
from dpcluster.models import build_model
from dpcluster.pruning.masks import (
    count_kept, full_mask, magnitude_scores, mask_hash, next_mask, sparsity, unpack_mask,
)
from dpcluster.pruning.model_masks import capture_state, masked_state, prunable_weights, restore_state
from dpcluster.results import read_records
from dpcluster.specs import ExperimentSpec, ModelSpec, PruningSpec, TrainingSpec
from dpcluster.training import evaluate, train
from dpcluster.training.batches import steps_per_epoch

CPU = torch.device("cpu")


def spec_for(method, seed=0, **pruning):
    return ExperimentSpec(
        method=method, seed=seed, model=ModelSpec(width=8), pruning=PruningSpec(**pruning),
        training=TrainingSpec(epochs=2, batch_size=128),
        distilled_training=TrainingSpec(epochs=4, batch_size=256, lr=0.01, schedule="half", augmentation="auto"),
    )


@pytest.fixture(scope="module")
def distilled(digits):
    # A stand-in distilled set: 3 real images per class, so the test does not depend on distillation.
    g = torch.Generator().manual_seed(1)
    x = torch.cat([digits.train_images_of_class(c, 3, g) for c in range(10)])
    return TensorSet(x, torch.arange(10).repeat_interleave(3))


class Reference:
    """The definitions, spelled out: a network initialised from the seed, trained from a given state."""

    def __init__(self, spec, data, distilled_set=None):
        self.spec, self.data, self.distilled = spec, data, distilled_set
        torch.manual_seed(spec.seed)
        self.model = build_model(spec.model, data.input_shape, data.num_classes)
        self.init = capture_state(self.model)
        self.rewind_step = spec.pruning.rewind_point.steps(steps_per_epoch(data.train, spec.training.batch_size))

    def train_real(self, state, mask, start_step=0, snapshot_step=None):
        restore_state(self.model, masked_state(state, mask))
        result = train(self.model, self.data.train, self.spec.training, device=CPU, seed=self.spec.seed, mask=mask,
                       start_step=start_step, snapshot_step=snapshot_step)
        return capture_state(self.model), result.snapshot

    def train_distilled(self, mask):
        # Distilled pruning trains from initialisation on the distilled set (Algorithm 1); this set says no
        # augmentation, which "auto" resolves to.
        restore_state(self.model, masked_state(self.init, mask))
        training = self.spec.distilled_training.replace(augmentation="none")
        train(self.model, self.distilled, training, device=CPU, seed=self.spec.seed, mask=mask)
        return capture_state(self.model)

    def magnitude_prune(self, trained, mask, round_index):
        restore_state(self.model, trained)
        weights = prunable_weights(self.model)
        return next_mask(magnitude_scores(weights), mask, self.spec.pruning.rate, round_index)

    def test(self, state):
        restore_state(self.model, state)
        return evaluate(self.model, self.data.test, device=CPU)


def engine_rounds(spec, inputs, folder):
    records = run_experiment(spec, inputs, folder, CPU)
    return [(r.mask_hash, r.test_accuracy, r.test_loss) for r in records], records


@pytest.mark.parametrize("rewind", ["0ep", "1ep"])
def test_imp_prunes_real_training_from_the_rewind_point_and_validates_from_there(digits, tmp_path, rewind):
    spec = spec_for("imp", rounds=3, rewind=rewind)
    ref = Reference(spec, digits)
    mask = full_mask(prunable_weights(ref.model))
    # The first real-data training runs from initialisation and sets the rewind point as it passes it.
    trained, rewind_state = ref.train_real(ref.init, mask, snapshot_step=ref.rewind_step)
    expected = []
    for r in range(1, 4):
        mask = ref.magnitude_prune(trained, mask, r)
        # Validation: the subnetwork trained on real data from the rewind point; it is also the next inner loop.
        trained, _ = ref.train_real(rewind_state, mask, start_step=ref.rewind_step)
        expected.append((mask_hash(mask), *ref.test(trained)))
    got, records = engine_rounds(spec, Inputs(digits), tmp_path / "imp")
    assert got == expected
    assert [r.inner_data for r in records] == ["real"] * 3


def test_distilled_prunes_distilled_training_from_initialisation_and_validates_from_initialisation(
        digits, distilled, tmp_path):
    spec = spec_for("distilled", rounds=3, rewind="1ep")  # the rewind point is IMP's; distilled pruning ignores it
    ref = Reference(spec, digits, distilled)
    mask = full_mask(prunable_weights(ref.model))
    expected = []
    for r in range(1, 4):
        mask = ref.magnitude_prune(ref.train_distilled(mask), mask, r)
        trained, _ = ref.train_real(ref.init, mask)
        expected.append((mask_hash(mask), *ref.test(trained)))
    got, records = engine_rounds(spec, Inputs(digits, distilled), tmp_path / "distilled")
    assert got == expected
    assert [r.inner_data for r in records] == ["distilled"] * 3
    assert all(r.inner_examples == 4 * len(distilled) for r in records)


def test_hybrid_switches_to_real_imp_past_its_sparsity(digits, distilled, tmp_path):
    spec = spec_for("hybrid", rounds=4, hybrid_switch=0.3)
    ref = Reference(spec, digits, distilled)
    mask = full_mask(prunable_weights(ref.model))
    expected, inner = [], []
    for r in range(1, 5):
        # Distilled rounds make every mask up to the switch's sparsity (here 20%); IMP rounds the sparser ones.
        if 1 - (1 - sparsity(mask)) * 0.8 <= 0.3:
            trained, kind = ref.train_distilled(mask), "distilled"
        else:
            (trained, _), kind = ref.train_real(ref.init, mask), "real"  # rewind 0ep: initialisation
        inner.append(kind)
        mask = ref.magnitude_prune(trained, mask, r)
        validated, _ = ref.train_real(ref.init, mask)
        expected.append((mask_hash(mask), *ref.test(validated)))
    assert inner == ["distilled", "real", "real", "real"]  # masks made at 20% | 36%, 49%, 59% sparsity
    got, records = engine_rounds(spec, Inputs(digits, distilled), tmp_path / "hybrid")
    assert got == expected
    assert [r.inner_data for r in records] == inner
    # With the default switch (0.5) the last distilled mask is 48.8% sparse, not the 59% of the next round.
    default = spec_for("hybrid", rounds=6)
    assert [get_method("hybrid").inner_data(default, 1 - 0.8 ** r) for r in range(6)] == \
        ["distilled"] * 3 + ["real"] * 3


def test_hybrid_rewinds_to_the_point_imp_rewinds_to(digits, distilled, tmp_path):
    """Rewound to epoch 1, the hybrid's IMP rounds start from the dense network's weights after one epoch (IMP's
    rewind point), not from those of the sparse subnetwork its first real-data training starts with."""
    imp = spec_for("imp", rounds=2, rewind="1ep")
    hybrid = spec_for("hybrid", rounds=3, rewind="1ep", hybrid_switch=0.3)
    run_experiment(imp, Inputs(digits), tmp_path / "imp", CPU, keep_masks=True, validate=False)
    records = run_experiment(hybrid, Inputs(digits, distilled), tmp_path / "hybrid", CPU, keep_masks=True,
                             validate=False)
    assert [r.inner_data for r in records] == ["distilled", "real", "real"]
    imp_point = torch.load(tmp_path / "imp" / "rewind.pt", weights_only=True)
    hybrid_point = torch.load(tmp_path / "hybrid" / "rewind.pt", weights_only=True)
    assert imp_point.keys() == hybrid_point.keys()
    assert all(torch.equal(imp_point[name], hybrid_point[name]) for name in imp_point)
    # Reaching it is part of the hybrid's search: its first real round costs one more epoch of examples.
    assert records[1].inner_examples == records[2].inner_examples + len(digits.train)


def test_dense_trains_the_full_network_from_initialisation(digits, tmp_path):
    spec = spec_for("dense")
    ref = Reference(spec, digits)
    trained, _ = ref.train_real(ref.init, full_mask(prunable_weights(ref.model)))
    got, records = engine_rounds(spec, Inputs(digits), tmp_path / "dense")
    assert got == [(mask_hash(full_mask(prunable_weights(ref.model))), *ref.test(trained))]
    assert records[0].sparsity == 0.0 and records[0].round == 0


# --- random -------------------------------------------------------------------------------------------------

def _random_masks(digits, tmp_path, seed, rounds=6, strategy="global"):
    spec = spec_for("random", seed=seed, rounds=rounds, strategy=strategy, validate=False)
    folder = tmp_path / f"random-{seed}-{strategy}"
    records = run_experiment(spec, Inputs(digits), folder, CPU, keep_masks=True)
    return spec, records, [unpack_mask(torch.load(mask_path(folder, r), weights_only=True))
                           for r in range(1, rounds + 1)]


def _z(kept: torch.Tensor, pruned: torch.Tensor) -> float:
    """Two-sample z statistic of the difference of means."""
    se = math.sqrt(kept.var().item() / kept.numel() + pruned.var().item() / pruned.numel())
    return (kept.mean().item() - pruned.mean().item()) / se


def test_random_keeps_weights_whatever_their_initial_or_trained_values(digits, tmp_path):
    spec, records, masks = _random_masks(digits, tmp_path, seed=0)
    final = masks[-1]
    assert count_kept(final) == round(sum(m.numel() for m in final.values()) * 0.8 ** 6)
    assert all(r.inner_data == "none" and r.inner_examples == 0 for r in records)
    ref = Reference(spec, digits)
    trained, _ = ref.train_real(ref.init, full_mask(final))  # the dense network trained on real data
    for label, state in (("initial", ref.init), ("trained", trained)):
        values = torch.cat([state[name].abs().flatten() for name in final])
        keep = torch.cat([m.flatten() for m in final.values()])
        z = _z(values[keep], values[~keep])
        # A uniformly random mask keeps and prunes weights of the same magnitudes on average; magnitude pruning
        # would put z in the hundreds.
        assert abs(z) < 4.5, f"{label} |w|: kept and pruned weights differ (z = {z:.1f})"


def test_random_mask_is_the_same_whatever_the_weights():
    method = get_method("random")
    spec = spec_for("random", rounds=3)
    torch.manual_seed(0)
    weights = prunable_weights(build_model(spec.model, (1, 8, 8), 10))
    other = {name: torch.randn_like(w) * 100 for name, w in weights.items()}
    mask = full_mask(weights)
    for r in range(1, 4):
        a = prune_round(method, spec, weights, mask, r)
        b = prune_round(method, spec, other, mask, r)
        assert mask_hash(a) == mask_hash(b)
        mask = a
    # Magnitude pruning, by contrast, follows the weights.
    imp = get_method("imp")
    assert mask_hash(prune_round(imp, spec, weights, full_mask(weights), 1)) != \
        mask_hash(prune_round(imp, spec, other, full_mask(weights), 1))


def test_global_random_mask_thins_every_layer_alike_and_records_it(digits, tmp_path):
    spec, records, masks = _random_masks(digits, tmp_path, seed=0)
    folder = tmp_path / "random-0-global"
    on_disk = read_records(folder / "rounds.parquet")
    for record, mask in zip(on_disk, masks):
        assert [(layer.name, layer.kept, layer.total) for layer in record.layers] == \
            [(name, int(m.sum()), m.numel()) for name, m in mask.items()]
        assert sum(layer.kept for layer in record.layers) == record.weights_kept == count_kept(mask)
        density = record.weights_kept / record.weights_total
        for layer in record.layers:
            # Kept count of a layer under a uniform global choice: hypergeometric, within binomial noise.
            noise = math.sqrt(density * (1 - density) / layer.total)
            assert abs(layer.kept / layer.total - density) < 4.5 * noise + 1 / layer.total, layer


def test_random_masks_differ_between_seeds_and_layerwise_keeps_each_layer_at_the_density(digits, tmp_path):
    _, _, seed0 = _random_masks(digits, tmp_path, seed=0, rounds=2)
    _, _, seed1 = _random_masks(digits, tmp_path, seed=1, rounds=2)
    assert mask_hash(seed0[-1]) != mask_hash(seed1[-1])
    _, records, layerwise = _random_masks(digits, tmp_path, seed=0, rounds=2, strategy="layerwise")
    for layer in records[-1].layers:
        assert layer.kept == round(layer.total * 0.8 ** 2)
