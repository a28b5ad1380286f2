"""Sweep specs and their job graphs (pure: no jobs run here)."""

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
    assert jobs[-1].kind == "aggregate" and len(jobs[-1].deps) == kinds["validate"]
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


def test_shipped_sweeps_load_and_expand():
    for path in sorted(JOBS.glob("*.toml")):
        text = path.read_text()
        if "datasets" not in text:
            continue  # an experiment spec, not a sweep
        sweep = SweepSpec.load(path)
        assert expand(sweep), path


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
