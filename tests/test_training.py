import pytest
import torch

from dpcluster.data.base import TensorSet
from dpcluster.models import build_model
from dpcluster.pruning.masks import full_mask, magnitude_scores, next_mask
from dpcluster.pruning.model_masks import apply_mask, capture_state, prunable_weights, restore_state
from dpcluster.specs import ModelSpec, TrainingSpec
from dpcluster.training import evaluate, train
from dpcluster.training import loop as loop_module

CPU = torch.device("cpu")


def _data(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 8, 8, generator=g)
    y = torch.randint(0, 4, (n,), generator=g)
    return TensorSet(x, y)


def _model(norm="batchnorm", seed=0):
    torch.manual_seed(seed)
    return build_model(ModelSpec(width=8, norm=norm), (1, 8, 8), 4)


def _pruned_mask(model):
    weights = prunable_weights(model)
    return next_mask(magnitude_scores(weights), full_mask(weights), 0.5, 2)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_pruned_weights_stay_exactly_zero(optimizer, monkeypatch):
    model = _model()
    mask = _pruned_mask(model)
    apply_mask(model, mask)
    seen = {}
    real_make = loop_module.make_optimizer

    def keep_optimizer(*args, **kwargs):
        seen["optimizer"] = real_make(*args, **kwargs)
        return seen["optimizer"]

    monkeypatch.setattr(loop_module, "make_optimizer", keep_optimizer)
    spec = TrainingSpec(optimizer=optimizer, lr=0.05, weight_decay=0.01, epochs=3, batch_size=16,
                        augmentation="crop")
    train(model, _data(), spec, device=CPU, seed=0, mask=mask)
    params = dict(model.named_parameters())
    for name, m in mask.items():
        assert torch.count_nonzero(params[name][~m]) == 0, name
        assert torch.count_nonzero(params[name][m]) > 0, name
        # Nor can the optimizer state revive them later.
        for value in seen["optimizer"].state[params[name]].values():
            if torch.is_tensor(value) and value.shape == m.shape:
                assert torch.count_nonzero(value[~m]) == 0, (name, optimizer)


def test_cpu_training_is_reproducible():
    spec = TrainingSpec(epochs=2, batch_size=16, augmentation="crop_flip")
    states = []
    for _ in range(2):
        model = _model()
        train(model, _data(), spec, device=CPU, seed=5)
        states.append(capture_state(model))
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key


def test_rewinding_to_an_iteration_restores_all_state_and_resumes_identically():
    """The snapshot at iteration k holds every parameter and buffer; training on from it equals not stopping."""
    spec = TrainingSpec(epochs=3, batch_size=16, augmentation="flip")  # 6 steps per epoch
    model = _model(norm="batchnorm")
    init = capture_state(model)
    full = train(model, _data(), spec, device=CPU, seed=1, snapshot_step=8)
    final = capture_state(model)
    assert full.steps == 18 and full.snapshot is not None
    assert full.snapshot["features.1.num_batches_tracked"].item() == 8
    assert not torch.equal(full.snapshot["features.1.running_mean"], init["features.1.running_mean"])

    # The snapshot at an epoch boundary equals a run that stopped there.
    stopped = _model(norm="batchnorm")
    restore_state(stopped, init)
    train(stopped, _data(), spec.replace(epochs=1), device=CPU, seed=1)
    at_epoch = train(_restored(init), _data(), spec, device=CPU, seed=1, snapshot_step=6).snapshot
    for key, value in capture_state(stopped).items():
        assert torch.equal(value, at_epoch[key]), key

    # ...and rewinding to the snapshot restores it exactly, whatever training did since.
    restore_state(model, full.snapshot)
    for key, value in model.state_dict().items():
        assert torch.equal(value, full.snapshot[key]), key
    assert any(not torch.equal(final[k], full.snapshot[k]) for k in final)


def _restored(state):
    model = _model(norm="batchnorm")
    restore_state(model, state)
    return model


def test_examples_seen_and_evaluate():
    data = _data(n=50)
    model = _model(norm="instancenorm")
    result = train(model, data, TrainingSpec(epochs=2, batch_size=16), device=CPU, seed=0)
    assert result.examples_seen == 100 and result.steps == 8
    accuracy, loss = evaluate(model, data, device=CPU)
    assert 0.0 <= accuracy <= 1.0 and loss > 0


