"""Sweep specs and their job graphs (pure: no jobs run here)."""

import tomllib
from collections import Counter
from pathlib import Path

import pytest

from dpcluster.errors import SpecError
from dpcluster.sweeps.graph import expand
from dpcluster.sweeps.spec import SweepSpec

JOBS = Path(__file__).resolve().parents[1] / "jobs"


def _sweep(**fields):
    return SweepSpec.from_dict({"name": "t", "seeds": [0, 1], "sparsities": [0.5, 0.8],
                                "methods": ["dense", "imp", "distilled", "random"], **fields})


def test_graph_shape_and_dependency_order():
    jobs = expand(_sweep(images_per_class=[10, 50]))
    kinds = Counter(j.kind for j in jobs)
    # distill: one per set size; mask: imp, random (2 seeds) + distilled (2 sizes x 2 seeds);
    # validate: 2 levels per mask search + one dense validation per seed.
    assert kinds == {"distill": 2, "mask": 8, "validate": 2 * 8 + 2, "aggregate": 1}
    seen = set()
    for job in jobs:
        assert all(dep in seen for dep in job.deps), f"{job.name} runs before a dependency"
        seen.add(job.id)
    assert len(seen) == len(jobs), "job ids are unique"
    assert jobs[-1].kind == "aggregate" and set(jobs[-1].deps) == {j.id for j in jobs[:-1]}
    validated = sorted({j.round for j in jobs if j.kind == "validate" and j.experiment.method != "dense"})
    assert validated == [4, 8]  # the first rounds at or past 50% and 80% sparsity (1 - 0.8**r)


def test_distilled_sets_are_shared_across_seeds_and_methods():
    jobs = expand(_sweep(methods=["distilled", "hybrid"]))
    (distill,) = [j for j in jobs if j.kind == "distill"]
    masks = [j for j in jobs if j.kind == "mask"]
    assert len(masks) == 4 and all(m.deps == (distill.id,) for m in masks)


def test_ids_are_stable_and_content_based():
    first, again = expand(_sweep()), expand(_sweep())
    assert [j.id for j in first] == [j.id for j in again]
    more_epochs = expand(_sweep(base={"training": {"epochs": 3}}))
    assert {j.id for j in first}.isdisjoint(j.id for j in more_epochs if j.kind != "distill")


def test_every_shipped_spec_loads_and_expands():
    from dpcluster.specs import ExperimentSpec

    paths = sorted(JOBS.glob("**/*.toml"))
    assert len(paths) >= 6
    for path in paths:
        if "[space]" in path.read_text():  # a search spec (dpcluster tune)
            from dpcluster.tune.spec import SearchSpec

            search = SearchSpec.load(path)
            assert search.space and search.metric, path
            assert SearchSpec.from_dict(tomllib.loads(search.to_toml())) == search, path  # it round-trips
        elif "datasets" in tomllib.loads(path.read_text()):  # a sweep spec (its top-level list of data sets)
            sweep = SweepSpec.load(path)
            jobs = expand(sweep)
            assert jobs[-1].kind == "aggregate" and any(j.kind == "validate" for j in jobs), path
            for job in jobs:
                if job.experiment is not None:
                    spec = job.experiment
                    assert ExperimentSpec.from_toml(spec.to_toml()) == spec, path  # each experiment round-trips
        else:
            ExperimentSpec.load(path)


