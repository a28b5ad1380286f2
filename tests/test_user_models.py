"""Networks of the user's: a factory from a package of theirs and torchvision's models, through every method and
analysis, checked when first built, and keyed by their architecture."""

import importlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.dataset as ds
import pytest
import torch

from dpcluster.data import load_data
from dpcluster.errors import UserError
from dpcluster.methods.engine import Inputs, check_experiment, run_experiment
from dpcluster.specs import DataSpec, ExperimentSpec, ModelSpec, PruningSpec, TrainingSpec

CPU = torch.device("cpu")
REPO = Path(__file__).resolve().parents[1]

FACTORIES = '''
from torch import nn


def mlp(input_shape, num_classes, hidden=32, batchnorm=False):
    c, h, w = input_shape
    layers = [nn.Flatten(), nn.Linear(c * h * w, hidden)]
    if batchnorm:
        layers.append(nn.BatchNorm1d(hidden))
    layers += [nn.ReLU(), nn.Linear(hidden, num_classes)]
    return nn.Sequential(*layers)


def small_cnn(input_shape, num_classes, width=8):
    return nn.Sequential(nn.Conv2d(input_shape[0], width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(width, num_classes))


def raises(input_shape, num_classes):
    raise RuntimeError("no GPU here")


def not_a_module(input_shape, num_classes):
    return "a string"


def too_few_outputs(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0] * input_shape[1] * input_shape[2], 3))


def nothing_to_prune(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.Unflatten(1, (1, -1)), nn.AdaptiveAvgPool1d(num_classes), nn.Flatten())

NOT_CALLABLE = 3
'''


@pytest.fixture
def user_package(tmp_path, monkeypatch):
    """A package of the user's, ``mynets``, importable here and in processes started from here."""
    root = tmp_path / "code"
    (root / "mynets").mkdir(parents=True)
    (root / "mynets" / "__init__.py").write_text(FACTORIES)
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    importlib.invalidate_caches()
    sys.modules.pop("mynets", None)
    from dpcluster.models.user import architecture

    architecture.cache_clear()
    yield root
    sys.modules.pop("mynets", None)
    architecture.cache_clear()


@pytest.fixture(scope="module")
def digits():
    return load_data(DataSpec())


def spec(name, method="imp", options=None, **pruning):
    return ExperimentSpec(method=method, model=ModelSpec(name=name, options=options),
                          pruning=PruningSpec(**{"rounds": 2, **pruning}), training=TrainingSpec(epochs=2))


def test_a_factory_network_is_pruned_by_imp_and_random(user_package, digits, tmp_path):
    imp = run_experiment(spec("mynets:mlp", options={"hidden": 24}), Inputs(digits), tmp_path / "imp", CPU)
    assert [round(r.sparsity, 3) for r in imp] == [0.2, 0.36]
    # Both linear layers are pruned, by the names the network gives them.
    assert {layer.name for layer in imp[0].layers} == {"1.weight", "3.weight"}
    assert imp[-1].weights_total == 64 * 24 + 24 * 10 and imp[-1].test_accuracy > 0.5
    random = run_experiment(spec("mynets:mlp", method="random", options={"hidden": 24}), Inputs(digits),
                            tmp_path / "random", CPU)
    assert random[-1].mask_hash != imp[-1].mask_hash


def test_pruning_ignore_names_the_network_s_own_modules(user_package, digits, tmp_path):
    records = run_experiment(spec("mynets:mlp", ignore=("3",)), Inputs(digits), tmp_path / "run", CPU)
    assert [layer.name for layer in records[0].layers] == ["1.weight"]
    with pytest.raises(UserError, match="pruning.ignore: 7 is not a conv or linear layer .*its layers: 1, 3"):
        check_experiment(spec("mynets:mlp", ignore=("7",)), Inputs(digits))


def test_the_id_holds_the_factory_its_options_its_parameter_shapes_and_version(user_package):
    base = spec("mynets:mlp").experiment_id
    assert spec("mynets:mlp", options={"hidden": 32}).experiment_id != base  # said, though it is the default
    assert spec("mynets:small_cnn").experiment_id != base
    bumped = ExperimentSpec(method="imp", model=ModelSpec(name="mynets:mlp", version=2),
                            pruning=PruningSpec(rounds=2), training=TrainingSpec(epochs=2))
    assert bumped.experiment_id != base
    # The factory's code changes its default width: the same spec is a new experiment.
    (user_package / "mynets" / "__init__.py").write_text(FACTORIES.replace("hidden=32", "hidden=16"))
    sys.modules.pop("mynets", None)
    importlib.invalidate_caches()
    from dpcluster.models.user import architecture

    architecture.cache_clear()
    assert spec("mynets:mlp").experiment_id != base
    # A built-in network's id is as before: no architecture is computed for it.
    assert "architecture" not in ExperimentSpec().identity_dict()["model"]


