"""The papers' analyses: interpolation and kept-weight histograms against their definitions, the analysis jobs
of a sweep against the validations they share a start with, and the report."""

import base64
import re

import pandas as pd
import pytest
import torch

from dpcluster.analyses.interpolation import alphas, error_barrier, interpolate, interpolation_curve, CurvePoint
from dpcluster.analyses.kept_weights import kept_weight_histograms
from dpcluster.cli.main import main
from dpcluster.data import load_data
from dpcluster.models import build_model
from dpcluster.pruning.masks import full_mask, keep_top_per_layer, magnitude_scores, random_scores
from dpcluster.pruning.model_masks import capture_state, prunable_weights, restore_state
from dpcluster.results.analyses import read_analysis
from dpcluster.results.levels import level_records, read_levels
from dpcluster.specs import DataSpec, ModelSpec
from dpcluster.sweeps.backends import LocalBackend
from dpcluster.sweeps.coordinator import run_sweep
from dpcluster.sweeps.graph import expand
from dpcluster.sweeps.spec import SweepSpec
from dpcluster.training import evaluate

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def digits():
    return load_data(DataSpec())


def _two_states(norm="instancenorm"):
    torch.manual_seed(0)
    a = build_model(ModelSpec(width=8, depth=2, norm=norm), (1, 8, 8), 10)
    torch.manual_seed(1)
    b = build_model(ModelSpec(width=8, depth=2, norm=norm), (1, 8, 8), 10)
    return a, capture_state(a), capture_state(b)


def test_interpolation_ends_are_the_copies_and_pruned_weights_stay_zero():
    model, a, b = _two_states("batchnorm")
    weights = prunable_weights(model)
    mask = keep_top_per_layer(magnitude_scores(weights), full_mask(weights), 0.3)
    a = {k: (v * mask[k] if k in mask else v) for k, v in a.items()}
    b = {k: (v * mask[k] if k in mask else v) for k, v in b.items()}
    for key, tensor in interpolate(a, b, 0.0, mask).items():
        assert torch.equal(tensor, a[key])
    end = interpolate(a, b, 1.0, mask)
    assert all(torch.allclose(end[k], b[k]) for k in b if b[k].is_floating_point())
    middle = interpolate(a, b, 0.5, mask)
    for name, keep in mask.items():
        assert torch.all(middle[name][~keep] == 0)
        assert torch.allclose(middle[name], (a[name] + b[name]) / 2)
    counter = next(k for k in a if k.endswith("num_batches_tracked"))
    assert torch.equal(middle[counter], a[counter])  # integer buffers are not averaged
    assert alphas(11) == [i / 10 for i in range(11)]
    with pytest.raises(ValueError):
        alphas(1)


def test_error_barrier_is_the_peak_above_the_endpoints_mean():
    curve = [CurvePoint(0.0, 1.0, 0.10), CurvePoint(0.5, 2.0, 0.40), CurvePoint(1.0, 1.0, 0.20)]
    assert error_barrier(curve) == pytest.approx(0.40 - 0.15)
    flat = [CurvePoint(x, 1.0, 0.1) for x in (0.0, 0.5, 1.0)]
    assert error_barrier(flat) == 0.0


def test_batchnorm_statistics_are_recomputed_at_every_point(digits):
    model, a, b = _two_states("batchnorm")
    test = digits.test
    curve = interpolation_curve(model, a, b, full_mask(prunable_weights(model)), 3, test, CPU,
                                batchnorm_data=digits.train)
    # The point at alpha 0 is copy a with statistics recomputed on the training data: torch's update_bn by hand.
    restore_state(model, a)
    torch.optim.swa_utils.update_bn([digits.train.x[i:i + 256] for i in range(0, len(digits.train), 256)], model)
    accuracy, loss = evaluate(model, test, device=CPU)
    assert curve[0].test_error == pytest.approx(1 - accuracy) and curve[0].test_loss == pytest.approx(loss)
    restore_state(model, a)
    stale_accuracy, _ = evaluate(model, test, device=CPU)
    assert stale_accuracy != accuracy, "fresh statistics give another network than the stored ones"


def test_kept_weight_histograms_count_every_weight_and_show_what_a_mask_keeps():
    model, initial, _ = _two_states()
    weights = prunable_weights(model)
    everything = full_mask(weights)
    magnitude = keep_top_per_layer(magnitude_scores(weights), everything, 0.2)
    random = keep_top_per_layer(random_scores(everything, torch.Generator().manual_seed(0)), everything, 0.2)
    for mask in (magnitude, random):
        bins = kept_weight_histograms(initial, mask, 20)
        for name, keep in mask.items():
            layer = [b for b in bins if b.layer == name]
            assert len(layer) == 20
            assert sum(b.kept for b in layer) == int(keep.sum())
            assert sum(b.kept + b.pruned for b in layer) == keep.numel()
    # A magnitude mask of the initial weights keeps only the tails: no kept weight in the middle bins.
    for name, keep in magnitude.items():
        smallest_kept = float(initial[name][keep].abs().min())
        middle = [b for b in kept_weight_histograms(initial, magnitude, 20)
                  if b.layer == name and -smallest_kept < b.low and b.high < smallest_kept]
        assert middle and all(b.kept == 0 and b.pruned > 0 for b in middle), name
    # A random mask keeps about a fifth of every bin with enough weights in it.
    for b in kept_weight_histograms(initial, random, 10):
        if b.kept + b.pruned >= 200:
            assert abs(b.kept / (b.kept + b.pruned) - 0.2) < 0.1, b


