"""Data-parallel training with torch.distributed: two gloo processes on the CPU."""

import os
import socket

import pyarrow.dataset as ds
import pytest
import torch
import torch.multiprocessing as mp

from dpcluster.data import load_data
from dpcluster.methods.engine import Inputs, validate_round
from dpcluster.models import build_model
from dpcluster.pruning.masks import full_mask, magnitude_scores, next_mask
from dpcluster.pruning.model_masks import apply_mask, capture_state, prunable_weights
from dpcluster.specs import DataSpec, ModelSpec, TrainingSpec
from dpcluster.sweeps.backends import LocalBackend
from dpcluster.sweeps.execute import JobCall, execute
from dpcluster.sweeps.graph import expand
from dpcluster.sweeps.spec import SweepSpec
from dpcluster.training import train
from dpcluster.training.distributed import from_environment, leave

SPEC = TrainingSpec(epochs=2, batch_size=64, lr=0.05)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _environment(rank: int, world: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)


def _model_and_mask():
    torch.manual_seed(0)
    # Depth 2: the depth-3 net normalizes 2x2 maps on digits, which magnifies float rounding between runs.
    model = build_model(ModelSpec(width=8, depth=2), (1, 8, 8), 10)
    weights = prunable_weights(model)
    mask = next_mask(magnitude_scores(weights), full_mask(weights), 0.2, 2)
    apply_mask(model, mask)
    return model, mask


def _train_rank(rank, world, port, out, spec):
    _environment(rank, world, port)
    distributed = from_environment(torch.device("cpu"))
    model, mask = _model_and_mask()
    result = train(model, load_data(DataSpec()).train, spec, device=torch.device("cpu"), seed=3, mask=mask,
                   distributed=distributed)
    if distributed.is_main:
        torch.save({"state": capture_state(model), "examples": result.examples_seen}, out)
    leave(distributed)


# Batch 718 on the 1,437 digits: the last batch holds one example, so one of the two ranks gets none.
@pytest.mark.parametrize("spec", [SPEC, SPEC.replace(batch_size=718)], ids=["batch64", "empty-shard"])
def test_two_processes_take_the_same_steps_as_one(tmp_path, spec):
    out = tmp_path / "ddp.pt"
    mp.spawn(_train_rank, args=(2, _free_port(), str(out), spec), nprocs=2, join=True)
    together = torch.load(out, weights_only=True)
    model, mask = _model_and_mask()
    data = load_data(DataSpec()).train
    single = train(model, data, spec, device=torch.device("cpu"), seed=3, mask=mask)
    assert together["examples"] == single.examples_seen == 2 * len(data)
    assert all(torch.isfinite(v).all() for v in together["state"].values() if v.is_floating_point())
    for key, value in capture_state(model).items():
        assert torch.allclose(together["state"][key], value, atol=1e-5), key
    params = together["state"]
    assert all(torch.count_nonzero(params[name][~m]) == 0 for name, m in mask.items())


def _execute_rank(rank, world, port, call):
    _environment(rank, world, port)
    execute(call)


def test_a_validation_job_on_two_processes_writes_once_from_rank_zero(tmp_path):
    sweep = SweepSpec.from_dict({"name": "ddp", "methods": ["dense"], "seeds": [0],
                                 "base": {"model": {"width": 8}, "training": {"epochs": 1, "batch_size": 64}}})
    (job, _aggregate) = expand(sweep)
    mp.spawn(_execute_rank, args=(2, _free_port(), JobCall(job, tmp_path, "cpu")), nprocs=2, join=True)
    rows = ds.dataset(tmp_path / "results", format="parquet", partitioning="hive").to_table().to_pylist()
    assert len(rows) == 1 and len(list((tmp_path / "results").rglob("*.parquet"))) == 1
    spec = job.experiment
    single = validate_round(spec, Inputs(load_data(spec.data)), None, 0, torch.device("cpu"))
    assert abs(rows[0]["test_accuracy"] - single.test_accuracy) <= 1 / 360 + 1e-9


def test_each_rank_trains_on_its_own_gpu():
    from dpcluster.training.distributed import Distributed

    rank = Distributed(rank=3, world_size=4, local_rank=1)
    assert rank.device_for(torch.device("cuda")) == torch.device("cuda", 1)
    assert rank.device_for(torch.device("cuda", 0)) == torch.device("cuda", 0)  # an explicit GPU is kept
    assert rank.device_for(torch.device("cpu")) == torch.device("cpu")


def test_batchnorm_is_synchronised_only_in_data_parallel_training_on_cuda():
    from torch import nn

    from dpcluster.training.distributed import Distributed, synced_batchnorm

    model = build_model(ModelSpec(width=8, depth=2, norm="batchnorm"), (1, 8, 8), 10)
    originals = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    state = {k: v for k, v in model.state_dict().items()}
    ranks = Distributed(rank=0, world_size=2)

    def synced():
        return [m for m in model.modules() if isinstance(m, nn.SyncBatchNorm)]

    with synced_batchnorm(model, ranks, torch.device("cuda")):
        assert len(synced()) == len(originals) == 2
        # The same parameters and running statistics, not copies: what training changes is the model's.
        for sync, original in zip(synced(), originals):
            assert sync.weight is original.weight and sync.running_mean is original.running_mean
        assert list(model.state_dict()) == list(state)
    assert synced() == [] and [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)] == originals
    for device, distributed in ((torch.device("cpu"), ranks), (torch.device("cuda"), None)):
        with synced_batchnorm(model, distributed, device):
            assert synced() == []


