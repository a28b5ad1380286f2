"""Any field from the command line (``--set KEY=VALUE``) and as a sweep axis (``[grid]``): typed and checked as the
spec file is, saved as the effective spec, expanded into experiments whose results carry the grid's values."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from dpcluster.cli.main import main
from dpcluster.errors import SpecError, UserError
from dpcluster.specs import ExperimentSpec
from dpcluster.sweeps.graph import experiments
from dpcluster.sweeps.spec import SweepSpec

pytestmark = pytest.mark.usefixtures("one_thread")


def test_assignments_are_typed_and_checked_as_the_spec_file_is():
    spec = ExperimentSpec().with_assignments(["training.lr=0.02", "model.width=64", "data.label=2024",
                                              "training.milestones=[3, 6]", "data.zca=true"])
    assert (spec.training.lr, spec.model.width, spec.data.label) == (0.02, 64, "2024")
    assert spec.training.milestones == (3, 6) and spec.data.zca
    # The same as the file saying so: one spec, one id.
    assert spec == ExperimentSpec.from_toml(spec.to_toml())
    for text, message in (("training.lrr=1", "--set training.lrr: unknown key"),
                          ("training.lr=-1", "--set training.lr: must be > 0"),
                          ("training.epochs=2.5", "--set training.epochs: must be an integer"),
                          ("training.lr.x=1", "'lr' holds a value"), ("lr", "expected KEY=VALUE")):
        with pytest.raises(UserError, match=message):
            ExperimentSpec().with_assignments([text])


def test_run_with_set_saves_the_effective_spec(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", "--methods", "dense", "--seeds", "0", "--set", "training.epochs=1",
                 "--set", "model.width=8", "--out", str(out), "--device", "cpu"]) == 0
    saved = SweepSpec.load(out / "sweep.toml")
    assert saved.base.training.epochs == 1 and saved.base.model.width == 8
    (row,) = pq.read_table(out / "results").to_pylist()
    assert row["experiment_id"] == saved.base.replace(method="dense").experiment_id


@pytest.mark.parametrize("command", [["run"], ["distill", "--method", "dm"], ["evaluate-set", "somewhere"]])
def test_a_bad_set_is_one_line_and_writes_nothing(tmp_path, capsys, command):
    out = tmp_path / "out"
    assert main([*command, "--set", "training.lr=fast", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--set training.lr: must be a number" in err and err.count("\n") == 1 and not out.exists()


def test_a_sweeps_set_reaches_its_own_fields_its_tables_and_its_base():
    sweep = SweepSpec().with_assignments(["seeds=[3, 4]", "training.lr=0.02", "data.digits.test_fraction=0.3",
                                          "data.root=/data", "grid.model.width=[8, 16]"])
    assert sweep.seeds == (3, 4) and sweep.base.training.lr == 0.02 and sweep.base.data.root == "/data"
    assert sweep.data_spec("digits").test_fraction == 0.3
    assert dict(sweep.grid) == {"model.width": (8, 16)}
    with pytest.raises(UserError, match="--set base.training.lrr: unknown key"):
        SweepSpec().with_assignments(["training.lrr=1"])
    with pytest.raises(UserError, match="--set grid.method: method is an axis of the sweep already"):
        SweepSpec().with_assignments(["grid.method=['imp']"])


def test_a_grid_expands_into_one_experiment_per_point_with_the_fields_set():
    sweep = SweepSpec.from_dict({"methods": ["imp", "distilled"], "seeds": [0, 1],
                                 "grid": {"training.lr": [0.02, 0.05], "distilled_training.epochs": [5, 9]}})
    made = experiments(sweep)
    plain = experiments(sweep.replace(grid=None))
    # IMP does not depend on the distilled training: 2 learning rates; distilled pruning: 2 x 2.
    assert len(made) == 2 * 2 + 2 * 4 == 4 * len(plain) - 2 * 2
    for spec in made:
        point = dict(spec.grid)
        assert spec.training.lr == point["training.lr"]
        expected = next(p for p in plain if (p.method, p.seed) == (spec.method, spec.seed)).with_values(point)
        assert spec.experiment_id == expected.experiment_id
        assert ("distilled_training.epochs" in point) == (spec.method == "distilled")
    assert len({spec.experiment_id for spec in made}) == len(made)
    assert SweepSpec.from_toml(sweep.to_toml()) == sweep


@pytest.mark.parametrize("grid, message", [
    ({"seed": [1]}, r"seed is an axis of the sweep already \(seeds\)"),
    ({"training.lrr": [0.1]}, "no such field"),
    ({"training": [1]}, "is a table"),
    ({"training.lr": [0.1, -1.0]}, r'grid."training.lr"\[1\]: must be > 0'),
    ({"training.lr": []}, "non-empty list"),
    ({"training.lr": [0.1, 0.1]}, "lists a value twice"),
])
def test_grid_mistakes_name_the_key(grid, message):
    with pytest.raises(SpecError, match=message):
        SweepSpec.from_dict({"grid": grid})


def test_a_grid_sweep_runs_and_its_results_and_report_split_by_the_grid(tmp_path, capsys):
    spec = tmp_path / "grid.toml"
    spec.write_text('name = "grid"\nmethods = ["dense", "imp"]\nseeds = [0]\n[grid]\n"training.lr" = [0.02, 0.05]\n'
                    '[base]\ntraining = { epochs = 1 }\npruning = { rounds = 1 }\nmodel = { width = 8 }\n')
    out = tmp_path / "sweep"
    # One grid key in the file, one more from the command line: 2 x 2 points.
    assert main(["sweep", str(spec), "--set", "grid.model.width=[8, 16]", "--out", str(out), "--device", "cpu"]) == 0
    rows = pq.read_table(out / "results").to_pylist()
    assert len(rows) == 2 * 4  # dense's level and IMP's one round, at every point
    assert {row["grid"] for row in rows} == {f"model.width={w}, training.lr={lr}" for w in (8, 16)
                                             for lr in (0.02, 0.05)}
    saved = SweepSpec.load(out / "sweep.toml")
    assert dict(saved.grid) == {"model.width": (8, 16), "training.lr": (0.02, 0.05)}
    for row in rows:
        (spec_of_row,) = [e for e in experiments(saved) if e.experiment_id == row["experiment_id"]]
        assert spec_of_row.grid_label == row["grid"]
    summary = pq.read_table(out / "aggregate.parquet").to_pylist()
    assert len(summary) == 8 and {(r["model.width"], r["training.lr"]) for r in summary} == {
        (w, lr) for w in (8, 16) for lr in (0.02, 0.05)}
    assert main(["report", str(out)]) == 0
    csv = (out / "report" / "summary.csv").read_text().splitlines()
    assert csv[0].startswith("dataset,model,series,model.width,training.lr,") and len(csv) == 1 + 8
    assert any(line.startswith('digits,convnet,"imp (rewind 0ep) [model.width=16, training.lr=0.05]",16,0.05,')
               for line in csv)
    # The accuracy figure: a dense band per grid point (not one over all of them), a line per IMP point.
    from dpcluster.report.figures import accuracy_vs_sparsity
    from dpcluster.report.tables import load

    labels = accuracy_vs_sparsity(load(out)).axes[0].get_legend_handles_labels()[1]
    assert sum(label.startswith("dense [") for label in labels) == 4
    assert sum(label.startswith("imp (rewind 0ep) [") for label in labels) == 4


def test_a_searchs_set_changes_its_base_and_checks_the_space_again(tmp_path):
    from dpcluster.tune.spec import SearchSpec

    search = SearchSpec.load("jobs/tune_digits_distilled.toml")
    changed = search.with_base_assignments(["training.epochs=3"])
    assert changed.base.training.epochs == 3 and changed.space == search.space
    key = search.space[0].key
    with pytest.raises(UserError, match=f"--set {key.split('.')[0]}"):
        search.with_base_assignments([f"{key.split('.')[0]}=3"])