ANALYSED = {
    "name": "analysed", "methods": ["dense", "imp", "random"], "seeds": [0], "sparsities": [0.36],
    "rewinds": ["0ep", "1ep"],
    "analyses": ["stability", "landscape", "sharpness", "kept_weights"],
    "analysis": {"points": 5, "grid_size": 3, "grid_span": 0.5, "hessian_examples": 64, "hessian_iterations": 10,
                 "hutchinson_samples": 3, "histogram_bins": 8},
    "base": {"model": {"width": 8}, "pruning": {"rounds": 2}, "training": {"epochs": 2}},
    # Only the pairs keep the trained networks, until they have used them (tests/test_export.py keeps them all).
    "keep_trained": False,
}


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("analysed")
    sweep = SweepSpec.from_dict(ANALYSED)
    manifest = run_sweep(sweep, folder, LocalBackend(), "cpu")
    assert all(manifest.jobs[job.id].state == "done" for job in expand(sweep)), manifest.jobs
    return folder


def test_analysis_jobs_measure_the_validated_subnetwork(analysed):
    records = level_records(read_levels(analysed / "results"))
    # IMP rewound to initialisation and IMP rewound to epoch 1 are two experiments of the one sweep.
    assert sorted((r.method, r.rewind) for r in records) == [
        ("dense", None), ("imp", "0ep"), ("imp", "1ep"), ("random", None)]
    stability = read_analysis(analysed / "analyses" / "stability", "stability").to_pandas()
    landscape = read_analysis(analysed / "analyses" / "landscape", "landscape").to_pandas()
    # Copy a is the validation's own trained network, taken over rather than trained a second time.
    pair_logs = " ".join(p.read_text() for p in (analysed / "logs").glob("pair-*.log"))
    assert pair_logs.count("copy a is the validation's trained network") == len(records), pair_logs
    assert not list((analysed / "masks").rglob("trained/*.pt"))
    for record in records:
        curve = stability[stability["experiment_id"] == record.experiment_id].sort_values("alpha")
        rewind = curve["rewind"].iloc[0]
        assert (None if pd.isna(rewind) else rewind) == record.rewind
        assert list(curve["alpha"]) == [0.0, 0.25, 0.5, 0.75, 1.0]
        # Copy a trains exactly as the validation does (same start, same data order): its error is the level's.
        assert curve["test_error"].iloc[0] == pytest.approx(1 - record.test_accuracy, abs=1e-9)
        assert curve["test_error"].iloc[-1] != curve["test_error"].iloc[0] or \
            curve["test_loss"].iloc[-1] != curve["test_loss"].iloc[0], "copy b trained on another data order"
        barrier = curve["test_error"].max() - (curve["test_error"].iloc[0] + curve["test_error"].iloc[-1]) / 2
        assert curve["instability"].tolist() == pytest.approx([barrier] * len(curve))
        assert curve["sparsity"].iloc[0] == pytest.approx(record.sparsity)
        plane = landscape[landscape["experiment_id"] == record.experiment_id]
        assert len(plane) == 9
        # Li et al.'s plane by default: the training loss, BatchNorm as trained, on the whole training split.
        assert set(plane["split"]) == {"train"} and set(plane["test_size"]) == {1437}
        assert set(plane["batchnorm_size"]) == {0}
    # Its centre is copy a, evaluated on the training split.
    from dpcluster.data import load_data
    from dpcluster.models import build_model
    from dpcluster.pruning.model_masks import restore_state
    from dpcluster.sweeps.kinds.analysis_common import load_pair
    from dpcluster.sweeps.layout import SweepLayout
    from dpcluster.training.loop import evaluate

    data = load_data(SweepSpec.from_dict(ANALYSED).base.data)
    for job in (j for j in expand(SweepSpec.from_dict(ANALYSED)) if j.kind == "landscape"):
        pair = load_pair(SweepLayout(analysed).pair_file(job.experiment, job.round))
        model = build_model(job.experiment.model, data.input_shape, data.num_classes)
        restore_state(model, pair.a)
        accuracy, _ = evaluate(model, data.train, device=torch.device("cpu"))
        plane = landscape[(landscape["experiment_id"] == job.experiment.experiment_id) &
                          (landscape["round"] == job.round)]
        center = plane[(plane["a"] == 0) & (plane["b"] == 0)]
        assert center["test_accuracy"].iloc[0] == pytest.approx(accuracy, abs=1e-9)


