"""Distilled sets: the project format, the MTT and image-folder readers, distribution matching and its cache
(the other upstream formats are in test_set_formats.py)."""

from __future__ import annotations

import pickle
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

import dpcluster.distilled.dm as dm_module
from dpcluster.data import load_data
from dpcluster.data.base import DataBundle, TensorSet
from dpcluster.distilled import DistilledSet, distill_key, obtain_distilled_set
from dpcluster.distilled.dm import distill_dm
from dpcluster.distilled.dm import _fresh_network
from dpcluster.distilled import read_distilled_set
from dpcluster.distilled.registry import ReadOptions, get_format
from dpcluster.errors import UserError
from dpcluster.models import build_model
from dpcluster.specs import DataSpec, DistilledSpec, ModelSpec
from dpcluster.specs.experiment import DMSpec, MTTSpec


pytestmark = pytest.mark.usefixtures("one_thread")


def bundle(name="cifar10", classes=("cat", "dog"), shape=(3, 4, 4), mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3),
           per_class=6, zca=False) -> DataBundle:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(len(classes)).repeat_interleave(per_class)
    train = TensorSet(torch.randn(len(y), *shape, generator=g), y)
    if zca:  # whitened data has the identity normalization (see DataBundle)
        mean, std = (0.0,) * shape[0], (1.0,) * shape[0]
    return DataBundle(name=name, num_classes=len(classes), input_shape=shape, mean=mean, std=std,
                      class_names=tuple(classes), train=train, test=train, zca=zca)


def small_set(data: DataBundle, ipc=2, learned_lr=0.03) -> DistilledSet:
    g = torch.Generator().manual_seed(1)
    return DistilledSet(
        images=torch.randn(data.num_classes * ipc, *data.input_shape, generator=g),
        labels=torch.arange(data.num_classes).repeat_interleave(ipc), source_dataset=data.name,
        images_per_class=ipc, method="mtt", mean=data.mean, std=data.std, learned_lr=learned_lr,
        num_classes=data.num_classes, extra={"note": "x"})


