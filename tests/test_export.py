"""Tickets leave dpcluster: a digits sweep's levels exported in every format, reloaded by plain PyTorch (and
safetensors) into freshly built networks to exactly their recorded accuracy, and retrained from the exported
start and mask to exactly the level's trained weights."""

import json

import pytest
import torch
import torch.nn.utils.prune as prune
from safetensors.torch import load_file

from dpcluster.cli.main import main
from dpcluster.data import load_data
from dpcluster.methods.engine import level_mask
from dpcluster.methods.run_files import INIT_FILE
from dpcluster.models import build_model
from dpcluster.pruning.model_masks import masked_state, restore_state
from dpcluster.results.levels import level_records, read_levels
from dpcluster.specs import DataSpec, ExperimentSpec
from dpcluster.sweeps.backends import LocalBackend
from dpcluster.sweeps.coordinator import run_sweep
from dpcluster.sweeps.graph import expand
from dpcluster.sweeps.layout import SweepLayout
from dpcluster.sweeps.spec import SweepSpec
from dpcluster.training import evaluate, train

CPU = torch.device("cpu")

# IMP at both rewind points, distilled pruning and the dense network; with 3 rounds IMP's 36% level is validated
# by its search (the next round's inner loop) and its 48.8% level by a validation job: both keep their networks.
SWEEP = {
    "name": "tickets", "methods": ["dense", "imp", "distilled"], "seeds": [0], "sparsities": [0.36, 0.488],
    "rewinds": ["0ep", "1ep"],
    "base": {"model": {"width": 8}, "pruning": {"rounds": 3}, "training": {"epochs": 2},
             "distilled_training": {"epochs": 5}},
}


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tickets")
    sweep = SweepSpec.from_dict(SWEEP)
    manifest = run_sweep(sweep, folder, LocalBackend(), "cpu")
    assert all(manifest.jobs[job.id].state == "done" for job in expand(sweep))
    return folder


@pytest.fixture(scope="module")
def digits():
    return load_data(DataSpec())


def _levels(folder):
    return {(r.method, r.rewind, r.round): r for r in level_records(read_levels(folder / "results"))}


def _export(folder, out, *options):
    assert main(["export", str(folder), "--out", str(out), *options]) == 0
    return json.loads((out / "ticket.json").read_text())


def _fresh(ticket, digits):
    return build_model(ExperimentSpec.from_dict(ticket["spec"]).model, digits.input_shape, digits.num_classes)


LEVELS = [("dense", None, 0), ("imp", "0ep", 2), ("imp", "0ep", 3), ("imp", "1ep", 2), ("imp", "1ep", 3),
          ("distilled", None, 3)]


@pytest.mark.parametrize("method, rewind, round_index", LEVELS)
def test_an_exported_ticket_loads_into_plain_pytorch_at_its_recorded_accuracy(swept, digits, tmp_path, method,
                                                                              rewind, round_index):
    record = _levels(swept)[(method, rewind, round_index)]
    options = ["--method", method, "--sparsity", str(record.sparsity)] + (["--rewind", rewind] if rewind else [])
    ticket = _export(swept, tmp_path / "ticket", *options)
    assert (ticket["method"], ticket["round"], ticket["experiment_id"]) == (method, round_index, record.experiment_id)
    assert ticket["test_accuracy"] == record.test_accuracy
    assert [layer["kept"] for layer in ticket["layers"]] == [layer.kept for layer in record.layers]
    root = tmp_path / "ticket"

    # torch.nn.utils.prune's form: prune.identity on every pruned parameter, then load_state_dict.
    pruned = torch.load(root / "torch_prune" / "trained.pt", weights_only=True)
    model = _fresh(ticket, digits)
    for key in [k for k in pruned if k.endswith("_mask")]:
        module, parameter = key[: -len("_mask")].rsplit(".", 1)
        prune.identity(model.get_submodule(module), parameter)
    model.load_state_dict(pruned)
    assert evaluate(model, digits.test, device=CPU)[0] == record.test_accuracy
    kept = sum(int(pruned[k].sum()) for k in pruned if k.endswith("_mask"))
    assert kept == record.weights_kept

    # safetensors, and open_lth's trained model file: plain state dicts of the same network.
    tensors = load_file(str(root / "safetensors" / "ticket.safetensors"))
    epochs = ExperimentSpec.from_dict(ticket["spec"]).training.epochs
    for state in ({k[len("trained."):]: v for k, v in tensors.items() if k.startswith("trained.")},
                  torch.load(root / "open_lth" / f"level_{round_index}" / "main" / f"model_ep{epochs}_it0.pth",
                             weights_only=True)):
        model = _fresh(ticket, digits)
        model.load_state_dict(state)
        assert evaluate(model, digits.test, device=CPU)[0] == record.test_accuracy
    masks = torch.load(root / "open_lth" / f"level_{round_index}" / "main" / "mask.pth", weights_only=True)
    report = json.loads((root / "open_lth" / f"level_{round_index}" / "main" / "sparsity_report.json").read_text())
    assert report == {"total": float(record.weights_total), "unpruned": float(record.weights_kept)}
    assert all(torch.equal(masks[k].float(), tensors[f"mask.{k}"].float()) for k in masks)


