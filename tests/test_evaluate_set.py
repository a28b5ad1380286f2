"""``dpcluster evaluate-set``: a set in a downloaded format, trained on by fresh networks against random real
subsets of its size, exactly as the evaluation's definition says; its Parquet rows, the report's table, and the
user's mistakes."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from dpcluster.cli.main import main
from dpcluster.distilled.evaluate import random_real_subset
from dpcluster.distilled.evaluate import test_accuracy_after_training_on as accuracy_after_training
from dpcluster.results.set_evaluations import read_evaluations
from dpcluster.specs import ExperimentSpec, TrainingSpec

pytestmark = pytest.mark.usefixtures("one_thread")


def write_dc_file(path, data, ipc, experiments=2):
    """DC's res_*.pt (main.py's torch.save), its sets real images of each class in the data's normalization."""
    data_save = []
    for k in range(experiments):
        subset = random_real_subset(data, ipc, seed=100 + k)
        data_save.append([copy.deepcopy(subset.x.detach().cpu()), copy.deepcopy(subset.y.detach().cpu())])
    torch.save({"data": data_save, "accs_all_exps": {"ConvNet": [np.float64(0.5)] * (2 * experiments)}}, path)
    return data_save


def test_evaluate_set_trains_fresh_networks_on_the_set_and_on_random_subsets(digits, tmp_path, capsys):
    file = tmp_path / "res_DM_digits_ConvNet_3ipc.pt"
    data_save = write_dc_file(file, digits, ipc=3)
    out = tmp_path / "out"
    argv = ["evaluate-set", str(file), "--format", "dc", "--entry", "1", "--networks", "2", "--epochs", "4",
            "--out", str(out), "--device", "cpu"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "random real subsets" in printed and "hard labels" in printed
    rows = read_evaluations(out / "set_evaluations").to_pylist()
    assert len(rows) == 4 and {row["format"] for row in rows} == {"dc"}
    # The definition: network k is seed k of the spec's model trained on the set (entry 1, as stored) with the
    # distilled training, or on random real subset k of the same size trained the same way.
    spec = ExperimentSpec()
    training = spec.distilled_training.replace(epochs=4).with_auto_augmentation("dsa_noflip")
    images, labels = data_save[1]
    from dpcluster.data.base import TensorSet

    for row in rows:
        k = row["network"]
        tensors = TensorSet(images, labels) if row["kind"] == "distilled set" else random_real_subset(digits, 3, k)
        expected = accuracy_after_training(tensors, digits, spec.model, training, k, torch.device("cpu"))
        assert row["test_accuracy"] == expected, row
        assert (row["images_per_class"], row["epochs"], row["augmentation"]) == (3, 4, "dsa_noflip")
    # Run again: the same evaluation replaces its one file.
    assert main(argv) == 0
    assert len(list((out / "set_evaluations").iterdir())) == 1
    # The report of the folder shows it, with no sweep results there.
    assert main(["report", str(out)]) == 0
    page = (out / "report" / "report.html").read_text()
    assert "distilled sets" in page and "res_DM_digits_ConvNet_3ipc.pt" in page
    assert (out / "report" / "set_evaluations.csv").read_text().count("\n") == 2


def test_evaluate_set_with_soft_labels_and_a_learned_rate(digits, tmp_path, capsys):
    subset = random_real_subset(digits, 2, seed=7)
    logits = torch.randn(len(subset.y), 10, generator=torch.Generator().manual_seed(0)) + 5 * torch.eye(10)[subset.y]
    torch.save(subset.x, tmp_path / "images_best.pt")
    torch.save(logits, tmp_path / "labels_best.pt")  # DATM's learned logits
    torch.save(torch.tensor(0.03), tmp_path / "lr_best.pt")
    out = tmp_path / "out"
    assert main(["evaluate-set", str(tmp_path), "--format", "mtt", "--networks", "1", "--epochs", "2",
                 "--out", str(out), "--device", "cpu"]) == 0
    assert "soft labels" in capsys.readouterr().out
    rows = read_evaluations(out / "set_evaluations").to_pylist()
    (on_set,) = [row for row in rows if row["kind"] == "distilled set"]
    (on_subset,) = [row for row in rows if row["kind"] == "random real subset"]
    assert on_set["labels"] == "soft" and on_set["lr"] == pytest.approx(0.03)
    assert on_subset["lr"] == ExperimentSpec().distilled_training.lr


@pytest.mark.parametrize("extra, message", [
    (["--format", "nope"], "invalid choice"),
    (["--networks", "0"], "--networks: must be >= 1"),
    (["--format", "dc", "--normalization", "0.1/0"], "--normalization"),
    (["--format", "mtt", "--entry", "1"], "--entry: format 'mtt' holds one set per file"),
    (["--normalization", "data"], "--normalization: format 'dpcluster' records"),
])
def test_evaluate_set_mistakes_are_one_line(tmp_path, capsys, extra, message):
    try:
        code = main(["evaluate-set", str(tmp_path), *extra, "--out", str(tmp_path / "out")])
    except SystemExit as exit:  # argparse's own mistakes
        code = exit.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not (tmp_path / "out").exists()


def test_evaluate_set_of_a_missing_path(tmp_path, capsys):
    assert main(["evaluate-set", str(tmp_path / "none"), "--format", "npz", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and err.count("\n") == 1
    assert not (tmp_path / "out" / "set_evaluations").exists()
