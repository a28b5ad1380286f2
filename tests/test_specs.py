import pytest

from dpcluster.errors import SpecError, UserError
from dpcluster.specs import DataSpec, ExperimentSpec, ModelSpec, PruningSpec, TrainingSpec

DEFAULT_ID = "38941ca2f508"


def test_toml_round_trip_keeps_every_value(tmp_path):
    spec = ExperimentSpec(
        method="hybrid", seed=3, model=ModelSpec(name="alexnet"),
        pruning=PruningSpec(target_sparsity=0.9, rewind="500it", ignore=("classifier",)),
        training=TrainingSpec(optimizer="adam", lr=8e-4, milestones=(50, 65, 80), gamma=0.15),
    )
    path = tmp_path / "spec.toml"
    spec.save(path)
    assert ExperimentSpec.load(path) == spec
    assert ExperimentSpec.load(path).experiment_id == spec.experiment_id


def test_hash_is_stable_and_content_based():
    assert ExperimentSpec().experiment_id == ExperimentSpec().experiment_id
    assert ExperimentSpec(seed=1).experiment_id != ExperimentSpec(seed=0).experiment_id
    # Writing a default explicitly does not change the id.
    assert ExperimentSpec.from_dict({"training": {"epochs": 10}}).experiment_id == ExperimentSpec().experiment_id
    assert len(ExperimentSpec().experiment_id) == 12


def test_the_default_id_is_pinned():
    # Ids key finished work on disk: a change here re-keys every result, so it must be deliberate.
    assert ExperimentSpec().experiment_id == DEFAULT_ID


def test_ids_leave_out_where_the_data_lives_and_how_it_is_read():
    spec = ExperimentSpec(data=DataSpec(name="cifar10", root="/data/cifar"))
    for moved in (DataSpec(name="cifar10", root="/elsewhere"), DataSpec(name="cifar10", root="/a", workers=16),
                  DataSpec(name="cifar10", root="/a", placement="loader")):
        assert spec.replace(data=moved).experiment_id == spec.experiment_id
    assert spec.replace(data=DataSpec(name="cifar10", root="/a", zca=True)).experiment_id != spec.experiment_id


def test_ids_cover_only_what_a_method_depends_on():
    imp = ExperimentSpec(method="imp")
    other_set = imp.replace(distilled_training=imp.distilled_training.replace(lr=0.5))
    assert other_set.experiment_id == imp.experiment_id  # IMP trains on no distilled set
    distilled = ExperimentSpec(method="distilled")
    assert distilled.replace(distilled_training=other_set.distilled_training).experiment_id != distilled.experiment_id
    assert ExperimentSpec(pruning=PruningSpec(target_sparsity=0.9)).experiment_id == \
        ExperimentSpec(pruning=PruningSpec(rounds=11)).experiment_id


def test_a_partial_table_changes_the_defaults_it_names_only():
    spec = ExperimentSpec.from_dict({"model": {"width": 64}, "distilled_training": {"epochs": 50}})
    assert (spec.model.depth, spec.model.width) == (ExperimentSpec().model.depth, 64)
    assert spec.distilled_training == ExperimentSpec().distilled_training.replace(epochs=50)


def test_the_shipped_default_spec_is_the_default():
    from pathlib import Path

    assert ExperimentSpec.load(Path(__file__).resolve().parents[1] / "jobs" / "digits.toml") == ExperimentSpec()


def test_distilled_training_defaults_to_mtts_evaluation_schedule():
    training = ExperimentSpec().distilled_training
    assert (training.schedule, training.gamma, training.lr_milestones) == ("half", 0.1, (training.epochs // 2,))
    with pytest.raises(SpecError, match="milestones"):
        TrainingSpec(schedule="half", milestones=(3,))


def test_unknown_key_is_named_with_its_path():
    with pytest.raises(SpecError, match=r"^training\.learning_rate: unknown key"):
        ExperimentSpec.from_dict({"training": {"learning_rate": 0.1}})


@pytest.mark.parametrize("data, key", [
    ({"training": {"lr": -1}}, "training.lr"),
    ({"training": {"epochs": "ten"}}, "training.epochs"),
    ({"pruning": {"target_sparsity": 1.0}}, "pruning.target_sparsity"),
    ({"pruning": {"rewind": "1 epoch"}}, "pruning.rewind"),
    ({"model": {"name": "vgg"}}, "model.name"),
    ({"data": {"name": "cifar10"}}, "data.root"),
    ({"method": "magic"}, "method"),
    ({"pruning": {"rounds": 3, "target_sparsity": 0.5}}, "pruning.rounds"),
    ({"training": {"milestones": [65, 50]}}, "training.milestones"),
    ({"pruning": {"strategy": "random"}}, "pruning.strategy"),
    ({"distilled": {"zca": True}}, "distilled.zca"),
])
def test_bad_values_name_the_key(data, key):
    with pytest.raises(SpecError) as error:
        ExperimentSpec.from_dict(data)
    assert error.value.key == key


def test_unreadable_spec_is_a_user_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("method = [unclosed")
    with pytest.raises(UserError, match="not valid TOML"):
        ExperimentSpec.load(bad)
    with pytest.raises(UserError, match="cannot read spec"):
        ExperimentSpec.load(tmp_path / "missing.toml")


def test_rounds_from_target_sparsity():
    assert PruningSpec().num_rounds == 20
    assert PruningSpec(target_sparsity=0.5).num_rounds == 4  # 1 - 0.8**3 = 0.488 < 0.5
    assert PruningSpec(target_sparsity=0.488).num_rounds == 3
    assert PruningSpec(rounds=30).num_rounds == 30
    assert PruningSpec(rewind="1ep").rewind_point.steps(12) == 12
    assert PruningSpec(rewind="500it").rewind_point.steps(12) == 500


def test_spec_prints_readably():
    text = str(ExperimentSpec(data=DataSpec(name="cifar10", root="/data")))
    assert "root = '/data'" in text and "training:" in text


def test_concurrent_saves_of_one_spec_never_collide(tmp_path):
    import multiprocessing

    path = tmp_path / "sweep.toml"
    with multiprocessing.get_context("fork").Pool(2) as pool:
        failures = sum(pool.map(_save_many, [str(path)] * 4))
    assert failures == 0
    assert ExperimentSpec.load(path) == ExperimentSpec(seed=3)
    assert [p.name for p in tmp_path.iterdir()] == ["sweep.toml"]  # no temporary file left behind


def _save_many(path: str) -> int:
    failures = 0
    for _ in range(250):
        try:
            ExperimentSpec(seed=3).save(path)
        except OSError:
            failures += 1
    return failures