def test_sharpness_and_kept_weights_rows(analysed):
    sharp = read_analysis(analysed / "analyses" / "sharpness", "sharpness").to_pandas()
    assert sorted(zip(sharp["method"], sharp["round"])) == [("dense", 0), ("imp", 2), ("imp", 2), ("random", 2)]
    assert (sharp["examples"] == 64).all() and (sharp["trace_samples"] == 3).all()
    # Both extreme eigenvalues within their Lanczos budget (about hessian_iterations = 10 products each).
    assert (sharp["eigen_iterations"] <= 3 * 10).all() and (sharp["top_eigenvalue"].abs() > 0).all()
    assert (sharp["bottom_eigenvalue"] <= sharp["top_eigenvalue"]).all() and sharp["eigen_residual"].notna().all()
    kept = read_analysis(analysed / "analyses" / "kept_weights", "kept_weights").to_pandas()
    for record in level_records(read_levels(analysed / "results")):
        part = kept[kept["experiment_id"] == record.experiment_id]
        # Per-layer counts agree with the level's own per-layer record of its mask.
        by_layer = part.groupby("layer")[["kept", "pruned"]].sum()
        for layer in record.layers:
            assert by_layer.loc[layer.name, "kept"] == layer.kept
            assert by_layer.loc[layer.name, "kept"] + by_layer.loc[layer.name, "pruned"] == layer.total


def test_analysis_ids_follow_their_own_settings():
    base = expand(SweepSpec.from_dict(ANALYSED))
    more_points = expand(SweepSpec.from_dict({**ANALYSED, "analysis": {**ANALYSED["analysis"], "points": 7}}))
    ids = lambda jobs, kind: {j.id for j in jobs if j.kind == kind}  # noqa: E731
    assert ids(base, "stability").isdisjoint(ids(more_points, "stability"))
    for kind in ("pair", "landscape", "sharpness", "kept_weights", "validate", "mask"):
        assert ids(base, kind) == ids(more_points, kind), kind
    assert not any(j.kind == "pair" for j in expand(SweepSpec.from_dict({**ANALYSED, "analyses": ["kept_weights"]})))


@pytest.mark.parametrize("fields, key", [({"analyses": ["stabilty"]}, "analyses[0]"),
                                         ({"analysis": {"grid_size": 4}}, "analysis.grid_size"),
                                         ({"analysis": {"points": 2}}, "analysis.points")])
def test_bad_analysis_settings_name_the_key(fields, key):
    from dpcluster.errors import SpecError

    with pytest.raises(SpecError, match=re.escape(key)):
        SweepSpec.from_dict({**ANALYSED, **fields})


def test_the_report_writes_figures_a_summary_and_one_self_contained_page(analysed, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["report", str(analysed), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "digits / convnet" in printed and "imp" in printed
    for name in ("accuracy_vs_sparsity", "cost_vs_sparsity", "interpolation_curves", "instability_vs_sparsity",
                 "landscapes", "sharpness_vs_sparsity", "kept_weights"):
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert (out / f"{name}.svg").read_text().lstrip().startswith("<?xml"), name
    summary = pd.read_csv(out / "summary.csv")
    assert sorted(summary["series"]) == ["dense", "imp (rewind 0ep)", "imp (rewind 1ep)", "random"]
    levels = {r.method + (f" (rewind {r.rewind})" if r.rewind else ""): r
              for r in level_records(read_levels(analysed / "results"))}
    for row in summary.to_dict("records"):
        assert row["accuracy_mean"] == pytest.approx(levels[row["series"]].test_accuracy)
        assert not pd.isna(row["instability"]) and not pd.isna(row["top_eigenvalue"])
    page = (out / "report.html").read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 7 and all(base64.b64decode(i)[:4] == b"\x89PNG" for i in images)
    assert not re.search(r'src="(?!data:)', page), "the page needs no file beside it"


def test_the_report_opens_in_a_real_browser_with_every_figure_and_no_error(analysed, tmp_path):
    """Debian's chromium, headless, loads report.html from a finished digits sweep with analyses: every image
    decodes, nothing is logged as an error, and the page is screenshot. Required where CI installs chromium
    (DPCLUSTER_REQUIRE_BROWSER); skipped only where chromium cannot be had."""
    import os

    from browser import chromium, load_page

    if chromium() is None:
        if os.environ.get("DPCLUSTER_REQUIRE_BROWSER", "").strip().lower() not in ("", "0", "false", "no"):
            pytest.fail("DPCLUSTER_REQUIRE_BROWSER is set but chromium is not installed")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    out = tmp_path / "report"
    assert main(["report", str(analysed), "--out", str(out)]) == 0
    page = load_page(out / "report.html")
    assert page.images == 7 and page.broken_images == [], page.broken_images
    assert page.errors == [], page.errors
    assert page.screenshot[:8] == b"\x89PNG\r\n\x1a\n" and len(page.screenshot) > 20_000
    (tmp_path / "report.png").write_bytes(page.screenshot)


def test_report_mistakes_are_one_line_and_write_nothing(tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["report", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nowhere" in err
    (tmp_path / "empty" / "results").mkdir(parents=True)
    assert main(["report", str(tmp_path / "empty"), "--out", str(out)]) == 2
    assert "no results" in capsys.readouterr().err
    assert not out.exists()