@pytest.mark.parametrize(("name", "options", "message"), [
    ("mynets:raises", None, "model mynets:raises: the factory raised RuntimeError: no GPU here"),
    ("mynets:not_a_module", None, "returned a str, not a torch nn.Module"),
    ("mynets:NOT_CALLABLE", None, "NOT_CALLABLE is not a function"),
    ("mynets:nosuch", None, "module 'mynets' has no 'nosuch'"),
    ("nosuchpackage.nets:f", None, "cannot import nosuchpackage.nets: No module named 'nosuchpackage'"),
    ("mynets:too_few_outputs", None, r"gave \(1, 3\), not one output per class \(expected \(1, 10\)\)"),
    ("mynets:mlp", {"depth": 3}, "the factory raised TypeError: .*unexpected keyword argument 'depth'"),
    ("mynets:nothing_to_prune", None, "model mynets:nothing_to_prune: no conv or linear layer to prune"),
    ("torchvision:nosuchnet", None, "torchvision has no classification model 'nosuchnet'"),
    ("torchvision:resnet18", {"weights": "DEFAULT"}, "pretrained weights are not loaded"),
])
def test_a_broken_network_is_one_line_naming_it(user_package, digits, name, options, message):
    with pytest.raises(UserError, match=message) as error:
        check_experiment(spec(name, options=options), Inputs(digits))
    assert "\n" not in str(error.value)


def test_names_and_options_are_checked_for_their_form_without_importing_anything():
    from dpcluster.errors import SpecError

    for bad in ("my nets:mlp", "mynets:", ":mlp", "torchvision:res-net", "mynets:mlp:x"):
        with pytest.raises(SpecError, match="name"):
            ModelSpec(name=bad)
    with pytest.raises(SpecError, match="only a user network .* takes options"):
        ModelSpec.from_dict({"name": "convnet", "options": {"hidden": 3}})
    with pytest.raises(SpecError, match=r"options.hidden: must be a finite number"):
        ModelSpec.from_dict({"name": "mynets:mlp", "options": {"hidden": float("inf")}})
    # Options round-trip through TOML and hash as a table.
    model = ModelSpec.from_dict({"name": "mynets:mlp", "options": {"hidden": 8, "sizes": [1, 2], "inner": {"a": True}}})
    assert ModelSpec.from_toml(model.to_toml()) == model and hash(model) == hash(ModelSpec.from_toml(model.to_toml()))
    assert model.to_dict()["options"] == {"hidden": 8, "inner": {"a": True}, "sizes": [1, 2]}


def test_a_torchvision_network_takes_the_data_s_channels(digits, tmp_path):
    records = run_experiment(spec("torchvision:resnet18", rounds=1), Inputs(digits), tmp_path / "tv", CPU)
    assert records[0].weights_total > 11_000_000 and "conv1.weight" in {layer.name for layer in records[0].layers}
    from dpcluster.models import build_model

    model = build_model(ModelSpec(name="torchvision:resnet18"), (1, 8, 8), 10)
    assert model.conv1.in_channels == 1 and model.fc.out_features == 10


def test_dpcluster_run_and_a_local_sweep_use_a_factory_of_the_user_s(user_package, tmp_path):
    config = tmp_path / "mine.toml"
    config.write_text(textwrap.dedent('''
        [model]
        name = "mynets:small_cnn"
        [model.options]
        width = 6
        [training]
        epochs = 2
        [pruning]
        rounds = 2
        [distilled.dm]
        iterations = 5
        [distilled_training]
        epochs = 3
    '''))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(user_package), str(REPO)])}
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "dpcluster", "run", "--config", str(config), "--methods",
                           "dense,imp,distilled,hybrid,random", "--seeds", "0", "--out", str(out), "--device", "cpu",
                           "--analyses", "stability,sharpness,kept_weights,landscape"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = ds.dataset(out / "results", format="parquet", partitioning="hive").to_table().to_pylist()
    assert {(r["method"], r["round"]) for r in rows} == {("dense", 0)} | {
        (method, r) for method in ("imp", "distilled", "hybrid", "random") for r in (1, 2)}
    assert {r["model"] for r in rows} == {"mynets:small_cnn"}
    for analysis in ("stability", "sharpness", "kept_weights", "landscape"):
        analysed = ds.dataset(out / "analyses" / analysis, format="parquet", partitioning="hive").to_table()
        assert analysed.num_rows > 0, analysis
    sharp = ds.dataset(out / "analyses" / "sharpness", format="parquet", partitioning="hive").to_table().to_pylist()
    assert all(r["top_eigenvalue"] > 0 for r in sharp)


def _validate_rank(rank, world, port, call):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    from dpcluster.sweeps.execute import execute

    execute(call)


