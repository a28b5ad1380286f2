"""Trajectory matching: expert trajectories (and their cache), the distiller, checkpoint/resume, and the set's use."""

from __future__ import annotations

import statistics
from dataclasses import replace

import pytest
import torch

import dpcluster.distilled.experts as experts_module
from dpcluster.data.base import DataBundle
from dpcluster.distilled.experts import expert_network, expert_trajectories, flat_parameters
from dpcluster.distilled.format import DistilledSet
from dpcluster.distilled.mtt import distill_mtt
from dpcluster.errors import UserError
from dpcluster.models import build_model
from dpcluster.specs import ModelSpec, TrainingSpec
from dpcluster.specs.experiment import MTTSpec
from dpcluster.training.loop import evaluate, train

CPU = torch.device("cpu")
# DSA without flips: what trajectory matching uses on digits ("auto").
AUG = "dsa_noflip"
IPC = 5
# Depth 2: on 8x8 digits a third pooled block leaves 1x1 maps, and such a net learns slowly.
MODEL = ModelSpec(name="convnet", depth=2, width=16)
MTT = MTTSpec(experts=2, trajectory_epochs=4, expert_lr=0.1, expert_batch_size=32, iterations=40, syn_steps=10,
              expert_epochs=2, max_start_epoch=2, lr_images=1000.0, lr_lr=1e-3, lr_init=0.1)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trajectories(digits) -> list[torch.Tensor]:
    return expert_trajectories(digits, MODEL, MTT, AUG, 0, CPU, None)


@pytest.fixture(scope="module")
def distilled(digits, trajectories) -> tuple[DistilledSet, list[float]]:
    losses: list[float] = []
    result = distill_mtt(digits, MODEL, IPC, MTT, AUG, 0, CPU, trajectories,
                         progress=lambda it, total, loss: losses.append(loss))
    return result, losses


def num_params(data: DataBundle, spec: ModelSpec = MODEL) -> int:
    return sum(p.numel() for p in build_model(spec, data.input_shape, data.num_classes).parameters())


# --- expert trajectories -----------------------------------------------------------------------------------------

def test_trajectories_have_one_row_per_epoch_from_the_seeded_init(digits, trajectories):
    assert len(trajectories) == MTT.experts
    for index, trajectory in enumerate(trajectories):
        assert trajectory.shape == (MTT.trajectory_epochs + 1, num_params(digits))
        assert trajectory.dtype == torch.float32 and trajectory.device.type == "cpu"
        fresh = flat_parameters(expert_network(MODEL, digits, 0, index, CPU))
        assert torch.equal(trajectory[0], fresh)
        steps = (trajectory[1:] - trajectory[:-1]).norm(dim=1)
        assert bool((steps > 1e-3).all()), steps
    assert not torch.equal(trajectories[0][0], trajectories[1][0])  # each expert has its own init


def test_experts_learn(digits, trajectories):
    net = expert_network(MODEL, digits, 0, 0, CPU)
    torch.nn.utils.vector_to_parameters(trajectories[0][-1], net.parameters())
    accuracy, _ = evaluate(net, digits.test, device=CPU)
    assert accuracy > 0.6


def test_trajectories_are_cached_and_reused(digits, trajectories, tmp_path, monkeypatch):
    calls = []
    first = expert_trajectories(digits, MODEL, MTT, AUG, 0, CPU, tmp_path, progress=lambda *a: calls.append(a))
    assert calls[0] == (1, MTT.experts, 1, MTT.trajectory_epochs)
    assert calls[-1] == (MTT.experts, MTT.experts, MTT.trajectory_epochs, MTT.trajectory_epochs)
    assert len(calls) == MTT.experts * MTT.trajectory_epochs
    assert [p.name for p in tmp_path.iterdir()] == [p.name for p in tmp_path.glob("experts-*.pt")]
    assert len(list(tmp_path.iterdir())) == 1
    for a, b in zip(first, trajectories):
        assert torch.equal(a, b)  # training is deterministic on the CPU

    def no_training(*args, **kwargs):
        raise AssertionError("trained although the trajectories are cached")

    monkeypatch.setattr(experts_module.loop, "train", no_training)
    again = expert_trajectories(digits, MODEL, MTT, AUG, 0, CPU, tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(again, first))
    # Another seed, augmentation or learning rate is another entry: it has to be trained.
    for args in ((MTT, AUG, 1), (MTT, "none", 0), (replace(MTT, expert_lr=0.05), AUG, 0)):
        with pytest.raises(AssertionError, match="trained although"):
            expert_trajectories(digits, MODEL, *args, CPU, tmp_path)


