"""The command line: user mistakes are one line and exit code 2, with nothing written."""

import pytest

from dpcluster.cli.main import main
from dpcluster.results import read_records
from dpcluster.results.levels import level_records, read_levels
from dpcluster.sweeps.spec import SweepSpec
from dpcluster.specs import ExperimentSpec, ModelSpec, TrainingSpec


def _fails_cleanly(capsys, out, argv, *expected):
    code = main(["run", "--out", str(out), "--device", "cpu", *argv])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("dpcluster: error:") and err.count("\n") == 1, err
    for text in expected:
        assert text in err
    assert not out.exists(), "a failed run must leave nothing behind"


def test_unknown_model(capsys, tmp_path):
    _fails_cleanly(capsys, tmp_path / "out", ["--model", "vgg99"], "--model", "vgg99")


def test_missing_data_root_names_the_expected_file(capsys, tmp_path):
    _fails_cleanly(capsys, tmp_path / "out", ["--data", "cifar10", "--data-root", str(tmp_path / "nowhere")],
                   str(tmp_path / "nowhere" / "cifar-10-batches-py"))


def test_data_set_that_needs_a_root(capsys, tmp_path):
    _fails_cleanly(capsys, tmp_path / "out", ["--data", "cifar100"], "root")


@pytest.mark.parametrize("value", ["1.0", "-0.1", "1.5", "0"])
def test_sparsity_outside_zero_one(capsys, tmp_path, value):
    _fails_cleanly(capsys, tmp_path / "out", ["--target-sparsity", value], "--target-sparsity", "(0, 1)")