def test_papers_cifar_sweeps_carry_the_papers_settings():
    alexnet = SweepSpec.load(JOBS / "alexnet_cifar10.toml")
    experiments = [j.experiment for j in expand(alexnet) if j.kind == "mask"]
    assert {e.seed for e in experiments} == {0, 1, 2, 3, 4}
    by_size = {e.distilled.images_per_class: e for e in experiments if e.method == "distilled"}
    assert (by_size[50].distilled_training.lr, by_size[50].distilled_training.epochs) == (0.01, 1000)
    assert (by_size[10].distilled_training.lr, by_size[10].distilled_training.epochs) == (0.007, 3000)
    assert by_size[50].distilled.set_path == "/data/mtt/cifar10/ipc50"
    assert by_size[50].distilled_training.lr_milestones == (500,)  # MTT's evaluation: x0.1 at half
    for e in experiments:
        assert (e.distilled.source, e.distilled.format, e.distilled.zca, e.data.zca) == ("file", "mtt", True, True)
        t = e.training
        assert (t.optimizer, t.lr, t.weight_decay, t.gamma, t.milestones, t.batch_size, t.epochs, t.augmentation) \
            == ("adam", 8e-4, 8e-4, 0.15, (50, 65, 80), 512, 60, "none")
        assert e.pruning.rewind == "1ep" and e.pruning.num_rounds == 30
    # Figure 2: stability at five levels of every pruning method and seed, and of the dense network.
    stability = [j for j in expand(alexnet) if j.kind == "stability"]
    assert sorted({j.round for j in stability}) == [0, 4, 8, 11, 14, 18]
    pruned = [j for j in stability if j.round]
    assert len(pruned) == 5 * 5 * 4  # levels x seeds x (imp, distilled at 50 and 10 per class, random)
    assert len([j for j in expand(alexnet) if j.kind == "pair"]) == len(stability)
    cifar100 = [j.experiment for j in expand(SweepSpec.load(JOBS / "convnet_cifar100.toml")) if j.kind == "mask"]
    sizes = {e.distilled.images_per_class: e.distilled_training for e in cifar100 if e.method == "distilled"}
    assert {k: (t.lr, t.epochs) for k, t in sizes.items()} == {50: (0.01, 1250), 10: (0.09, 1250)}
    assert all(e.training.epochs == 120 and e.model.width == 128 for e in cifar100)
    resnet = [j.experiment for j in expand(SweepSpec.load(JOBS / "resnet18_cifar10.toml")) if j.kind == "mask"]
    assert {e.pruning.rewind for e in resnet} == {"0ep"}  # the second paper rewinds both methods to init
    # The second paper's experiments carry its analyses, at every level.
    for name in ("resnet18_cifar10", "resnet10_imagenet10"):
        sweep = SweepSpec.load(JOBS / f"{name}.toml")
        assert set(sweep.analyses) == {"stability", "landscape", "sharpness"}, name
        kinds = Counter(job.kind for job in expand(sweep))
        assert kinds["stability"] == kinds["landscape"] == kinds["sharpness"] == kinds["validate"], name


def test_cifar_search_specs_start_from_the_papers_sweep():
    """Each CIFAR search's base is an experiment of the Figure 1 sweep, named by method and set size, so its best
    configuration goes back into that sweep unchanged."""
    from dpcluster.sweeps.graph import experiments
    from dpcluster.tune.spec import SearchSpec

    sweep = {(e.method, e.distilled.images_per_class if e.uses_distilled_set else None): e
             for e in experiments(SweepSpec.load(JOBS / "alexnet_cifar10.toml")) if e.seed == 0}
    for name, chosen in (("distilled", ("distilled", 50)), ("real", ("dense", None))):
        assert SearchSpec.load(JOBS / f"tune_alexnet_cifar10_{name}.toml").base == sweep[chosen], name
    time_to_mask = SearchSpec.load(JOBS / "tune_alexnet_cifar10_time_to_mask.toml").base
    paper = sweep[("distilled", 10)]
    assert time_to_mask == paper.replace(pruning=paper.pruning.replace(rounds=10))
    assert (paper.distilled_training.lr, paper.distilled_training.epochs) == (0.007, 3000)


def test_analyses_measure_the_levels_they_are_asked_for_and_keep_the_networks_asked_for():
    sweep = _sweep(methods=["dense", "imp"], sparsities=[0.2, 0.5, 0.8], analyses=["stability", "kept_weights"],
                   analysis={"sparsities": [0.5]}, base={"pruning": {"target_sparsity": 0.85}})
    jobs = expand(sweep)

    def levels(kind):
        return sorted((j.experiment.method, j.experiment.seed, j.round) for j in jobs if j.kind == kind)

    # The sweep validates rounds 1, 4 and 8 (20%, 59%, 83%); 0.5 is first reached at round 4.
    assert levels("validate") == [("dense", s, 0) for s in (0, 1)] + [("imp", s, r) for s in (0, 1) for r in (1, 4, 8)]
    measured = [("dense", s, 0) for s in (0, 1)] + [("imp", s, 4) for s in (0, 1)]
    assert levels("pair") == levels("stability") == levels("kept_weights") == measured
    # Every validation keeps its trained network (for export), and every search the levels it trains itself; with
    # keep_trained = false only the validations whose level is measured do (copy a of the pair).
    def kept(jobs):
        return sorted((j.experiment.method, j.experiment.seed, j.round) for j in jobs
                      if j.kind == "validate" and j.settings)

    assert kept(jobs) == levels("validate")
    assert {j.settings for j in jobs if j.kind == "mask"} == {(1, 4, 8)}
    lean = expand(sweep.replace(keep_trained=False))
    assert kept(lean) == measured and {j.settings for j in lean if j.kind == "mask"} == {()}
    assert {j.settings for j in lean if j.kind == "pair"} == {False}
    # Every level by default.
    assert len([j for j in expand(sweep.replace(analysis=sweep.analysis.replace(sparsities=())))
                if j.kind == "stability"]) == 2 + 2 * 3