def test_training_learns_a_separable_problem():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (128,), generator=g)
    x = torch.randn(128, 1, 8, 8, generator=g) * 0.1
    for label in range(4):  # the class is the bright quadrant
        rows, cols = divmod(label, 2)
        x[y == label, 0, 4 * rows:4 * rows + 4, 4 * cols:4 * cols + 4] += 1.0
    data = TensorSet(x, y)
    model = _model(norm="batchnorm")
    before, _ = evaluate(model, data, device=CPU)
    train(model, data, TrainingSpec(epochs=15, batch_size=32, lr=0.05), device=CPU, seed=0)
    after, _ = evaluate(model, data, device=CPU)
    assert after > 0.9 and after > before


def test_a_job_uses_the_cpus_it_was_granted(monkeypatch):
    from dpcluster.runtime import granted_cpus, use_granted_cpus

    threads = torch.get_num_threads()
    try:
        monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
        assert granted_cpus() == 1 and use_granted_cpus() == 1 and torch.get_num_threads() == 1
        monkeypatch.delenv("SLURM_CPUS_PER_TASK")
        import os

        assert granted_cpus() == len(os.sched_getaffinity(0))  # outside a scheduler: the CPUs we may run on
    finally:
        torch.set_num_threads(threads)


class _Stop(Exception):
    pass


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_an_interrupted_training_resumes_mid_training_to_the_same_weights(tmp_path, optimizer):
    from dpcluster.training.loop import Progress

    spec = TrainingSpec(epochs=5, batch_size=32, lr=0.01, optimizer=optimizer, augmentation="dsa",
                        milestones=(3,))
    data = _data()
    model = _model()
    mask = _pruned_mask(model)
    apply_mask(model, mask)
    start = capture_state(model)
    whole = train(model, data, spec, device=CPU, seed=7, mask=mask)
    expected = capture_state(model)

    progress = Progress(tmp_path / "progress" / "run.pt", "the-training")

    def stop_after_three(end):
        if end.epoch == 3:
            raise _Stop  # before the third epoch's progress is written: two epochs are kept

    restore_state(model, start)
    with pytest.raises(_Stop):
        train(model, data, spec, device=CPU, seed=7, mask=mask, progress=progress, on_epoch=stop_after_three)
    assert progress.path.exists()
    # Another training's file (another key) is ignored, not resumed.
    restore_state(model, start)
    other = train(model, data, spec, device=CPU, seed=7, mask=mask, progress=Progress(progress.path, "another"))
    assert other.resumed_from is None
    restore_state(model, start)
    with pytest.raises(_Stop):
        train(model, data, spec, device=CPU, seed=7, mask=mask, progress=progress, on_epoch=stop_after_three)
    restore_state(model, start)
    resumed = train(model, data, spec, device=CPU, seed=7, mask=mask, progress=progress)
    per_epoch = 3  # 96 examples in batches of 32
    assert resumed.resumed_from == 2 * per_epoch
    assert resumed.examples_seen == whole.examples_seen and resumed.steps == whole.steps
    assert all(torch.equal(expected[k], v) for k, v in capture_state(model).items())
    assert not progress.path.exists() and not progress.path.parent.exists()


def test_the_epoch_hook_reports_each_epochs_mean_loss_and_accuracy_without_changing_the_training():
    """The hook's loss is the mean of the epoch's batch losses weighted by their sizes, its accuracy the share of
    the epoch's (augmented) examples the network got right as it trained; asking for them changes no weight."""
    from dpcluster.training.hooks import EpochEnd

    data = _data()
    spec = TrainingSpec(optimizer="sgd", lr=0.1, epochs=3, batch_size=16)
    model = _model()
    start = capture_state(model)
    train(model, data, spec, device=CPU, seed=3)
    unhooked = capture_state(model)
    restore_state(model, start)
    ends: list[EpochEnd] = []
    train(model, data, spec, device=CPU, seed=3, on_epoch=ends.append)
    assert all(torch.equal(unhooked[k], v) for k, v in capture_state(model).items())
    assert [(e.epoch, e.epochs) for e in ends] == [(1, 3), (2, 3), (3, 3)]
    per_epoch = -(-len(data) // 16)
    assert [e.step for e in ends] == [per_epoch, 2 * per_epoch, 3 * per_epoch] and ends[0].lr == 0.1
    # The first epoch again by hand: the same batches, the same steps, each batch's loss and hits.
    import torch.nn.functional as F

    from dpcluster.training.batches import epoch_batches
    from dpcluster.training.loop import make_optimizer

    restore_state(model, start)
    optimizer = make_optimizer([p for p in model.parameters()], spec, spec.lr, CPU)
    loss_sum, right = 0.0, 0
    for x, y, _ in epoch_batches(data, 16, 3, 0, 0, CPU):
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        loss_sum += float(loss) * len(y)
        right += int((logits.argmax(1) == y).sum())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert ends[0].loss == pytest.approx(loss_sum / len(data), rel=1e-6)
    assert ends[0].accuracy == right / len(data)