def _pair_rank(rank, world, port, calls):
    _environment(rank, world, port)
    for call in calls:
        execute(call)


def _run(calls, world: int) -> None:
    if world == 1:
        for call in calls:
            execute(call)
    else:
        mp.spawn(_pair_rank, args=(world, _free_port(), calls), nprocs=world, join=True)


def _pair_sweep(norm: str) -> SweepSpec:
    return SweepSpec.from_dict({
        "name": "pairs", "methods": ["dense"], "seeds": [0], "analyses": ["stability"],
        "analysis": {"points": 3, "test_examples": 90, "batchnorm_examples": 90},
        "base": {"model": {"width": 8, "depth": 2, "norm": norm}, "training": {"epochs": 1, "batch_size": 64}}})


def test_both_copies_of_a_pair_train_on_the_same_number_of_processes(tmp_path):
    from dpcluster.sweeps.layout import SweepLayout

    sweep = _pair_sweep("batchnorm")
    jobs = {job.kind: job for job in expand(sweep)}
    validate, pair, stability = jobs["validate"], jobs["pair"], jobs["stability"]
    spec = validate.experiment
    pairs = {}
    for validated_on, paired_on in ((1, 2), (2, 2), (1, 1)):
        folder = tmp_path / f"validated{validated_on}-paired{paired_on}"
        layout = SweepLayout(folder)
        _run([JobCall(validate, folder, "cpu")], validated_on)
        kept = torch.load(layout.trained_file(spec, 0), weights_only=True)
        assert kept["world_size"] == validated_on
        _run([JobCall(pair, folder, "cpu")], paired_on)
        pairs[validated_on, paired_on] = saved = torch.load(layout.pair_file(spec, 0), weights_only=True)
        assert saved["world_size"] == paired_on
        reused = all(torch.equal(saved["a"][k], kept["state"][k]) for k in kept["state"])
        # The validation's network is copy a only when it trained on as many processes as copy b.
        assert reused == (validated_on == paired_on)
        _run([JobCall(stability, folder, "cpu")], 1)
        rows = ds.dataset(folder / "analyses" / "stability", format="parquet", partitioning="hive").to_table()
        assert set(rows.column("world_size").to_pylist()) == {paired_on}
    # Copy a trained again on two processes is the two-process validation's network; with BatchNorm's per-process
    # statistics it is not the one-process network.
    two, one = pairs[1, 2], pairs[1, 1]
    for key in two["a"]:
        assert torch.allclose(two["a"][key], pairs[2, 2]["a"][key], atol=1e-6), key
    assert max(float((two["a"][k].float() - one["a"][k].float()).abs().max()) for k in two["a"]) > 1e-4


def test_a_searched_level_is_settled_only_where_validations_run_in_one_process(tmp_path):
    from dpcluster.methods.engine import run_experiment
    from dpcluster.sweeps.jobs import get_kind
    from dpcluster.sweeps.layout import SweepLayout

    sweep = SweepSpec.from_dict({"name": "imp", "methods": ["imp"], "seeds": [0],
                                 "base": {"model": {"width": 8, "depth": 2}, "training": {"epochs": 1},
                                          "pruning": {"rounds": 2}}})
    validate = next(job for job in expand(sweep) if job.kind == "validate" and job.round == 1)
    layout = SweepLayout(tmp_path)
    spec = validate.experiment
    run_experiment(spec, Inputs(load_data(spec.data)), layout.search_dir(spec), torch.device("cpu"),
                   keep_masks=True, validate=False)
    settle = get_kind("validate").settle
    assert not settle(validate, layout, 2)  # two processes: the level is validated by its own job
    assert not layout.result_file(spec, validate.id).exists()
    assert settle(validate, layout, 1)
    row = ds.dataset(layout.result_file(spec, validate.id)).to_table().to_pylist()[0]
    assert row["world_size"] == 1 and row["test_accuracy"] is not None


class _TwoProcessBackend(LocalBackend):
    """The local backend, saying its validations would train on two processes (as Slurm's with
    --gpus-per-job 2)."""

    def processes(self, kind: str) -> int:
        return 2


def test_the_coordinator_settles_no_searched_level_for_a_data_parallel_backend(tmp_path):
    from dpcluster.sweeps.backends import RunsDataParallel
    from dpcluster.sweeps.coordinator import run_sweep

    sweep = SweepSpec.from_dict({"name": "imp", "methods": ["imp"], "seeds": [0],
                                 "base": {"model": {"width": 8, "depth": 2}, "training": {"epochs": 1},
                                          "pruning": {"rounds": 2}}})
    for backend, sent in ((LocalBackend, [("mask", None), ("validate", 2)]),
                          (_TwoProcessBackend, [("mask", None), ("validate", 1), ("validate", 2)])):
        started = []
        run = backend(on_start=lambda job, started=started: started.append((job.kind, job.round)))
        assert isinstance(run, RunsDataParallel) == (backend is _TwoProcessBackend)
        run_sweep(sweep, tmp_path / backend.__name__, run, "cpu")
        # In one process, round 1's validation is the search's second inner loop: settled from the search's
        # record, never sent. On two, every level is validated by a job of its own.
        assert started == sent
