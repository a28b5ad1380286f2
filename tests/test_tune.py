"""dpcluster tune: search specs checked when they load, and searches on a real local Ray."""

import pyarrow.dataset as ds
import pytest

from dpcluster.cli.main import main
from dpcluster.specs import ExperimentSpec

SEARCH = """
name = "lr"
[objective]
kind = "distilled_accuracy"
[search]
samples = 2
scheduler = "{scheduler}"
reports = 4
[space]
"distilled_training.lr" = {{ grid = [0.00001, 0.05] }}
[base]
method = "distilled"
[base.model]
width = 16
[base.distilled]
images_per_class = 5
[base.distilled.dm]
iterations = 20
[base.distilled_training]
epochs = 40
"""


@pytest.mark.parametrize("space, expected", [
    ('"training.nosuch" = { choice = [1, 2] }', "space.training.nosuch: no such field"),
    ('"distilled_training.lr" = { uniform = [0.1, 0.1] }', "empty range"),
    ('"distilled_training.lr" = { choice = [] }', "non-empty list"),
    ('"distilled_training.epochs" = { uniform = [10, 20] }', "does not suit the field"),
    ('"distilled_training.optimizer" = { choice = [3] }', "does not suit the field"),
    ('"distilled_training.lr" = { normal = [0, 1] }', "expected one of uniform"),
])
def test_a_bad_search_space_is_one_line_and_exit_2(capsys, tmp_path, space, expected):
    spec = tmp_path / "search.toml"
    spec.write_text(SEARCH.format(scheduler="fifo").split("[space]")[0] + "[space]\n" + space + "\n[base]\n"
                    "method = \"distilled\"\n")
    out = tmp_path / "out"
    assert main(["tune", str(spec), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dpcluster: error:") and err.count("\n") == 1 and expected in err, err
    assert not out.exists()


def test_an_objective_setting_it_does_not_take_is_refused(capsys, tmp_path):
    spec = tmp_path / "search.toml"
    spec.write_text(SEARCH.format(scheduler="fifo").replace('kind = "distilled_accuracy"',
                                                            'kind = "distilled_accuracy"\nsparsity = 0.5'))
    assert main(["tune", str(spec), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "objective.sparsity: unknown key" in err, err


def test_a_search_finds_the_better_learning_rate_and_its_best_config_runs(tmp_path, capsys):
    spec = tmp_path / "search.toml"
    spec.write_text(SEARCH.format(scheduler="fifo"))
    out = tmp_path / "out"
    assert main(["tune", str(spec), "--out", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    # Two draws of a grid of two: four trials, each said as it ends.
    assert "4 trial(s)" in printed and "trial 4/4:" in printed and "best configuration" in printed, printed
    rows = ds.dataset(out / "trials", format="parquet", partitioning="hive").to_table().to_pylist()
    last = {}
    for row in rows:
        last[row["config/distilled_training.lr"]] = row  # reports in order: the last is the trial's end
    assert set(last) == {0.00001, 0.05} and all(r["search"] == "lr" for r in rows)
    assert last[0.05]["test_accuracy"] > last[0.00001]["test_accuracy"] + 0.2, last
    best = ExperimentSpec.load(out / "best.toml")
    assert best.distilled_training.lr == 0.05
    # The best configuration runs unchanged.
    run_out = tmp_path / "run"
    assert main(["run", "--config", str(out / "best.toml"), "--methods", "distilled", "--seeds", "0",
                 "--rounds", "1", "--epochs", "1", "--out", str(run_out), "--device", "cpu"]) == 0
    assert main(["sweep", str(out / "best_sweep.toml"), "--out", str(tmp_path / "sweep"), "--dry-run"]) == 0


def test_asha_stops_poor_trials_early(tmp_path):
    from dpcluster.tune.run import run_search
    from dpcluster.tune.spec import SearchSpec

    spec = tmp_path / "search.toml"
    spec.write_text(SEARCH.format(scheduler="asha").replace("samples = 2", "samples = 3"))
    search = SearchSpec.load(spec)
    run_search(search, tmp_path / "out", device="cpu", say=lambda text: None)
    rows = ds.dataset(tmp_path / "out" / "trials", format="parquet", partitioning="hive").to_table().to_pylist()
    reports: dict = {}
    for row in rows:
        key = (row["config/distilled_training.lr"], row["trial_id"])
        reports[key] = max(reports.get(key, 0), row["training_iteration"])
    poor = [n for (lr, _), n in reports.items() if lr == 0.00001]
    good = [n for (lr, _), n in reports.items() if lr == 0.05]
    assert len(poor) == len(good) == 3
    # 40 epochs tested every 10: a good trial reports 4 times; a poor one was stopped before its end.
    assert good == [4, 4, 4] and min(poor) < 4, reports