@pytest.mark.parametrize("method, rewind, round_index", [("imp", "0ep", 3), ("imp", "1ep", 3), ("imp", "1ep", 2),
                                                         ("distilled", None, 3)])
def test_the_exported_start_and_mask_retrain_to_the_level_bit_for_bit(swept, digits, tmp_path, method, rewind,
                                                                     round_index):
    record = _levels(swept)[(method, rewind, round_index)]
    options = ["--method", method, "--sparsity", str(record.sparsity)] + (["--rewind", rewind] if rewind else [])
    ticket = _export(swept, tmp_path / "ticket", *options)
    tensors = load_file(str(tmp_path / "ticket" / "safetensors" / "ticket.safetensors"))
    part = lambda prefix: {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}  # noqa
    mask = {k: v.float() for k, v in part("mask").items()}
    # IMP rewound to epoch 1 starts its levels at the rewind point; the others from initialisation.
    starts = ticket["starts_from"]
    assert starts == ("rewind" if rewind == "1ep" else "init")
    assert (ticket["start_step"] > 0) == (starts == "rewind")
    spec = ExperimentSpec.from_dict(ticket["spec"])
    model = _fresh(ticket, digits)
    restore_state(model, masked_state(part(starts), mask))
    train(model, digits.train, spec.training, device=CPU, seed=spec.seed, mask=mask, start_step=ticket["start_step"])
    trained = part("trained")
    assert all(torch.equal(model.state_dict()[k], trained[k]) for k in trained)
    assert evaluate(model, digits.test, device=CPU)[0] == record.test_accuracy


def test_later_uses_read_the_stored_initial_weights(swept, digits):
    """A level's start is the search's stored initial weights, not weights regenerated from the seed."""
    sweep = SweepSpec.load(swept / "sweep.toml")
    job = next(j for j in expand(sweep) if j.kind == "validate" and j.experiment.method == "distilled")
    search = SweepLayout(swept).search_dir(job.experiment)
    stored = torch.load(search / INIT_FILE, weights_only=True)
    from dpcluster.methods.engine import Inputs

    _, regenerated = level_mask(job.experiment, Inputs(digits), search, job.round)
    assert all(torch.equal(regenerated[k], stored["state"][k]) for k in stored["state"])
    changed = {k: v + 1 if v.is_floating_point() else v for k, v in stored["state"].items()}
    torch.save({**stored, "state": changed}, search / INIT_FILE)
    try:
        _, read = level_mask(job.experiment, Inputs(digits), search, job.round)
        assert all(torch.equal(read[k], changed[k]) for k in changed)
    finally:
        torch.save(stored, search / INIT_FILE)


def test_export_mistakes_are_one_line_and_leave_nothing(swept, tmp_path, capsys):
    out = tmp_path / "ticket"
    for options, message in [
        (["--method", "random"], "--method random: no such level here"),
        (["--method", "imp", "--sparsity", "0.4"], "--rewind: the folder has levels of 0ep, 1ep; choose one"),
        (["--method", "imp", "--rewind", "0ep"], "--sparsity: the folder has levels at 36.0%, 48.8%"),
        (["--method", "imp", "--rewind", "0ep", "--sparsity", "1.5"], "--sparsity must be in [0, 1)"),
        (["--job", "validate-nothing"], "--job validate-nothing: no level"),
        (["--method", "dense", "--formats", "onnx"], "--formats: unknown onnx"),
    ]:
        assert main(["export", str(swept), "--out", str(out), *options]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
        assert not out.exists()
    assert main(["export", str(tmp_path), "--method", "dense"]) == 2
    assert "not a sweep or run folder" in capsys.readouterr().err
    # The nearest level is taken, and said; a second export to the same folder is refused.
    assert main(["export", str(swept), "--out", str(out), "--method", "imp", "--rewind", "0ep",
                 "--sparsity", "0.4", "--formats", "safetensors"]) == 0
    assert "no level at 40.0%: the nearest is 36.0% (round 2)" in capsys.readouterr().err
    assert json.loads((out / "ticket.json").read_text())["round"] == 2
    assert list((out).iterdir()) and not list(tmp_path.glob(".ticket.partial-*"))
    assert main(["export", str(swept), "--out", str(out), "--method", "dense"]) == 2
    assert "already exists" in capsys.readouterr().err