def test_a_factory_network_trains_data_parallel_on_two_processes(user_package, tmp_path):
    import torch.multiprocessing as mp

    from dpcluster.results.levels import read_levels
    from dpcluster.sweeps.execute import JobCall
    from dpcluster.sweeps.graph import expand
    from dpcluster.sweeps.spec import SweepSpec
    from test_ddp import _free_port

    sweep = SweepSpec.from_dict({"name": "ddp", "methods": ["dense"], "seeds": [0], "models": ["mynets:mlp"],
                                 "base": {"model": {"name": "mynets:mlp", "options": {"batchnorm": True}},
                                          "training": {"epochs": 1, "batch_size": 64}}})
    validate = next(job for job in expand(sweep) if job.kind == "validate")
    mp.spawn(_validate_rank, args=(2, _free_port(), JobCall(validate, tmp_path, "cpu")), nprocs=2, join=True)
    rows = read_levels(tmp_path / "results").to_pylist()
    assert [(r["model"], r["world_size"]) for r in rows] == [("mynets:mlp", 2)]
    assert rows[0]["test_accuracy"] > 0.3


def _slurm_sweep_of(name: str):
    from dpcluster.sweeps.spec import SweepSpec

    return SweepSpec.from_dict({"name": "mine", "methods": ["dense", "imp"], "seeds": [0], "models": [name],
                                "base": {"model": {"name": name}, "training": {"epochs": 1, "batch_size": 128},
                                         "pruning": {"rounds": 1}}})


@pytest.mark.parametrize("travels", ["relative PYTHONPATH", "--code"])
def test_slurm_jobs_in_a_snapshot_import_the_user_s_factory(slurm_cluster, user_package, tmp_path, monkeypatch,
                                                            travels):
    from dpcluster.results.levels import read_levels
    from dpcluster.sweeps.coordinator import run_sweep
    from dpcluster.sweeps.slurm_backend import SlurmBackend

    monkeypatch.chdir(tmp_path)  # the package is not in the submitting folder: only what travels finds it
    if travels == "--code":
        monkeypatch.delenv("PYTHONPATH")
        options = {"code": (str(user_package / "mynets"),)}
    else:
        monkeypatch.setenv("PYTHONPATH", "code")  # relative to where the sweep is submitted
        options = {}
    snapshot = tmp_path / "snapshot"
    backend = SlurmBackend(tmp_path / "logs", partition="debug", time_min=10, snapshot=snapshot, **options)
    manifest = run_sweep(_slurm_sweep_of("mynets:mlp"), tmp_path / "out", backend, "cpu")
    assert all(state.state == "done" for state in manifest.jobs.values()), manifest.jobs
    rows = read_levels(tmp_path / "out" / "results").to_pylist()
    assert sorted((r["method"], r["model"]) for r in rows) == [("dense", "mynets:mlp"), ("imp", "mynets:mlp")]
    assert (snapshot / "mynets" / "__init__.py").exists() == (travels == "--code")


def test_code_that_is_not_there_is_one_line(tmp_path):
    from dpcluster.sweeps.slurm_backend import SlurmBackend

    with pytest.raises(UserError, match="--code .*nothing: no such file or folder"):
        SlurmBackend(tmp_path, code=(str(tmp_path / "nothing"),))


def test_distribution_matching_embeds_with_the_last_linear_s_input_or_a_named_module(user_package, digits):
    from dpcluster.models import build_model
    from dpcluster.models.embedding import embedder

    model = build_model(ModelSpec(name="mynets:small_cnn"), (1, 8, 8), 10)
    x = torch.randn(5, 1, 8, 8)
    # The classifier's input: the pooled features, 8 per example.
    features = model[:4](x)
    assert torch.equal(embedder(model)(x), features)
    assert torch.equal(embedder(model, "1")(x), model[:2](x).flatten(1))  # the ReLU's output, named
    with pytest.raises(UserError, match="distilled.embedding: the network has no module 'avgpool'"):
        embedder(model, "avgpool")
    # The built-ins say it themselves.
    convnet = build_model(ModelSpec(width=8, depth=2), (1, 8, 8), 10)
    assert embedder(convnet) == convnet.embed
    from dpcluster.distilled.dm import distill_dm

    made = distill_dm(digits, ModelSpec(name="mynets:small_cnn"), 2, 3, 1.0, 16, 0, CPU)
    named = distill_dm(digits, ModelSpec(name="mynets:small_cnn"), 2, 3, 1.0, 16, 0, CPU, embedding="1")
    assert made.images.shape == named.images.shape == (20, 1, 8, 8)
    assert not torch.equal(made.images, named.images)  # matched on other features


