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