def test_interrupted_expert_training_keeps_the_finished_experts(digits, trajectories, tmp_path, monkeypatch):
    real_train = experts_module.loop.train
    started = []

    def train_once(*args, **kwargs):
        started.append(kwargs["seed"])
        if len(started) == 2:
            raise KeyboardInterrupt
        return real_train(*args, **kwargs)

    monkeypatch.setattr(experts_module.loop, "train", train_once)
    with pytest.raises(KeyboardInterrupt):
        expert_trajectories(digits, MODEL, MTT, AUG, 0, CPU, tmp_path)
    assert len(list(tmp_path.glob("experts-*.partial.pt"))) == 1
    assert not [p for p in tmp_path.glob("experts-*.pt") if not p.name.endswith(".partial.pt")]

    started.clear()
    monkeypatch.setattr(experts_module.loop, "train", lambda *a, **k: (started.append(k["seed"]), real_train(*a, **k)))
    resumed = expert_trajectories(digits, MODEL, MTT, AUG, 0, CPU, tmp_path)
    assert len(started) == 1  # only the second expert was trained again
    assert all(torch.equal(a, b) for a, b in zip(resumed, trajectories))
    assert [p.name.endswith(".partial.pt") for p in tmp_path.iterdir()] == [False]


def test_batchnorm_models_are_refused(digits, tmp_path, monkeypatch):
    monkeypatch.setattr(experts_module.loop, "train", lambda *a, **k: pytest.fail("trained a BatchNorm expert"))
    with pytest.raises(UserError, match="BatchNorm") as error:
        expert_trajectories(digits, replace(MODEL, norm="batchnorm"), MTT, AUG, 0, CPU, tmp_path)
    assert "\n" not in str(error.value)
    with pytest.raises(UserError, match="BatchNorm"):
        distill_mtt(digits, replace(MODEL, norm="batchnorm"), IPC, MTT, AUG, 0, CPU,
                    [torch.zeros(MTT.trajectory_epochs + 1, num_params(digits, replace(MODEL, norm="batchnorm")))])


def test_trajectories_of_another_model_are_refused(digits, trajectories):
    with pytest.raises(UserError, match="parameters"):
        distill_mtt(digits, replace(MODEL, width=8), IPC, MTT, AUG, 0, CPU, trajectories)
    with pytest.raises(UserError, match="epochs"):
        distill_mtt(digits, MODEL, IPC, MTT, AUG, 0, CPU, [t[:3] for t in trajectories])


# --- distillation ------------------------------------------------------------------------------------------------

def test_matching_loss_falls(distilled):
    _, losses = distilled
    assert len(losses) == MTT.iterations
    assert all(torch.isfinite(torch.tensor(losses)))
    first, last = statistics.mean(losses[:8]), statistics.mean(losses[-8:])
    # Seen on digits: the mean falls to 0.62-0.76 of its start over 40 iterations, whatever the seeds.
    assert last < 0.85 * first, (first, last)


def test_the_set_is_learned_and_described(digits, trajectories, distilled):
    result, losses = distilled
    assert result.method == "mtt" and result.source_dataset == "digits"
    assert result.images.shape == (10 * IPC, *digits.input_shape) and result.images.dtype == torch.float32
    assert torch.equal(result.labels, torch.arange(10).repeat_interleave(IPC))
    assert result.mean == tuple(digits.mean) and result.std == tuple(digits.std) and not result.zca
    assert result.learned_lr is not None and abs(result.learned_lr - MTT.lr_init) > 1e-3
    assert result.extra["mtt"] == MTT.to_dict() and result.extra["augmentation"] == AUG
    assert result.extra["loss_last"] == losses[-1]
    # The images moved away from the real images they started as.
    start = distill_mtt(digits, MODEL, IPC, replace(MTT, iterations=0), AUG, 0, CPU, trajectories)
    assert start.learned_lr == pytest.approx(MTT.lr_init)
    change = (result.images - start.images).abs().mean() / start.images.abs().mean()
    assert change > 0.05, float(change)


def test_seeded_runs_repeat(digits, trajectories):
    spec = replace(MTT, iterations=3)
    a = distill_mtt(digits, MODEL, IPC, spec, AUG, 3, CPU, trajectories)
    b = distill_mtt(digits, MODEL, IPC, spec, AUG, 3, CPU, trajectories)
    c = distill_mtt(digits, MODEL, IPC, spec, AUG, 4, CPU, trajectories)
    assert torch.equal(a.images, b.images) and a.learned_lr == b.learned_lr
    assert not torch.equal(a.images, c.images)