class Payload:
    """Unpickling this with a full unpickler would create ``marker`` (standing in for any code it could run)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def import_mtt(path, data, options=ReadOptions()):
    """A set in MTT's format, read as every set is (the reader, then converted to the data's normalization)."""
    return read_distilled_set(path, "mtt", data, options)


def import_png(path, data, options=ReadOptions()):
    return read_distilled_set(path, "images", data, options)


def one_line(error: pytest.ExceptionInfo) -> str:
    text = str(error.value)
    assert "\n" not in text
    return text


# --- the project format -------------------------------------------------------------------------------

def test_save_load_round_trip(tmp_path):
    data = bundle()
    original = small_set(data, learned_lr=0.0123)
    folder = original.save(tmp_path / "sets" / "a")
    loaded = DistilledSet.load(folder)
    assert torch.equal(loaded.images, original.images)
    assert torch.equal(loaded.labels, original.labels)
    assert loaded.labels.dtype == torch.int64
    assert loaded.learned_lr == pytest.approx(0.0123)
    assert (loaded.source_dataset, loaded.images_per_class, loaded.method, loaded.num_classes) == \
        ("cifar10", 2, "mtt", 2)
    assert loaded.mean == pytest.approx(data.mean) and loaded.std == pytest.approx(data.std)
    assert loaded.extra == {"note": "x"}
    # The atomic write leaves exactly the set, no temporary folder beside it.
    assert [p.name for p in (tmp_path / "sets").iterdir()] == ["a"]
    assert sorted(p.name for p in folder.iterdir()) == ["distilled.json", "images.pt", "labels.pt"]
    tensors = loaded.as_tensor_set()
    assert isinstance(tensors, TensorSet) and len(tensors) == 4


def test_save_never_clobbers_unless_asked(tmp_path):
    data = bundle()
    small_set(data).save(tmp_path / "a")
    with pytest.raises(UserError, match="already exists") as error:
        small_set(data, learned_lr=None).save(tmp_path / "a")
    one_line(error)
    assert DistilledSet.load(tmp_path / "a").learned_lr == pytest.approx(0.03)
    small_set(data, learned_lr=None).save(tmp_path / "a", overwrite=True)
    assert DistilledSet.load(tmp_path / "a").learned_lr is None
    assert [p.name for p in tmp_path.iterdir()] == ["a"]


def test_load_refuses_pickle_payload(tmp_path):
    data = bundle()
    folder = small_set(data).save(tmp_path / "a")
    marker = tmp_path / "marker"
    torch.save(Payload(marker), folder / "images.pt")
    with pytest.raises(UserError, match="refused") as error:
        DistilledSet.load(folder)
    text = one_line(error)
    assert "images.pt" in text and "arbitrary code" in text
    assert not marker.exists()


def test_load_reports_bad_files(tmp_path):
    data = bundle()
    folder = small_set(data).save(tmp_path / "a")
    torch.save(torch.zeros(3, dtype=torch.int64), folder / "labels.pt")  # 3 labels for 4 images
    with pytest.raises(UserError, match="labels.pt") as error:
        DistilledSet.load(folder)
    one_line(error)
    (folder / "labels.pt").write_bytes(b"\x80not a tensor file")
    with pytest.raises(UserError, match="labels.pt"):
        DistilledSet.load(folder)
    (folder / "labels.pt").unlink()
    with pytest.raises(UserError, match="labels.pt.*no such file"):
        DistilledSet.load(folder)
    (folder / "distilled.json").write_text("{not json")
    with pytest.raises(UserError, match="distilled.json"):
        DistilledSet.load(folder)


def test_set_must_match_data_set():
    data = bundle()
    distilled = small_set(data)
    with pytest.raises(UserError, match="classes"):
        distilled.matched_to(bundle(classes=("a", "b", "c")))
    with pytest.raises(UserError, match="needs"):
        distilled.matched_to(bundle(shape=(3, 8, 8)))
    with pytest.raises(UserError, match="distilled from 'cifar10'"):
        distilled.matched_to(bundle(name="cifar100"))
    with pytest.raises(UserError, match="labels"):
        DistilledSet(images=torch.zeros(4, 3, 4, 4), labels=torch.tensor([0, 0, 1, 2]), source_dataset="cifar10",
                     images_per_class=2, method="dm", mean=data.mean, std=data.std, learned_lr=None, num_classes=2)


def test_matched_to_converts_normalization():
    data = bundle()
    distilled = small_set(data)
    other = bundle(mean=(0.1, 0.2, 0.3), std=(0.5, 0.5, 0.5))
    converted = distilled.matched_to(other)
    raw = distilled.images * torch.tensor(data.std).view(1, 3, 1, 1) + torch.tensor(data.mean).view(1, 3, 1, 1)
    expected = (raw - torch.tensor(other.mean).view(1, 3, 1, 1)) / torch.tensor(other.std).view(1, 3, 1, 1)
    assert torch.allclose(converted.images, expected, atol=1e-6)
    assert converted.mean == other.mean
    assert distilled.matched_to(data) is distilled


# --- importers ------------------------------------------------------------------------------------------

def test_import_mtt(tmp_path, digits):
    images = torch.randn(20, 1, 8, 8)
    labels = torch.arange(10).repeat_interleave(2)
    torch.save(images, tmp_path / "images_best.pt")
    torch.save(labels, tmp_path / "labels_best.pt")
    distilled = import_mtt(tmp_path, digits)
    assert torch.equal(distilled.images, images) and torch.equal(distilled.labels, labels)
    assert (distilled.images_per_class, distilled.method, distilled.learned_lr) == (2, "mtt", None)
    torch.save(torch.tensor(0.0071, requires_grad=True), tmp_path / "lr_best.pt")
    assert import_mtt(tmp_path, digits).learned_lr == pytest.approx(0.0071)


def mtt_normalization(name):
    return get_format("mtt").upstream[name]


def test_import_mtt_converts_from_mtt_normalization(tmp_path):
    mtt_mean, mtt_std = mtt_normalization("cifar10")
    data = bundle(name="cifar10", mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26))
    raw = torch.rand(4, 3, 4, 4)
    view = (1, 3, 1, 1)
    torch.save((raw - torch.tensor(mtt_mean).view(view)) / torch.tensor(mtt_std).view(view),
               tmp_path / "images_best.pt")
    torch.save(torch.tensor([0, 0, 1, 1]), tmp_path / "labels_best.pt")
    distilled = import_mtt(tmp_path, data)
    expected = (raw - torch.tensor(data.mean).view(view)) / torch.tensor(data.std).view(view)
    assert torch.allclose(distilled.images, expected, atol=1e-5)


def test_mtt_normalization_is_what_mtts_code_uses():
    # MTT's utils.get_dataset: CIFAR-10's constants for CIFAR-10 and CIFAR-100 alike, ImageNet's for its subsets.
    cifar10 = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
    imagenet = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert mtt_normalization("cifar10") == cifar10 and mtt_normalization("cifar100") == cifar10
    assert all(mtt_normalization(name) == imagenet for name in ("imagenet10", "imagenette", "imagenet"))


def test_import_mtt_cifar100_converts_from_mtts_cifar10_constants(tmp_path):
    from dpcluster.data.cifar import KINDS

    ours = KINDS["cifar100"]
    data = bundle(name="cifar100", classes=("a", "b"), mean=ours.mean, std=ours.std)
    view = (1, 3, 1, 1)
    raw = torch.rand(4, 3, 4, 4, generator=torch.Generator().manual_seed(3))
    mtt_mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(view)
    mtt_std = torch.tensor([0.2023, 0.1994, 0.2010]).view(view)
    torch.save((raw - mtt_mean) / mtt_std, tmp_path / "images_best.pt")
    torch.save(torch.tensor([0, 0, 1, 1]), tmp_path / "labels_best.pt")
    distilled = import_mtt(tmp_path, data)
    expected = (raw - torch.tensor(ours.mean).view(view)) / torch.tensor(ours.std).view(view)
    torch.testing.assert_close(distilled.images, expected, rtol=0, atol=1e-5)
    assert distilled.mean == pytest.approx(ours.mean) and distilled.std == pytest.approx(ours.std)
    # Read as if in CIFAR-100's own constants, a pixel would land elsewhere (the conversion matters).
    assert (distilled.images - torch.load(tmp_path / "images_best.pt")).abs().max() > 0.05


def test_zca_mtt_set_loads_unchanged_with_zca_data(tmp_path):
    data = bundle(zca=True)
    images = torch.randn(4, 3, 4, 4, generator=torch.Generator().manual_seed(5)) * 3
    torch.save(images, tmp_path / "images_best.pt")
    torch.save(torch.tensor([0, 0, 1, 1]), tmp_path / "labels_best.pt")
    distilled = import_mtt(tmp_path, data, ReadOptions(zca=True))
    assert torch.equal(distilled.images, images) and distilled.zca
    assert distilled.mean == (0.0, 0.0, 0.0) and distilled.std == (1.0, 1.0, 1.0)
    spec = DistilledSpec(source="file", format="mtt", path=str(tmp_path), images_per_class=2, zca=True)
    obtained = obtain_distilled_set(spec, data, ModelSpec(), tmp_path / "cache", "cpu")
    assert torch.equal(obtained.images, images) and obtained.zca
    # The project format keeps it whitened, and it is never renormalized.
    saved = DistilledSet.load(distilled.save(tmp_path / "own"))
    assert saved.zca and saved.matched_to(data) is saved


def test_zca_and_plain_sets_and_data_do_not_mix(tmp_path):
    torch.save(torch.randn(4, 3, 4, 4), tmp_path / "images_best.pt")
    torch.save(torch.tensor([0, 0, 1, 1]), tmp_path / "labels_best.pt")
    spec = DistilledSpec(source="file", format="mtt", path=str(tmp_path), images_per_class=2, zca=True)
    with pytest.raises(UserError, match="data.zca = true") as error:
        obtain_distilled_set(spec, bundle(), ModelSpec(), tmp_path / "cache", "cpu")
    assert "distilled.zca = true says the set is ZCA-whitened" in one_line(error)
    with pytest.raises(UserError, match="distilled.zca = true if it was distilled with MTT's --zca") as error:
        obtain_distilled_set(spec.replace(zca=False), bundle(zca=True), ModelSpec(), tmp_path / "cache", "cpu")
    one_line(error)
    # A whitened set in the project format, and one whitened the old way (normalized constants kept).
    plain = small_set(bundle())
    white = replace(small_set(bundle(zca=True)), zca=True)
    with pytest.raises(UserError, match="set data.zca = true"):
        white.matched_to(bundle())
    with pytest.raises(UserError, match="set data.zca = false"):
        plain.matched_to(bundle(zca=True))
    old = replace(white, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    with pytest.raises(UserError, match="again") as error:
        old.matched_to(bundle(zca=True))
    one_line(error)


def test_import_mtt_refuses_pickle_payload(tmp_path, digits):
    marker = tmp_path / "marker"
    with open(tmp_path / "images_best.pt", "wb") as file:
        pickle.dump(Payload(marker), file)  # a plain pickle, as a hostile "checkpoint" might be
    torch.save(torch.arange(10).repeat_interleave(2), tmp_path / "labels_best.pt")
    with pytest.raises(UserError, match="refused") as error:
        import_mtt(tmp_path, digits)
    assert "images_best.pt" in one_line(error)
    torch.save(Payload(marker), tmp_path / "images_best.pt")
    with pytest.raises(UserError, match="refused.*arbitrary code"):
        import_mtt(tmp_path, digits)
    assert not marker.exists()


def test_import_mtt_wrong_shapes(tmp_path, digits):
    torch.save(torch.randn(20, 3, 8, 8), tmp_path / "images_best.pt")
    torch.save(torch.arange(10).repeat_interleave(2), tmp_path / "labels_best.pt")
    with pytest.raises(UserError, match="images_best.pt.*needs") as error:
        import_mtt(tmp_path, digits)
    one_line(error)
    torch.save(torch.randn(20, 1, 8, 8), tmp_path / "images_best.pt")
    torch.save(torch.arange(10).repeat_interleave(3), tmp_path / "labels_best.pt")
    with pytest.raises(UserError, match="labels_best.pt.*30 labels for 20"):
        import_mtt(tmp_path, digits)
    torch.save(torch.arange(20), tmp_path / "labels_best.pt")
    with pytest.raises(UserError, match="labels_best.pt.*0..9"):
        import_mtt(tmp_path, digits)
    torch.save(torch.rand(20, 9), tmp_path / "labels_best.pt")
    with pytest.raises(UserError, match="soft labels of 9 classes"):
        import_mtt(tmp_path, digits)
    (tmp_path / "labels_best.pt").unlink()
    with pytest.raises(UserError, match="labels_best.pt"):
        import_mtt(tmp_path, digits)


def test_import_png_by_index(tmp_path, digits):
    for c in range(10):
        (tmp_path / str(c)).mkdir()
        for k in range(2):
            pixels = np.full((8, 8), 10 * c + k, dtype=np.uint8)
            pixels[0, 0] = 255
            Image.fromarray(pixels, mode="L").save(tmp_path / str(c) / f"{k}.png")
    distilled = import_png(tmp_path, digits)
    assert distilled.images.shape == (20, 1, 8, 8)
    assert distilled.labels.tolist() == [c for c in range(10) for _ in range(2)]
    mean, std = digits.mean[0], digits.std[0]
    assert distilled.images[7, 0, 3, 3].item() == pytest.approx((31 / 255 - mean) / std, abs=1e-5)
    assert distilled.images[7, 0, 0, 0].item() == pytest.approx((1.0 - mean) / std, abs=1e-5)
    assert distilled.images_per_class == 2 and distilled.method == "images"


def test_import_png_by_name_converts_channels_and_size(tmp_path):
    data = bundle()
    for name, value in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
        (tmp_path / name).mkdir()
        Image.new("RGB", (4, 4), value).save(tmp_path / name / "a.png")
        Image.new("RGBA", (8, 8), (*value, 255)).save(tmp_path / name / "b.png")  # resized, alpha dropped
    distilled = import_png(tmp_path, data)
    assert distilled.images.shape == (4, 3, 4, 4)
    assert distilled.labels.tolist() == [0, 0, 1, 1]
    red = (torch.tensor([1.0, 0.0, 0.0]) - torch.tensor(data.mean)) / torch.tensor(data.std)
    assert torch.allclose(distilled.images[1, :, 2, 2], red, atol=1e-5)


def test_import_png_refuses_zca(tmp_path):
    (tmp_path / "cat").mkdir()
    (tmp_path / "dog").mkdir()
    for name in ("cat", "dog"):
        Image.new("RGB", (4, 4)).save(tmp_path / name / "a.png")
    assert len(import_png(tmp_path, bundle())) == 2
    with pytest.raises(UserError, match="data.zca = false") as error:
        import_png(tmp_path, bundle(zca=True))
    one_line(error)
    spec = DistilledSpec(source="file", format="png", path=str(tmp_path), images_per_class=1, zca=True)
    with pytest.raises(UserError, match="not ZCA-whitened values") as error:
        obtain_distilled_set(spec, bundle(), ModelSpec(), tmp_path / "cache", "cpu")
    one_line(error)


def test_import_png_errors(tmp_path):
    data = bundle()
    (tmp_path / "cat").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "cat" / "a.png")
    with pytest.raises(UserError, match=r"classes \[1\]"):
        import_png(tmp_path, data)
    (tmp_path / "bird").mkdir()
    with pytest.raises(UserError, match="'bird'"):
        import_png(tmp_path, data)
    (tmp_path / "bird").rmdir()
    (tmp_path / "1").mkdir()
    for name in ("a.png", "b.png"):
        Image.new("RGB", (4, 4)).save(tmp_path / "1" / name)
    with pytest.raises(UserError, match="same number"):
        import_png(tmp_path, data)
    (tmp_path / "1" / "b.png").write_bytes(b"not a png")
    (tmp_path / "cat" / "b.png").write_bytes((tmp_path / "1" / "a.png").read_bytes())
    with pytest.raises(UserError, match="b.png"):
        import_png(tmp_path, data)


# --- distribution matching --------------------------------------------------------------------------------

def matching_loss(data: DataBundle, images: torch.Tensor, ipc: int, spec: ModelSpec, nets: int = 8) -> float:
    """DM's objective on fixed networks with all real images (no sampling noise)."""
    x, y = data.train.x, data.train.y
    total = 0.0
    for k in range(nets):
        net = _fresh_network(spec, data, 10_000 + k, "cpu")
        with torch.no_grad():
            real, syn = net.embed(x), net.embed(images)
        for c in range(data.num_classes):
            total += ((real[y == c].mean(0) - syn[c * ipc:(c + 1) * ipc].mean(0)) ** 2).sum().item()
    return total / nets


