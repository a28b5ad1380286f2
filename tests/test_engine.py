"""The round engine on the real digits data: method semantics, accuracy, and resuming after a kill."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dpcluster.data import load_data
from dpcluster.data.base import TensorSet
from dpcluster.methods.checkpoint import Checkpoint
from dpcluster.methods.engine import CHECKPOINT_FILE, RESULTS_FILE, Inputs, run_experiment
from dpcluster.results import read_records
from dpcluster.specs import DataSpec, ExperimentSpec, ModelSpec, PruningSpec, TrainingSpec

CPU = torch.device("cpu")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def digits():
    return load_data(DataSpec())


def small(method, **pruning):
    return ExperimentSpec(
        method=method, model=ModelSpec(width=16), pruning=PruningSpec(**pruning),
        training=TrainingSpec(epochs=2, batch_size=128),
        distilled_training=TrainingSpec(epochs=5, batch_size=256, lr=0.01),
    )


def fake_distilled(data, per_class=2):
    # A stand-in distilled set (real images) so these tests do not depend on distillation.
    g = torch.Generator().manual_seed(0)
    x = torch.cat([data.train_images_of_class(c, per_class, g) for c in range(data.num_classes)])
    y = torch.arange(data.num_classes).repeat_interleave(per_class)
    return TensorSet(x, y)


def test_imp_reuses_each_validation_as_the_next_inner_loop(digits, tmp_path):
    records = run_experiment(small("imp", rounds=3), Inputs(digits), tmp_path / "imp", CPU)
    assert [r.round for r in records] == [1, 2, 3]
    assert [r.inner_data for r in records] == ["real"] * 3
    for before, after in zip(records, records[1:]):
        # The training that validated round r is the one whose weights were pruned for round r + 1.
        assert after.inner_seconds == before.validation_seconds
        assert after.inner_examples == before.validation_examples == 2 * len(digits.train)
    assert all(r.test_accuracy is not None for r in records)
    assert (tmp_path / "imp" / RESULTS_FILE).exists() and (tmp_path / "imp" / "spec.toml").exists()
    assert not (tmp_path / "imp" / CHECKPOINT_FILE).exists()
    assert read_records(tmp_path / "imp" / RESULTS_FILE) == records


def test_hybrid_switches_from_distilled_to_real_data(digits, tmp_path):
    spec = small("hybrid", rounds=4, hybrid_switch=0.3)
    records = run_experiment(spec, Inputs(digits, fake_distilled(digits)), tmp_path / "hybrid", CPU)
    # Masks of at most 30% sparsity (20%) are made by a distilled round, sparser ones (36%, 49%, 59%) by real IMP.
    assert [r.sparsity for r in records] == pytest.approx([0.2, 0.36, 0.488, 0.5904], abs=1e-3)
    assert [r.inner_data for r in records] == ["distilled", "real", "real", "real"]
    assert records[0].inner_examples == 5 * 20


def test_random_and_dense(digits, tmp_path):
    random_records = run_experiment(small("random", rounds=2), Inputs(digits), tmp_path / "random", CPU)
    assert [r.inner_data for r in random_records] == ["none", "none"]
    assert all(r.inner_examples == 0 for r in random_records)
    dense = run_experiment(small("dense"), Inputs(digits), tmp_path / "dense", CPU)
    assert len(dense) == 1 and dense[0].round == 0 and dense[0].sparsity == 0.0


def test_validation_off_records_no_accuracy(digits, tmp_path):
    records = run_experiment(small("distilled", rounds=2, validate=False),
                             Inputs(digits, fake_distilled(digits)), tmp_path / "d", CPU)
    assert all(r.test_accuracy is None and r.validation_seconds == 0 for r in records)
    assert records[-1].sparsity == pytest.approx(0.36, abs=1e-4)


def test_a_finished_experiment_is_not_run_again(digits, tmp_path):
    spec = small("random", rounds=1)
    first = run_experiment(spec, Inputs(digits), tmp_path / "x", CPU)
    assert run_experiment(spec, Inputs(digits), tmp_path / "x", CPU) == first


def test_killed_run_resumes_without_repeating_finished_rounds(tmp_path):
    spec = ExperimentSpec(method="imp", model=ModelSpec(width=32), pruning=PruningSpec(rounds=4),
                          training=TrainingSpec(epochs=12))
    config = tmp_path / "spec.toml"
    spec.save(config)
    out = tmp_path / "out"
    run_dir = out / "masks" / spec.replace(method="imp", seed=0).name
    command = [sys.executable, "-m", "dpcluster", "run", "--config", str(config), "--methods", "imp",
               "--out", str(out), "--device", "cpu"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (run_dir / CHECKPOINT_FILE).exists():
        assert process.poll() is None, "the run ended before its first checkpoint"
        assert time.time() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = Checkpoint.load(run_dir / CHECKPOINT_FILE)
    assert 1 <= before.round < 4, "kill came too late to test resuming"
    assert not (run_dir / RESULTS_FILE).exists()  # no results until the experiment is complete

    finished = subprocess.run(command, env=env, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    assert f"resuming after round {before.round}" in finished.stdout
    records = read_records(run_dir / RESULTS_FILE)
    assert [r.round for r in records] == [1, 2, 3, 4]
    # Finished rounds were kept as they were, not trained again (their timings would differ).
    assert records[:before.round] == before.records


def test_distilled_and_imp_tickets_at_half_sparsity_match_dense_on_digits(tmp_path):
    """The papers' claim in miniature: at ~50% sparsity (3 rounds: 48.8%) both subnetworks reach at least the
    dense accuracy minus 3 points, with the distilled set made here by distribution matching."""
    from dpcluster.sweeps.backends import LocalBackend
    from dpcluster.sweeps.coordinator import run_sweep, sweep_records
    from dpcluster.sweeps.spec import SweepSpec

    base = ExperimentSpec(pruning=PruningSpec(rounds=3), training=TrainingSpec(epochs=15))
    sweep = SweepSpec(methods=("dense", "imp", "distilled"), base=base)
    run_sweep(sweep, tmp_path, LocalBackend(), "cpu")
    records = sweep_records(sweep, tmp_path)
    dense = next(r.test_accuracy for r in records if r.method == "dense")
    for method in ("imp", "distilled"):
        last = max((r for r in records if r.method == method), key=lambda r: r.round)
        assert last.weights_kept == round(last.weights_total * 0.8 ** 3)
        assert last.test_accuracy >= dense - 0.03, (method, last.test_accuracy, dense)
    distilled_inner = [r.inner_data for r in records if r.method == "distilled"]
    assert distilled_inner == ["distilled"] * 3


def test_streamed_data_trains_like_on_device_tensors(tmp_path):
    """placement = "loader" streams batches through a DataLoader; the same seed gives the same results."""
    results = {}
    for placement in ("device", "loader"):
        spec = small("imp", rounds=1).replace(data=DataSpec(placement=placement, workers=0))
        data = load_data(spec.data)
        records = run_experiment(spec, Inputs(data), tmp_path / placement, CPU)
        results[placement] = (records[0].mask_hash, records[0].test_accuracy)
    assert results["device"] == results["loader"]