def test_minibatches_smaller_than_the_set(digits, trajectories):
    losses = []
    spec = replace(MTT, iterations=6, batch_syn=7)  # 50 images: chunks of 7 and one of 1
    result = distill_mtt(digits, MODEL, IPC, spec, AUG, 0, CPU, trajectories,
                         progress=lambda it, total, loss: losses.append(loss))
    start = distill_mtt(digits, MODEL, IPC, replace(spec, iterations=0), AUG, 0, CPU, trajectories)
    assert len(losses) == 6 and all(0 < loss < 10 for loss in losses)
    assert not torch.equal(result.images, start.images)
    assert result.extra["mtt"]["batch_syn"] == 7


def test_interrupted_run_resumes_where_it_was_saved(digits, trajectories, tmp_path):
    spec = replace(MTT, iterations=12)
    whole = distill_mtt(digits, MODEL, IPC, spec, AUG, 5, CPU, trajectories)

    state = tmp_path / "state.pt"
    checkpoints: list[int] = []

    def stop_at_7(iteration, total, loss):
        if iteration == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        distill_mtt(digits, MODEL, IPC, spec, AUG, 5, CPU, trajectories, progress=stop_at_7, state_path=state,
                    checkpoint_every=5, on_checkpoint=lambda it, s: checkpoints.append(it))
    assert checkpoints == [5]
    assert torch.load(state, weights_only=True)["iteration"] == 5

    iterations: list[int] = []
    seen: list[DistilledSet] = []
    resumed = distill_mtt(digits, MODEL, IPC, spec, AUG, 5, CPU, trajectories,
                          progress=lambda it, total, loss: iterations.append(it), state_path=state,
                          checkpoint_every=5, on_checkpoint=lambda it, s: (checkpoints.append(it), seen.append(s)))
    assert iterations == list(range(6, 13))
    assert checkpoints == [5, 10, 12]
    assert torch.load(state, weights_only=True)["iteration"] == 12
    assert torch.equal(resumed.images, whole.images)
    assert resumed.learned_lr == whole.learned_lr
    assert torch.equal(seen[-1].images, resumed.images)

    # A state of another run is not resumed silently.
    with pytest.raises(UserError, match="another run"):
        distill_mtt(digits, MODEL, IPC, spec, AUG, 6, CPU, trajectories, state_path=state)


def test_a_net_trained_on_the_set_beats_chance(digits, distilled):
    result, _ = distilled
    torch.manual_seed(123)
    net = build_model(MODEL, digits.input_shape, digits.num_classes)
    spec = TrainingSpec(optimizer="sgd", lr=result.learned_lr, momentum=0.0, weight_decay=0.0, epochs=300,
                        batch_size=256, augmentation=AUG)
    train(net, result.as_tensor_set(), spec, device=CPU, seed=0)
    accuracy, _ = evaluate(net, digits.test, device=CPU)
    assert accuracy > 0.6, accuracy  # chance is 0.1


def test_students_start_below_max_start_epoch_as_mtt_draws_them():
    """MTT's np.random.randint(0, max_start_epoch): every epoch 0 .. max_start_epoch - 1, about equally often,
    and never max_start_epoch itself."""
    from collections import Counter

    from dpcluster.distilled.mtt import start_epoch

    spec = replace(MTT, max_start_epoch=3)
    rng = torch.Generator().manual_seed(0)
    counts = Counter(start_epoch(spec, rng) for _ in range(3000))
    assert sorted(counts) == [0, 1, 2]
    assert all(abs(count - 1000) < 100 for count in counts.values()), counts


def test_the_learned_rate_learns_without_clipping_and_clipping_is_counted(digits, trajectories, distilled):
    """By default (as MTT) nothing is clipped, and the learned rate differs by seed; clipping, opted into, holds
    its steps to lr_lr and is counted in the set."""
    first, _ = distilled
    assert first.extra["clipped"] == {"images": 0, "lr": 0}
    other = distill_mtt(digits, MODEL, IPC, MTT, AUG, 1, CPU, trajectories)
    assert other.learned_lr != pytest.approx(first.learned_lr, rel=1e-3)
    clipped = distill_mtt(digits, MODEL, IPC, replace(MTT, iterations=10, grad_clip=1e-3), AUG, 0, CPU,
                          trajectories)
    assert clipped.extra["clipped"]["lr"] == 10 and clipped.extra["clipped"]["images"] == 10