def test_dm_on_digits(digits):
    spec = ModelSpec(width=32)
    losses = []
    initial = distill_dm(digits, spec, images_per_class=5, iterations=0, lr=10.0, real_per_class=64, seed=0,
                         device="cpu")
    distilled = distill_dm(digits, spec, images_per_class=5, iterations=60, lr=10.0, real_per_class=64, seed=0,
                           device="cpu", progress=lambda i, n, loss: losses.append((i, n, loss)))
    assert [i for i, _, _ in losses] == list(range(1, 61)) and {n for _, n, _ in losses} == {60}
    values = [loss for _, _, loss in losses]
    assert np.mean(values[-15:]) < np.mean(values[:15])
    assert matching_loss(digits, distilled.images, 5, spec) < 0.95 * matching_loss(digits, initial.images, 5, spec)
    assert distilled.labels.tolist() == [c for c in range(10) for _ in range(5)]
    assert distilled.images.shape == (50, 1, 8, 8) and distilled.learned_lr is None and distilled.method == "dm"
    assert (distilled.images - initial.images).abs().max() > 0.1

    # The set teaches: a small net trained on it alone does far better than chance on the test split.
    torch.manual_seed(0)
    net = build_model(spec, digits.input_shape, 10)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    for _ in range(100):
        loss = torch.nn.functional.cross_entropy(net(distilled.images), distilled.labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        accuracy = (net(digits.test.x).argmax(1) == digits.test.y).float().mean().item()
    assert accuracy > 0.5


def test_dm_moves_the_images_down_its_objective_with_its_defaults(digits):
    spec, defaults = ModelSpec(width=16, depth=2), DMSpec()
    before = distill_dm(digits, spec, 2, 0, defaults.lr, defaults.real_per_class, seed=3, device="cpu")
    after = distill_dm(digits, spec, 2, 15, defaults.lr, defaults.real_per_class, seed=3, device="cpu")
    assert torch.isfinite(after.images).all()
    assert (after.images - before.images).abs().mean() > 1e-3
    assert matching_loss(digits, after.images, 2, spec) < 0.8 * matching_loss(digits, before.images, 2, spec)
    assert after.extra["loss_last"] < after.extra["loss_first"]


def test_dm_augments_with_dsa_one_siamese_draw_per_class(digits, monkeypatch):
    from dpcluster.data.dsa import NOFLIP_STRATEGY
    from dpcluster.distilled.distillers import distill_augmentation

    cifar = bundle(classes=tuple("abcdefghij"))
    for source in ("dm", "mtt"):
        assert distill_augmentation(DistilledSpec(source=source), digits) == "dsa_noflip"
        assert distill_augmentation(DistilledSpec(source=source), cifar) == "dsa"
    assert distill_augmentation(DistilledSpec(augmentation="none"), digits) == "none"
    calls = []
    real_dsa = dm_module.dsa

    def spy(x, generator, strategy, *, shared=False):
        calls.append((x.shape[0], strategy, shared))
        return real_dsa(x, generator, strategy, shared=shared)

    monkeypatch.setattr(dm_module, "dsa", spy)
    distilled = distill_dm(digits, ModelSpec(width=8, depth=2), 3, 2, 1.0, 16, seed=0, device="cpu")
    # Each iteration: one draw per class, shared by that class's 16 real and 3 synthetic images.
    assert calls == [(16 + 3, NOFLIP_STRATEGY, True)] * (2 * 10)
    assert distilled.extra["augmentation"] == "dsa_noflip" == distilled.training_augmentation(digits)

    # The draw is siamese: identical images come out identical, and gradients reach the synthetic ones.
    x = torch.randn(5, 1, 8, 8)
    for seed in range(12):
        syn = x[:2].clone().requires_grad_()
        real, out = dm_module.siamese_augment(x[:2], syn, "dsa_noflip", torch.Generator().manual_seed(seed))
        torch.testing.assert_close(real, out.detach())
        out.sum().backward()
        assert syn.grad is not None
    with pytest.raises(ValueError, match="crop"):
        dm_module.siamese_augment(x, x, "crop", torch.Generator())


def test_dm_records_the_real_subset_it_started_from(digits):
    from dpcluster.distilled.dm import initial_indices, initial_subset
    from dpcluster.distilled.evaluate import random_real_subset

    spec = ModelSpec(width=8, depth=2)
    start = distill_dm(digits, spec, 3, 0, 1.0, 8, seed=4, device="cpu")
    moved = distill_dm(digits, spec, 3, 2, 1.0, 8, seed=4, device="cpu")
    subset = initial_subset(digits, moved)
    assert torch.equal(subset.x, start.images) and torch.equal(subset.y, moved.labels)
    assert moved.extra["initial_indices"] == initial_indices(digits, 3, 4).tolist()
    assert torch.equal(digits.train.y[torch.tensor(moved.extra["initial_indices"])], moved.labels)
    assert torch.equal(random_real_subset(digits, 3, 4).x, subset.x)  # the CLI's baseline is DM's start


def test_dm_is_reproducible_and_keeps_global_rng(digits):
    spec = ModelSpec(width=8, depth=2)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = distill_dm(digits, spec, 2, 3, 1.0, 16, seed=5, device="cpu")
    assert torch.equal(torch.rand(1), before)
    b = distill_dm(digits, spec, 2, 3, 1.0, 16, seed=5, device="cpu")
    c = distill_dm(digits, spec, 2, 3, 1.0, 16, seed=6, device="cpu")
    assert torch.equal(a.images, b.images)
    assert not torch.equal(a.images, c.images)
    # Images read through a Dataset (placement "loader") give the same set as in-memory tensors.
    loader = distill_dm(load_data(DataSpec(placement="loader")), spec, 2, 3, 1.0, 16, seed=5, device="cpu")
    assert torch.equal(loader.images, a.images)


def test_dm_needs_enough_images():
    with pytest.raises(UserError, match="fewer than"):
        distill_dm(bundle(per_class=3), ModelSpec(width=4, depth=1), 4, 1, 1.0, 4, 0, "cpu")


# --- obtaining the set for an experiment -------------------------------------------------------------------

def test_obtain_dm_uses_cache(tmp_path, digits, monkeypatch):
    spec = DistilledSpec(images_per_class=2, dm=DMSpec(iterations=3, real_per_class=8))
    model = ModelSpec(width=8, depth=2)
    calls = []
    first = obtain_distilled_set(spec, digits, model, tmp_path, "cpu", progress=lambda *a: calls.append(a))
    assert len(calls) == 3
    key = distill_key(spec, digits, model)
    assert [p.name for p in tmp_path.iterdir()] == [f"dm-digits-ipc2-{key}"]

    def refuse(*args, **kwargs):
        raise AssertionError("distilled again despite a cached set")

    monkeypatch.setattr(dm_module, "distill_dm", refuse)
    second = obtain_distilled_set(spec, digits, model, tmp_path, "cpu")
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
    # Anything that changes the result changes the key.
    assert distill_key(spec.replace(seed=1), digits, model) != key
    assert distill_key(spec.replace(dm=DMSpec(iterations=3, real_per_class=8, lr=2.0)), digits, model) != key
    assert distill_key(spec.replace(augmentation="none"), digits, model) != key
    assert distill_key(spec, digits, model.replace(width=16)) != key
    assert distill_key(spec, load_data(DataSpec(split_seed=1)), model) != key
    assert distill_key(spec, load_data(DataSpec(placement="loader")), model) == key
    # ...and what does not, does not.
    assert distill_key(spec.replace(use_learned_lr=False, mtt=MTTSpec(iterations=1)), digits, model) == key


def test_a_stopped_distillation_resumes_from_its_checkpoint(tmp_path, digits):
    model = ModelSpec(width=8, depth=2)
    state = tmp_path / "state.pt"
    whole = distill_dm(digits, model, 2, 6, 1.0, 8, 0, "cpu")

    class Stop(Exception):
        pass

    def stop_in_fifth(iteration, iterations, loss):  # after the checkpoint at iteration 4
        if iteration == 5:
            raise Stop

    with pytest.raises(Stop):
        distill_dm(digits, model, 2, 6, 1.0, 8, 0, "cpu", stop_in_fifth, state_path=state, checkpoint_every=2)
    assert state.exists()
    seen = []
    resumed = distill_dm(digits, model, 2, 6, 1.0, 8, 0, "cpu", lambda i, n, loss: seen.append(i),
                         state_path=state, checkpoint_every=2)
    assert seen == [5, 6]  # iterations 1-4 were not repeated
    assert torch.allclose(resumed.images, whole.images, atol=1e-6)


def test_obtain_imports(tmp_path, digits):
    images = torch.randn(20, 1, 8, 8)
    torch.save(images, tmp_path / "images_best.pt")
    torch.save(torch.arange(10).repeat_interleave(2), tmp_path / "labels_best.pt")
    spec = DistilledSpec(source="file", format="mtt", path=str(tmp_path), images_per_class=2)
    distilled = obtain_distilled_set(spec, digits, ModelSpec(), tmp_path / "cache", "cpu")
    assert torch.equal(distilled.images, images)
    distilled.save(tmp_path / "own")
    own = DistilledSpec(source="file", path=str(tmp_path / "own"), images_per_class=2)
    assert torch.equal(obtain_distilled_set(own, digits, ModelSpec(), tmp_path, "cpu").images, images)
    # "{ipc}" in the path stands for the set's size (one template for a sweep over sizes).
    distilled.save(tmp_path / "ipc2")
    template = DistilledSpec(source="file", path=str(tmp_path / "ipc{ipc}"), images_per_class=2)
    assert torch.equal(obtain_distilled_set(template, digits, ModelSpec(), tmp_path, "cpu").images, images)
    with pytest.raises(UserError, match="images_per_class = 10"):
        obtain_distilled_set(spec.replace(images_per_class=10), digits, ModelSpec(), tmp_path, "cpu")
    with pytest.raises(UserError, match="does not exist") as error:
        obtain_distilled_set(DistilledSpec(source="file", format="png", path=str(tmp_path / "none")), digits,
                             ModelSpec(), tmp_path, "cpu")
    one_line(error)
    with pytest.raises(UserError, match="distilled from 'digits'"):
        obtain_distilled_set(own, bundle(name="cifar10", classes=tuple("abcdefghij"), shape=(1, 8, 8), mean=(0.0,),
                                         std=(1.0,)), ModelSpec(), tmp_path, "cpu")


def test_distillation_network_is_shallower_only_for_tiny_images():
    from dpcluster.distilled.distillers import distillation_model

    spec = DistilledSpec()
    assert distillation_model(spec, ModelSpec(), (1, 8, 8)).depth == 2  # digits: last block would see 2x2
    assert distillation_model(spec, ModelSpec(), (3, 32, 32)) == ModelSpec()
    assert distillation_model(spec, ModelSpec(name="alexnet"), (1, 8, 8)) == ModelSpec(name="alexnet")
    chosen = ModelSpec(depth=3, width=64)
    assert distillation_model(spec.replace(model=chosen), ModelSpec(), (1, 8, 8)) == chosen