def test_an_analysis_level_the_sweep_does_not_validate_is_refused_naming_it():
    with pytest.raises(SpecError) as error:
        _sweep(sparsities=[0.5, 0.8], analyses=["stability"], analysis={"sparsities": [0.8, 0.45]})
    assert error.value.key == "analysis.sparsities[1]"
    assert "round 3" in error.value.message and "add 0.45 to sparsities" in error.value.message
    with pytest.raises(SpecError) as error:
        _sweep(sparsities=[0.5], analysis={"sparsities": [0.99]}, base={"pruning": {"target_sparsity": 0.9}})
    assert error.value.key == "analysis.sparsities[0]" and "stops after" in error.value.message
    with pytest.raises(SpecError) as error:
        _sweep(analysis={"sparsities": [1.0]})
    assert error.value.key == "analysis.sparsities[0]"


def test_levels_beyond_the_mask_search_are_rejected_naming_the_level():
    with pytest.raises(SpecError) as error:
        _sweep(sparsities=[0.5, 0.95], base={"pruning": {"target_sparsity": 0.9}})
    assert error.value.key == "sparsities[1]" and "round 14" in error.value.message


def test_base_data_settings_are_applied_and_per_data_tables_override_them():
    sweep = _sweep(datasets=["cifar10", "cifar100"], base={"data": {"root": "/data/cifar", "zca": True}},
                   data={"cifar100": {"root": "/other", "workers": 1}})
    assert (sweep.data_spec("cifar10").root, sweep.data_spec("cifar10").zca) == ("/data/cifar", True)
    assert (sweep.data_spec("cifar100").root, sweep.data_spec("cifar100").zca) == ("/other", True)
    assert sweep.data_spec("cifar100").workers == 1
    masks = [j.experiment for j in expand(sweep) if j.kind == "mask"]
    assert {e.data.zca for e in masks} == {True}


def test_per_size_training_and_path_template():
    sweep = _sweep(images_per_class=[10, 50], sets={"50": {"lr": 0.02, "epochs": 7}},
                   base={"distilled": {"source": "file", "path": "/sets/ipc{ipc}"}})
    distilled = {j.experiment.distilled.images_per_class: j.experiment for j in expand(sweep)
                 if j.kind == "mask" and j.experiment.method == "distilled"}
    assert (distilled[50].distilled_training.lr, distilled[50].distilled_training.epochs) == (0.02, 7)
    assert distilled[10].distilled_training == sweep.base.distilled_training
    assert distilled[10].distilled.set_path == "/sets/ipc10"
    with pytest.raises(SpecError) as error:
        _sweep(images_per_class=[10], sets={"50": {"lr": 0.02}})
    assert error.value.key == "sets.50"
    with pytest.raises(SpecError) as error:
        _sweep(images_per_class=[10], sets={"10": {"lr": -1.0}})
    assert error.value.key == "sets.10.lr"


def test_job_ids_survive_moving_the_data():
    here = expand(_sweep(datasets=["cifar10"], data={"cifar10": {"root": "/a", "workers": 2}}))
    moved = expand(_sweep(datasets=["cifar10"], data={"cifar10": {"root": "/b", "workers": 8,
                                                                  "placement": "loader"}}))
    assert [j.id for j in here] == [j.id for j in moved]