def test_trajectory_matching_distils_with_a_factory_network_and_refuses_its_batchnorm(user_package, digits,
                                                                                       tmp_path):
    from dpcluster.distilled import obtain_distilled_set
    from dpcluster.specs import DistilledSpec
    from dpcluster.specs.experiment import MTTSpec

    mtt = MTTSpec(experts=1, trajectory_epochs=2, iterations=3, syn_steps=2, expert_epochs=1, max_start_epoch=1)
    spec = DistilledSpec(source="mtt", images_per_class=2, mtt=mtt)
    made = obtain_distilled_set(spec, digits, ModelSpec(name="mynets:mlp"), tmp_path / "cache", CPU)
    assert made.images.shape == (20, 1, 8, 8) and made.method == "mtt" and made.learned_lr > 0
    with pytest.raises(UserError, match="uses BatchNorm") as error:
        obtain_distilled_set(spec, digits, ModelSpec(name="mynets:mlp", options={"batchnorm": True}),
                             tmp_path / "cache", CPU)
    assert "\n" not in str(error.value)


def test_dpcluster_sweep_runs_a_factory_network_and_a_torchvision_one(user_package, tmp_path, monkeypatch, capsys):
    from dpcluster.cli.main import main
    from dpcluster.results.levels import read_levels
    from dpcluster.sweeps.spec import SweepSpec

    sweep = SweepSpec.from_dict({"name": "mine", "methods": ["imp", "random"], "seeds": [0],
                                 "models": ["mynets:small_cnn", "torchvision:mobilenet_v3_small"],
                                 "base": {"training": {"epochs": 1, "batch_size": 128}, "pruning": {"rounds": 1}}})
    sweep.save(tmp_path / "sweep.toml")
    assert main(["sweep", str(tmp_path / "sweep.toml"), "--out", str(tmp_path / "out"), "--device", "cpu"]) == 0, \
        capsys.readouterr().err
    rows = read_levels(tmp_path / "out" / "results").to_pylist()
    assert sorted((r["model"], r["method"]) for r in rows) == [
        ("mynets:small_cnn", "imp"), ("mynets:small_cnn", "random"),
        ("torchvision:mobilenet_v3_small", "imp"), ("torchvision:mobilenet_v3_small", "random")]
    logs = sorted(p.name for p in (tmp_path / "out" / "logs").iterdir())
    assert all(":" not in name for name in logs), logs  # job names carry no colon


def test_a_torchvision_network_through_every_method_and_analysis(tmp_path):
    from dpcluster.results.analyses import read_analysis
    from dpcluster.results.levels import read_levels
    from dpcluster.sweeps.backends import LocalBackend
    from dpcluster.sweeps.coordinator import run_sweep
    from dpcluster.sweeps.spec import SweepSpec

    name = "torchvision:mobilenet_v3_small"
    sweep = SweepSpec.from_dict({
        "name": "tv", "methods": ["dense", "imp", "distilled", "hybrid", "random"], "seeds": [0], "models": [name],
        # Sharpness (28 s a level here) is measured on this network below, once.
        "analyses": ["stability", "landscape", "kept_weights"],
        "analysis": {"points": 3, "grid_size": 3, "test_examples": 64, "batchnorm_examples": 64},
        "base": {"model": {"name": name, "options": {"dropout": 0.0}}, "pruning": {"rounds": 1},
                 "training": {"epochs": 1, "batch_size": 128},
                 "distilled": {"images_per_class": 2, "dm": {"iterations": 2, "real_per_class": 8}},
                 "distilled_training": {"epochs": 2}}})
    manifest = run_sweep(sweep, tmp_path, LocalBackend(), "cpu")
    assert all(state.state == "done" for state in manifest.jobs.values()), manifest.jobs
    levels = read_levels(tmp_path / "results").to_pylist()
    assert sorted(r["method"] for r in levels) == ["dense", "distilled", "hybrid", "imp", "random"]
    for analysis in ("stability", "landscape", "kept_weights"):
        assert read_analysis(tmp_path / "analyses" / analysis, analysis).num_rows > 0, analysis


def test_the_sharpness_of_a_torchvision_network_whose_activations_torch_cannot_differentiate_twice(digits):
    from dpcluster.analyses.hessian import sharpness
    from dpcluster.data.base import measurement_subset
    from dpcluster.models import build_model
    from dpcluster.pruning.masks import full_mask
    from dpcluster.pruning.model_masks import prunable_weights

    # MobileNet-v3's hardswish and hardsigmoid: torch has no second derivative of either.
    torch.manual_seed(0)
    model = build_model(ModelSpec(name="torchvision:mobilenet_v3_small"), (1, 8, 8), 10)
    measured = sharpness(model, full_mask(prunable_weights(model)), measurement_subset(digits.train, 16, 0),
                         device=CPU, iterations=20, samples=2)
    assert measured.top_eigenvalue > 0 and measured.top_eigenvalue >= measured.bottom_eigenvalue
    assert type(model.features[0][2]).__name__ == "Hardswish"  # put back afterwards
