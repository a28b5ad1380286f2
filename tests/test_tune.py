"""dpcluster tune: search specs checked when they load, and searches on a real local Ray (or a Ray head of their
own, started with ``ray start``). The tests that run ``dpcluster tune`` in a process of its own come first: the
others leave this process's Ray running, and a stopped head takes every Ray process with it."""

import signal
import subprocess
import sys
import time

import pyarrow.dataset as ds
import pytest
import torch

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

# Time to find the mask of two rounds of distilled pruning, for a short and a long distilled inner loop.
TIME_TO_MASK = """
name = "ttm"
[objective]
kind = "time_to_mask"
accuracy = {accuracy}
[search]
samples = 1
scheduler = "fifo"
[space]
"distilled_training.epochs" = {{ grid = {epochs} }}
[base]
method = "distilled"
[base.model]
width = 16
[base.pruning]
rounds = 2
[base.training]
epochs = 3
[base.distilled]
images_per_class = 5
[base.distilled.dm]
iterations = 20
"""


def _rows(out):
    return ds.dataset(out / "trials", format="parquet", partitioning="hive").to_table().to_pylist()


def _tune(args, env=None, **options):
    return subprocess.Popen([sys.executable, "-m", "dpcluster", "tune", *args, "--device", "cpu"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **options)


def test_tune_runs_its_trials_on_an_existing_ray_cluster(ray_head, tmp_path):
    spec = tmp_path / "search.toml"
    spec.write_text(TIME_TO_MASK.format(accuracy=0.5, epochs=[10, 20]))
    out = tmp_path / "out"
    done = _tune([str(spec), "--out", str(out), "--address", ray_head.gcs], env=ray_head.env)
    stdout, stderr = done.communicate(timeout=600)
    assert done.returncode == 0, stdout[-3000:] + stderr[-3000:]
    # The driver joined the head's cluster (it did not start a Ray of its own), and the cluster ran it.
    port = ray_head.gcs.rpartition(":")[2]
    assert "Connecting to existing Ray cluster at address: " in stderr and f":{port}..." in stderr, stderr[-3000:]
    assert "Connected to Ray cluster" in stderr and "Started a local Ray instance" not in stderr, stderr[-3000:]
    jobs = subprocess.run([ray_head.ray, "list", "jobs", "--address", ray_head.dashboard, "--format", "json"],
                          env=ray_head.env, capture_output=True, text=True, timeout=120)
    assert "dpcluster tune" in jobs.stdout or "dpcluster', 'tune'" in jobs.stdout, jobs.stdout[-3000:]
    assert len({r["trial_id"] for r in _rows(out)}) == 2


def test_a_wrong_cluster_address_is_one_line_and_exit_2(tmp_path, capsys):
    spec = tmp_path / "search.toml"
    spec.write_text(TIME_TO_MASK.format(accuracy=0.5, epochs=[10, 20]))
    # A port nothing listens on: refused at once, not after Ray's minutes of retrying.
    assert main(["tune", str(spec), "--out", str(tmp_path / "out"), "--address", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--address 127.0.0.1:1: no Ray cluster answers there" in err, err
    assert not (tmp_path / "out").exists()


def test_an_interrupted_search_resumes_without_rerunning_finished_trials(tmp_path):
    spec = tmp_path / "search.toml"
    # One short trial, then three long ones: Ctrl+C comes once the short one has ended.
    spec.write_text(TIME_TO_MASK.format(accuracy=0.5, epochs=[10, 1500, 1501, 1502]))
    out = tmp_path / "out"
    first = _tune([str(spec), "--out", str(out)])
    for line in first.stdout:
        if line.startswith("trial 1/4"):
            assert "distilled_training.epochs=10:" in line, line
            interrupted_at = time.time()
            first.send_signal(signal.SIGINT)
            break
    stdout, stderr = first.communicate(timeout=300)
    assert first.returncode == 130, stdout[-3000:] + stderr[-3000:]
    assert "dpcluster: search interrupted with 1 of 4 trial(s) ended; run the same command again" in stderr, stderr
    assert not (out / "best.toml").exists()

    second = _tune([str(spec), "--out", str(out)])
    stdout, stderr = second.communicate(timeout=600)
    assert second.returncode == 0, stdout[-3000:] + stderr[-3000:]
    assert "resuming the search" in stdout and "trial 4/4" in stdout, stdout
    # The finished trial did not run again: nothing said of it, and all its reports date from before Ctrl+C.
    assert "epochs=10:" not in stdout, stdout
    rows = _rows(out)
    by_epochs: dict = {}
    for row in rows:
        by_epochs.setdefault(row["config/distilled_training.epochs"], []).append(row)
    assert sorted(by_epochs) == [10, 1500, 1501, 1502]
    assert [r["round"] for r in by_epochs[10]] == [1, 2]
    assert all(r["timestamp"] <= interrupted_at for r in by_epochs[10]), (by_epochs[10], interrupted_at)
    assert all(r["timestamp"] >= int(interrupted_at) for e in (1500, 1501, 1502) for r in by_epochs[e])
    assert ExperimentSpec.load(out / "best.toml").distilled_training.epochs == 10


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


def test_optuna_is_refused_a_choice_of_lists(capsys, tmp_path):
    spec = tmp_path / "search.toml"
    spec.write_text(SEARCH.format(scheduler="fifo").replace('scheduler = "fifo"', 'algorithm = "optuna"')
                    .replace('"distilled_training.lr" = { grid = [0.00001, 0.05] }',
                             '"training.milestones" = { choice = [[5], [3, 6]] }'))
    assert main(["tune", str(spec), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "space.training.milestones: Optuna chooses among numbers and strings" in err, err


@pytest.mark.parametrize("base, expected", [
    ('sweep = "sweep.toml"', "base.method: sweep.toml has experiments with method dense, distilled: choose one"),
    ('sweep = "sweep.toml"\nmethod = "imp"', "base.method: sweep.toml has no experiment with method = 'imp'"),
    ('sweep = "sweep.toml"\nmethod = "distilled"\nimages_per_class = 7', "base.images_per_class: sweep.toml has no"),
    ('sweep = "nosuch.toml"', "base.sweep: cannot read"),
])
def test_a_base_from_a_sweep_names_one_experiment(capsys, tmp_path, monkeypatch, base, expected):
    from dpcluster.tune.spec import SearchSpec

    monkeypatch.chdir(tmp_path)  # the error names the sweep as the spec does
    (tmp_path / "sweep.toml").write_text('methods = ["dense", "distilled"]\nseeds = [4, 5]\n'
                                         'images_per_class = [5, 10]\n[base.model]\nwidth = 16\n[sets.10]\nlr = 0.02\n')
    spec = tmp_path / "search.toml"
    search = SEARCH.format(scheduler="fifo").split("[base]")[0]
    spec.write_text(search + "[base]\n" + 'sweep = "sweep.toml"\nmethod = "distilled"\nimages_per_class = 10\n'
                    "[base.training]\nepochs = 3\n")
    chosen = SearchSpec.load(spec).base
    # The sweep's experiment: its first seed, its model, its set size's inner loop; then the table's change.
    assert (chosen.method, chosen.seed, chosen.model.width, chosen.distilled.images_per_class,
            chosen.distilled_training.lr, chosen.training.epochs) == ("distilled", 4, 16, 10, 0.02, 3)
    spec.write_text(search + "[base]\n" + base + "\n")
    assert main(["tune", "search.toml", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err, err


@pytest.mark.parametrize("validation, expected", [(1, "must be a fraction in [0, 1)"),
                                                  (-0.1, "must be a fraction in [0, 1)"),
                                                  ("some", "must be a number, got 'some'")])
def test_a_validation_fraction_outside_0_1_is_refused(capsys, tmp_path, validation, expected):
    spec = tmp_path / "search.toml"
    spec.write_text(SEARCH.format(scheduler="fifo").replace("[search]", f"[search]\nvalidation = {validation!r}"
                                                            .replace("'", '"')))
    assert main(["tune", str(spec), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"search.validation: {expected}" in err, err


def test_trials_train_without_the_validation_split_they_are_scored_on(tmp_path):
    """The definition: a trial trains on the training split less a held-out fraction, drawn by the search's seed,
    and is tested on that fraction; the test split is not touched. validation = 0: the usual splits."""
    import dataclasses

    from dpcluster.sweeps.context import JobContext
    from dpcluster.sweeps.layout import SweepLayout
    from dpcluster.tune.objectives import scored_inputs
    from dpcluster.tune.spec import SearchSpec

    spec = tmp_path / "search.toml"
    spec.write_text(SEARCH.format(scheduler="fifo").replace('method = "distilled"', 'method = "imp"')
                    .replace('kind = "distilled_accuracy"', 'kind = "real_accuracy"'))
    search = SearchSpec.load(spec)
    assert search.validation == 0.1  # the default
    context = JobContext(SweepLayout(tmp_path), torch.device("cpu"))
    whole = context.inputs(search.base).data
    scored = scored_inputs(search.base, search, context).data
    rows = lambda split: {tuple(x.flatten().tolist()) + (int(y),) for x, y in zip(split.x, split.y)}  # noqa: E731
    train, held, everything = rows(scored.train), rows(scored.test), rows(whole.train)
    assert len(scored.test) == round(0.1 * len(whole.train))
    assert len(scored.train) + len(scored.test) == len(whole.train)
    assert not train & held and train | held == everything and not held & rows(whole.test)
    again = scored_inputs(search.base, dataclasses.replace(search, seed=1), context).data
    assert rows(again.test) != held  # another seed, another draw
    assert scored_inputs(search.base, dataclasses.replace(search, validation=0), context).data is whole


def test_a_dataset_split_is_held_out_as_its_tensors_are():
    from dpcluster.data.base import TensorSet, TensorSetDataset, labels_of, split_off

    tensors = TensorSet(torch.arange(20.0).view(20, 1, 1, 1), torch.arange(20))
    rest, held = split_off(tensors, 0.25, seed=3)
    as_dataset = split_off(TensorSetDataset(tensors), 0.25, seed=3)
    assert labels_of(as_dataset[0]).tolist() == rest.y.tolist() and labels_of(as_dataset[1]).tolist() == held.y.tolist()
    assert len(held) == 5 and sorted(rest.y.tolist() + held.y.tolist()) == list(range(20))
    assert int(as_dataset[1][0][1]) == held.y[0]  # the Dataset's items are the same examples


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
    assert {r["scored_on"] for r in rows} == {"validation"}
    assert last[0.05]["accuracy"] > last[0.00001]["accuracy"] + 0.2, last
    best = ExperimentSpec.load(out / "best.toml")
    assert best.distilled_training.lr == 0.05
    # The best configuration runs unchanged.
    run_out = tmp_path / "run"
    assert main(["run", "--config", str(out / "best.toml"), "--methods", "distilled", "--seeds", "0",
                 "--rounds", "1", "--epochs", "1", "--out", str(run_out), "--device", "cpu"]) == 0
    assert main(["sweep", str(out / "best_sweep.toml"), "--out", str(tmp_path / "sweep"), "--dry-run"]) == 0


def test_a_folder_resumes_only_the_search_it_began(tmp_path, capsys):
    spec = tmp_path / "search.toml"
    spec.write_text(SEARCH.format(scheduler="fifo").replace("samples = 2", "samples = 1")
                    .replace("epochs = 40", "epochs = 4"))
    out = tmp_path / "out"
    assert main(["tune", str(spec), "--out", str(out), "--device", "cpu"]) == 0
    from dpcluster.tune.spec import SearchSpec

    assert SearchSpec.load(out / "search.toml") == SearchSpec.load(spec)  # the spec it began with, kept
    spec.write_text(spec.read_text().replace("samples = 1", "samples = 3"))
    capsys.readouterr()
    assert main(["tune", str(spec), "--out", str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "holds a search begun with another spec (search differ" in err, err


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


def test_time_to_mask_picks_the_faster_inner_loop_that_reaches_the_accuracy(tmp_path, capsys):
    spec = tmp_path / "search.toml"
    spec.write_text(TIME_TO_MASK.format(accuracy=0.5, epochs=[10, 300]))
    out = tmp_path / "out"
    assert main(["tune", str(spec), "--out", str(out)]) == 0
    rows = _rows(out)
    for row in rows:  # each round's subnetwork, validated on real data: its sparsity is that of r rounds of 20%
        assert row["sparsity"] == pytest.approx(1 - 0.8 ** row["round"], abs=0.01), row
        assert row["final"] == (row["round"] == 2)
        reached = row["accuracy"] >= 0.5
        assert row["time_to_mask"] == (row["time_to_mask_seconds"] if reached else float("inf")), row
        assert row["time_to_mask_seconds"] > row["mask_search_seconds"] > 0
    final = {r["config/distilled_training.epochs"]: r for r in rows if r["final"]}
    assert final[10]["time_to_mask"] < final[300]["time_to_mask"] < float("inf"), final
    # The search's inner loop: 30 times the epochs, more training examples seen to find the mask.
    assert final[300]["time_to_mask_examples"] > final[10]["time_to_mask_examples"]
    assert ExperimentSpec.load(out / "best.toml").distilled_training.epochs == 10
    # An accuracy no mask reaches: every time is infinite, and there is no best configuration.
    spec.write_text(TIME_TO_MASK.format(accuracy=1.01, epochs=[10]))
    capsys.readouterr()
    assert main(["tune", str(spec), "--out", str(tmp_path / "unreached")]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("dpcluster: error: no trial") and "none reached the accuracy asked for" in last, last
    assert not (tmp_path / "unreached" / "best.toml").exists()
    assert [r["time_to_mask"] for r in _rows(tmp_path / "unreached")] == [float("inf")] * 2


def test_pruned_accuracy_scores_the_subnetwork_after_the_rounds(tmp_path):
    spec = tmp_path / "search.toml"
    spec.write_text(TIME_TO_MASK.format(accuracy=0, epochs=[10])
                    .replace('kind = "time_to_mask"\naccuracy = 0', 'kind = "pruned_accuracy"')
                    .replace("[space]", '[space]\n"pruning.rate" = { grid = [0.2, 0.9] }')
                    .replace('method = "distilled"', 'method = "random"')
                    .replace("[base.distilled]\nimages_per_class = 5\n[base.distilled.dm]\niterations = 20\n", ""))
    out = tmp_path / "out"
    assert main(["tune", str(spec), "--out", str(out)]) == 0
    rows = _rows(out)
    for row in rows:
        rate = row["config/pruning.rate"]
        assert row["sparsity"] == pytest.approx(1 - (1 - rate) ** row["round"], abs=0.01), row
    final = {r["config/pruning.rate"]: r for r in rows if r["final"]}
    assert set(final) == {0.2, 0.9} and all(r["round"] == 2 for r in final.values())
    # Two rounds of 90% leave 1% of the weights: the 20% schedule's subnetwork (64% left) is clearly better.
    assert final[0.2]["accuracy"] > final[0.9]["accuracy"] + 0.2, final
    assert ExperimentSpec.load(out / "best.toml").pruning.rate == 0.2


def test_optuna_searches_and_its_absence_is_one_line(tmp_path, capsys, monkeypatch):
    spec = tmp_path / "search.toml"
    spec.write_text(SEARCH.format(scheduler="fifo").replace("samples = 2", 'samples = 3\nalgorithm = "optuna"')
                    .replace("{ grid = [0.00001, 0.05] }", "{ loguniform = [0.001, 0.1] }"))
    pytest.importorskip("optuna")
    out = tmp_path / "out"
    assert main(["tune", str(spec), "--out", str(out), "--device", "cpu"]) == 0
    lrs = {r["config/distilled_training.lr"] for r in _rows(out)}
    assert len(lrs) == 3 and all(0.001 <= lr <= 0.1 for lr in lrs), lrs
    assert ExperimentSpec.load(out / "best.toml").distilled_training.lr in lrs
    monkeypatch.setitem(sys.modules, "optuna", None)  # as if the extra were not installed
    capsys.readouterr()
    assert main(["tune", str(spec), "--out", str(tmp_path / "none"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'dpcluster[optuna]'" in err, err


def test_real_accuracy_reports_each_real_training_as_it_goes(tmp_path):
    spec = tmp_path / "search.toml"
    spec.write_text(SEARCH.format(scheduler="fifo").replace('kind = "distilled_accuracy"', 'kind = "real_accuracy"')
                    .replace('"distilled_training.lr"', '"training.lr"').replace("samples = 2", "samples = 1")
                    .replace("[base.distilled_training]\nepochs = 40", "[base.training]\nepochs = 4"))
    out = tmp_path / "out"
    assert main(["tune", str(spec), "--out", str(out), "--device", "cpu"]) == 0
    rows = _rows(out)
    epochs = {lr: [r["epoch"] for r in rows if r["config/training.lr"] == lr] for lr in (0.00001, 0.05)}
    assert epochs == {0.00001: [1, 2, 3, 4], 0.05: [1, 2, 3, 4]}, epochs
    last = {r["config/training.lr"]: r for r in rows if r["final"]}
    assert last[0.05]["accuracy"] > last[0.00001]["accuracy"] + 0.2, last
    # Real-data training needs no distilled set: the distilled method's set was never made.
    from dpcluster.sweeps.layout import SweepLayout

    assert not any(SweepLayout(out).distilled_cache.glob("**/*"))


def test_a_process_reads_each_distilled_set_once(tmp_path, monkeypatch):
    import dpcluster.distilled as distilled
    from dpcluster.sweeps.context import JobContext
    from dpcluster.sweeps.layout import SweepLayout

    made = []
    real = distilled.obtain_distilled_set
    monkeypatch.setattr(distilled, "obtain_distilled_set", lambda *a, **k: made.append(1) or real(*a, **k))
    spec = ExperimentSpec.from_dict({"method": "distilled", "model": {"width": 8},
                                     "distilled": {"images_per_class": 2, "dm": {"iterations": 2}}})
    context = JobContext(SweepLayout(tmp_path), torch.device("cpu"))
    first = context.inputs(spec)
    # Trials with other settings of the same set (another lr, another seed) reuse it.
    again = context.inputs(spec.replace(seed=3, distilled_training=spec.distilled_training.replace(lr=0.1)))
    assert len(made) == 1 and again.distilled is first.distilled
    context.inputs(spec.replace(distilled=spec.distilled.replace(images_per_class=3)))
    assert len(made) == 2