def test_unreadable_spec(capsys, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[training]\nlr = 'fast'\n")
    _fails_cleanly(capsys, tmp_path / "out", ["--config", str(bad)], "training.lr", str(bad))
    _fails_cleanly(capsys, tmp_path / "out", ["--config", str(tmp_path / "missing.toml")], "cannot read spec")


def test_bad_method_seed_device_and_ignored_layer(capsys, tmp_path):
    _fails_cleanly(capsys, tmp_path / "out", ["--methods", "imp,magic"], "magic")
    _fails_cleanly(capsys, tmp_path / "out", ["--seeds", "one"], "--seeds")
    _fails_cleanly(capsys, tmp_path / "out", ["--device", "tpu"], "--device")
    _fails_cleanly(capsys, tmp_path / "out", ["--methods", "distilled", "--distilled", str(tmp_path / "nowhere"),
                                              "--distilled-format", "mtt"], "does not exist")
    spec = tmp_path / "spec.toml"
    spec.write_text("[pruning]\nignore = ['features.99']\n")
    _fails_cleanly(capsys, tmp_path / "out", ["--config", str(spec)], "features.99")


def test_a_small_run_writes_results_and_prints_the_table(capsys, tmp_path):
    spec = ExperimentSpec(model=ModelSpec(width=16), training=TrainingSpec(epochs=2))
    config = tmp_path / "spec.toml"
    spec.save(config)
    out = tmp_path / "out"
    code = main(["run", "--config", str(config), "--methods", "dense,imp,random", "--seeds", "0,1",
                 "--rounds", "2", "--out", str(out), "--device", "cpu"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "Test accuracy (%) by sparsity" in printed and "36.0%" in printed
    # A run is a sweep on this machine: the same folder, the same results data set.
    sweep = SweepSpec.load(out / "sweep.toml")
    assert sweep.methods == ("dense", "imp", "random") and sweep.seeds == (0, 1) and not sweep.sparsities
    searches = sorted(p.name for p in (out / "masks").iterdir() if (p / "rounds.parquet").exists())
    assert len(searches) == 4 and all(p.startswith(("imp-s", "random-s")) for p in searches)
    # The dense network has no search, but keeps its initial weights and trained network in a search's place.
    for dense in (p for p in (out / "masks").iterdir() if p.name.startswith("dense-s")):
        assert sorted(f.name for f in dense.rglob("*.pt")) == ["init.pt", "round-000.pt"]
    for search in (p for p in (out / "masks").iterdir() if p.name in searches):
        records = read_records(search / "rounds.parquet")
        saved = ExperimentSpec.load(search / "spec.toml")
        assert all(r.experiment_id == saved.experiment_id for r in records)
        assert search.name == saved.name
    levels = level_records(read_levels(out / "results"))
    assert sorted((r.method, r.seed, r.round) for r in levels) == sorted(
        [("dense", s, 0) for s in (0, 1)] + [(m, s, r) for m in ("imp", "random") for s in (0, 1) for r in (1, 2)])
    assert all(r.test_accuracy is not None for r in levels)
    # Running it again finds everything done and prints the same table.
    assert main(["run", "--config", str(config), "--methods", "dense,imp,random", "--seeds", "0,1",
                 "--rounds", "2", "--out", str(out), "--device", "cpu"]) == 0
    assert "Test accuracy (%) by sparsity" in capsys.readouterr().out


def test_the_default_run_shows_tickets_beating_random_where_sparsity_bites(capsys, tmp_path):
    # The default network and training, one seed, to 95.6% sparsity: the lottery-ticket effect in small.
    out = tmp_path / "out"
    code = main(["run", "--methods", "imp,random", "--seeds", "0", "--rounds", "14", "--out", str(out),
                 "--device", "cpu"])
    assert code == 0
    sparsest = {}
    for record in sorted(level_records(read_levels(out / "results")), key=lambda r: r.round):
        sparsest[record.method] = record
    assert sparsest["imp"].sparsity == sparsest["random"].sparsity > 0.95
    assert sparsest["imp"].test_accuracy > 0.9
    assert sparsest["imp"].test_accuracy - sparsest["random"].test_accuracy > 0.10, sparsest


def test_accuracy_plot_from_a_run(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    spec = ExperimentSpec(model=ModelSpec(width=8), training=TrainingSpec(epochs=1))
    config = tmp_path / "spec.toml"
    spec.save(config)
    out = tmp_path / "out"
    assert main(["run", "--config", str(config), "--methods", "dense,random", "--rounds", "2", "--out", str(out),
                 "--device", "cpu"]) == 0
    script = Path(__file__).resolve().parents[1] / "analysis" / "accuracy_vs_sparsity.py"
    png = tmp_path / "plot.png"
    done = subprocess.run([sys.executable, str(script), str(out), "--out", str(png)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    empty = subprocess.run([sys.executable, str(script), str(tmp_path / "none")], capture_output=True, text=True)
    assert empty.returncode == 2 and "no results" in empty.stderr


def test_distill_makes_caches_and_evaluates_a_set(capsys, tmp_path):
    from dpcluster.distilled import DistilledSet

    spec = ExperimentSpec(model=ModelSpec(width=8), distilled_training=TrainingSpec(epochs=3, batch_size=256,
                                                                                     augmentation="auto"))
    config = tmp_path / "spec.toml"
    spec.save(config)
    out = tmp_path / "out"
    argv = ["distill", "--config", str(config), "--method", "dm", "--ipc", "2", "--iterations", "4",
            "--checkpoint-every", "2", "--eval-every", "2", "--out", str(out), "--device", "cpu"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "iteration 2: test accuracy" in printed and "Distilled set:" in printed
    assert "random real subsets" in printed
    (folder,) = (out / "distilled").iterdir()
    # The final comparison is an evaluation like evaluate-set's: one network on the set, one on a random subset.
    from dpcluster.results.set_evaluations import read_evaluations

    rows = read_evaluations(out / "set_evaluations").to_pylist()
    assert sorted(row["kind"] for row in rows) == ["distilled set", "random real subset"]
    assert all(row["set"] == str(folder) and row["images_per_class"] == 2 and row["epochs"] == 3 for row in rows)
    distilled = DistilledSet.load(folder)
    assert distilled.method == "dm" and distilled.images_per_class == 2 and len(distilled) == 20
    assert not list((out / "distilled").glob(".*state*")), "the checkpoint is removed once the set is stored"

    assert main(argv) == 0
    assert "Cached set:" in capsys.readouterr().out


def test_distill_rejects_bad_budgets(capsys, tmp_path):
    out = tmp_path / "out"
    for argv, text in ((["--ipc", "0"], "--ipc"), (["--iterations", "-1"], "--iterations"),
                       (["--eval-every", "-2"], "--eval-every")):
        assert main(["distill", "--out", str(out), "--device", "cpu", *argv]) == 2
        err = capsys.readouterr().err
        assert text in err and err.count("\n") == 1
    assert not out.exists()


def test_run_with_distill_mtt_distils_once_and_prunes_with_the_set(capsys, tmp_path):
    from dpcluster.distilled import DistilledSet
    from dpcluster.specs.experiment import DistilledSpec, MTTSpec, PruningSpec

    mtt = MTTSpec(experts=1, trajectory_epochs=2, expert_epochs=1, max_start_epoch=1, iterations=2, syn_steps=2)
    spec = ExperimentSpec(model=ModelSpec(width=8), training=TrainingSpec(epochs=1), pruning=PruningSpec(rounds=1),
                          distilled=DistilledSpec(images_per_class=2, mtt=mtt),
                          distilled_training=TrainingSpec(epochs=2, augmentation="auto"))
    config = tmp_path / "spec.toml"
    spec.save(config)
    out = tmp_path / "out"
    argv = ["run", "--config", str(config), "--methods", "distilled", "--seeds", "0,1", "--distill", "mtt",
            "--out", str(out), "--device", "cpu"]
    assert main(argv) == 0
    sets = [p for p in (out / "distilled").iterdir() if p.is_dir()]
    assert len(sets) == 1 and sets[0].name.startswith("mtt-digits-ipc2-")
    distilled = DistilledSet.load(sets[0])
    assert distilled.method == "mtt" and distilled.learned_lr is not None
    assert distilled.extra["augmentation"] == "dsa_noflip"  # no flips on digits
    assert list((out / "distilled").glob("experts-*.pt")), "expert trajectories are cached beside the sets"
    # Both seeds pruned with the one set, and a second run reuses everything.
    runs = [p for p in (out / "masks").iterdir() if p.name.startswith("distilled-")]
    assert len(runs) == 2
    capsys.readouterr()
    assert main(argv) == 0
    assert len([p for p in (out / "distilled").iterdir() if p.is_dir()]) == 1


def test_the_expert_progress_bar_ends_at_its_total():
    from dpcluster.cli.distill import expert_bar

    assert expert_bar(1, 5, 0, 10) == (50, 0, "expert 1/5")
    assert expert_bar(5, 5, 10, 10) == (50, 50, "expert 5/5")  # the last epoch of the last expert: 50/50


def test_a_run_with_analyses_and_its_report(capsys, tmp_path):
    _fails_cleanly(capsys, tmp_path / "bad", ["--analyses", "stability,sharpnes"], "--analyses", "sharpnes")
    spec = ExperimentSpec(model=ModelSpec(width=8), training=TrainingSpec(epochs=1))
    config = tmp_path / "spec.toml"
    spec.save(config)
    out = tmp_path / "out"
    assert main(["run", "--config", str(config), "--methods", "imp,random", "--seeds", "0", "--rounds", "2",
                 "--analyses", "kept_weights", "--out", str(out), "--device", "cpu"]) == 0
    kept = list((out / "analyses" / "kept_weights").rglob("*.parquet"))
    assert len(kept) == 4  # two methods, two levels
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    assert (out / "report" / "kept_weights.png").exists() and (out / "report" / "report.html").exists()
    assert not (out / "report" / "interpolation_curves.png").exists()  # no stability asked for, no figure


@pytest.mark.parametrize("argv, expected", [
    (["--backend", "slurm", "--stage", "nosuch:gpus=1"], "KIND one of"),
    (["--backend", "slurm", "--stage", "validate:gpu=1"], "KEY one of"),
    (["--backend", "slurm", "--stage", "validate:time_min=long"], "time_min must be a int"),
    (["--backend", "slurm", "--sbatch", "=x"], "expected KEY=VALUE"),
    (["--backend", "slurm", "--requeues", "-1"], "--requeues must be >= 0"),
    (["--wait"], "--wait: only for --backend slurm"),
    (["--backend", "ray", "--setup", "module load cuda"], "--setup: only for --backend slurm"),
])
def test_sweep_option_mistakes_are_one_line(capsys, tmp_path, argv, expected):
    spec = tmp_path / "sweep.toml"
    SweepSpec.from_dict({"name": "x", "methods": ["dense"]}).save(spec)
    out = tmp_path / "out"
    assert main(["sweep", str(spec), "--out", str(out), "--dry-run", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dpcluster: error:") and err.count("\n") == 1 and expected in err, err
    assert not out.exists()


def test_a_local_dry_run_lists_the_jobs_with_what_they_wait_on(capsys, tmp_path):
    spec = tmp_path / "sweep.toml"
    SweepSpec.from_dict({"name": "x", "methods": ["dense", "random"], "sparsities": [0.2]}).save(spec)
    out = tmp_path / "out"
    assert main(["sweep", str(spec), "--out", str(out), "--dry-run"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("would run")]
    assert [line.split()[2] for line in lines] == [
        "mask-random-s0-digits-convnet", "validate-dense-s0-digits-convnet-r0", "validate-random-s0-digits-convnet-r1",
        "aggregate"]
    mask_id = lines[0].split("(")[1].split(")")[0]
    assert lines[2].endswith(f"after {mask_id}") and "after" not in lines[1]
    assert not out.exists()