@pytest.mark.parametrize("fields, key", [
    ({"methods": ["imp", "magic"]}, "methods[1]"),
    ({"sparsities": [1.0]}, "sparsities[0]"),
    ({"datasets": []}, "datasets"),
    ({"data": {"cifar10": {"root": "/x"}}}, "data.cifar10"),
    ({"data": {"digits": {"rooot": "/x"}}}, "data.digits.rooot"),
    ({"base": {"training": {"lr": -1}}}, "base.training.lr"),
    ({"name": "a b"}, "name"),
])
def test_invalid_sweep_names_the_key(fields, key):
    with pytest.raises(SpecError) as error:
        _sweep(**fields)
    assert error.value.key == key


def test_round_trip_and_per_data_settings(tmp_path):
    sweep = _sweep(datasets=["digits", "cifar10"], data={"cifar10": {"root": "/data/cifar"}})
    path = tmp_path / "sweep.toml"
    sweep.save(path)
    assert SweepSpec.load(path) == sweep
    assert sweep.data_spec("cifar10").root == "/data/cifar"
    with pytest.raises(SpecError, match="root"):
        _sweep(datasets=["cifar10"]).data_spec("cifar10")


def test_rewinds_multiply_only_the_methods_that_rewind():
    sweep = _sweep(rewinds=["0ep", "1ep"], methods=["imp", "hybrid", "distilled", "random"])
    masks = [j for j in expand(sweep) if j.kind == "mask"]
    by_method = Counter((j.experiment.method, j.experiment.pruning.rewind) for j in masks)
    assert by_method == {("imp", "0ep"): 2, ("imp", "1ep"): 2, ("hybrid", "0ep"): 2, ("hybrid", "1ep"): 2,
                         ("distilled", "0ep"): 2, ("random", "0ep"): 2}
    with pytest.raises(SpecError, match=r"rewinds\[1\]"):
        _sweep(rewinds=["0ep", "soon"])


def test_a_methods_axes_narrow_its_rewinds_and_set_sizes_alone():
    sweep = _sweep(rewinds=["0ep", "1ep"], images_per_class=[10, 50], methods=["imp", "hybrid", "distilled"],
                   axes={"hybrid": {"rewinds": ["1ep"], "images_per_class": [50]}})
    masks = Counter((j.experiment.method, j.experiment.pruning.rewind, j.experiment.distilled.images_per_class)
                    for j in expand(sweep) if j.kind == "mask")
    assert masks == {("imp", "0ep", 10): 2, ("imp", "1ep", 10): 2, ("hybrid", "1ep", 50): 2,
                     ("distilled", "0ep", 10): 2, ("distilled", "0ep", 50): 2}
    # The table round-trips through a file like the rest of the spec.
    assert SweepSpec.from_dict(sweep.to_dict()) == sweep


@pytest.mark.parametrize("axes, key", [
    ({"hybrid": {"rewinds": ["2ep"]}}, r"axes\.hybrid\.rewinds\[0\]"),
    ({"hybrid": {"images_per_class": [20]}}, r"axes\.hybrid\.images_per_class\[0\]"),
    ({"hybrid": {"images_per_class": []}}, r"axes\.hybrid\.images_per_class"),
    ({"random": {"rewinds": ["0ep"]}}, r"axes\.random"),
    ({"hybrid": {"epochs": 3}}, r"axes\.hybrid"),
])
def test_a_methods_axes_must_be_a_subset_of_the_sweeps(axes, key):
    with pytest.raises(SpecError, match=key):
        _sweep(rewinds=["0ep", "1ep"], images_per_class=[10, 50], methods=["imp", "hybrid"], axes=axes)


def test_the_fashion_mnist_sweep_runs_figure_1_with_the_hybrid_at_one_setting():
    sweep = SweepSpec.load(JOBS / "fashion_mnist.toml")
    masks = Counter((j.experiment.method, j.experiment.rewind_point_used, j.experiment.set_size)
                    for j in expand(sweep) if j.kind == "mask")
    assert masks == {("imp", "0ep", 0): 2, ("imp", "1ep", 0): 2, ("distilled", None, 10): 2,
                     ("distilled", None, 50): 2, ("hybrid", "1ep", 50): 2, ("random", None, 0): 2}
    assert sweep.datasets == ("fashion_mnist",) and sweep.base.pruning.num_rounds == 13
