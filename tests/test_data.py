"""The data layer: loaders read the real on-disk formats exactly, fail with one-line UserErrors, and augment."""

from __future__ import annotations

import itertools
import shutil

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch.utils.data import Dataset

from dpcluster.data import DataBundle, TensorSet, load_data
from dpcluster.data.augment import augment
from dpcluster.data.imagenet import IMAGENET10, IMAGENETTE
from dpcluster.errors import UserError
from dpcluster.specs.experiment import DataSpec
from fakedata import class_color, make_cifar10, make_cifar100, make_imagefolder, numbered, shift, write_py2_pickle

CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4866, 0.4409), (0.2673, 0.2564, 0.2762)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def normalized(images_hwc: np.ndarray, mean, std) -> torch.Tensor:
    """What a loader should return for uint8 (N, H, W, 3) images, computed independently with numpy."""
    x = images_hwc.transpose(0, 3, 1, 2).astype(np.float64) / 255.0
    return torch.from_numpy((x - np.array(mean).reshape(1, 3, 1, 1)) / np.array(std).reshape(1, 3, 1, 1)).float()


def user_error(call) -> str:
    with pytest.raises(UserError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message, message
    return message


# --- digits -----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits() -> DataBundle:
    return load_data(DataSpec())


def test_digits_shapes_and_split_sizes(digits):
    assert (digits.name, digits.num_classes, digits.input_shape) == ("digits", 10, (1, 8, 8))
    assert digits.class_names == tuple("0123456789")
    assert isinstance(digits.train, TensorSet) and isinstance(digits.test, TensorSet)
    assert len(digits.train) + len(digits.test) == 1797
    assert len(digits.test) == 360  # ceil(0.2 * 1797), sklearn's rounding for the test side
    assert digits.train.x.shape == (1437, 1, 8, 8) and digits.train.x.dtype == torch.float32
    assert digits.train.y.dtype == torch.int64 and digits.test.y.shape == (360,)


def test_digits_split_is_stratified(digits):
    everything = np.bincount(load_digits().target, minlength=10)
    in_test = np.bincount(digits.test.y.numpy(), minlength=10)
    assert np.all(np.abs(in_test - 0.2 * everything) <= 1), (in_test, everything)
    assert torch.equal(torch.bincount(digits.train_labels(), minlength=10), torch.from_numpy(everything - in_test))


def test_the_cached_digits_split_is_sklearn_s_split(tmp_path, monkeypatch):
    from dpcluster.data import digits as digits_module

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    spec = DataSpec(split_seed=3, test_fraction=0.25)
    first = load_data(spec)  # made with scikit-learn, then cached
    assert not torch.equal(first.test.y[:360], load_data(DataSpec()).test.y)  # another seed, another split
    assert digits_module.split_cache_file(spec).is_relative_to(tmp_path)
    assert digits_module.split_cache_file(spec).exists()
    calls = []
    monkeypatch.setattr(digits_module, "_split_with_sklearn", lambda spec: calls.append(spec))
    again = load_data(spec)  # read from the cache: scikit-learn is not asked again
    assert not calls
    for name in ("train", "test"):
        assert torch.equal(getattr(first, name).x, getattr(again, name).x)
        assert torch.equal(getattr(first, name).y, getattr(again, name).y)
    assert len(again.test) == 450 and again.mean == first.mean


def test_digits_normalized_with_train_statistics(digits):
    assert abs(float(digits.train.x.mean())) < 1e-5
    assert abs(float(digits.train.x.std(unbiased=False)) - 1) < 1e-5
    (mean,), (std,) = digits.mean, digits.std
    # Undoing the normalization gives back the raw 0..16 pixel values of sklearn's images, all of them once.
    raw = torch.cat([digits.train.x, digits.test.x]) * std + mean
    pixels = raw * 16
    assert torch.allclose(pixels, pixels.round(), atol=1e-4)
    ours = sorted(map(tuple, pixels.round().int().view(-1, 64).tolist()))
    theirs = sorted(map(tuple, load_digits().data.astype(int).tolist()))
    assert ours == theirs


def test_digits_split_is_deterministic_and_seeded(digits):
    again = load_data(DataSpec())
    assert torch.equal(again.train.x, digits.train.x) and torch.equal(again.test.y, digits.test.y)
    other = load_data(DataSpec(split_seed=1))
    assert not torch.equal(other.test.y, digits.test.y)
    smaller = load_data(DataSpec(test_fraction=0.5))
    assert len(smaller.test) == 899


def test_digits_loader_placement_gives_datasets(digits):
    loaded = load_data(DataSpec(placement="loader"))
    assert isinstance(loaded.train, Dataset) and not isinstance(loaded.train, TensorSet)
    image, label = loaded.train[5]
    assert isinstance(label, int) and label == int(digits.train.y[5])
    assert torch.equal(image, digits.train.x[5])
    assert torch.equal(loaded.train_labels(), digits.train_labels())


def test_tensorset_basics(digits):
    s = digits.test
    assert len(s) == 360
    assert s.nbytes() == 360 * 64 * 4 + 360 * 8
    moved = s.to("cpu")
    assert torch.equal(moved.x, s.x) and torch.equal(moved.y, s.y)


def test_train_images_of_class(digits):
    label = 3
    members = digits.train.x[digits.train.y == label]
    picked = digits.train_images_of_class(label, 7, torch.Generator().manual_seed(0))
    assert picked.shape == (7, 1, 8, 8)
    # Each picked image is a training image of that class, and no image is picked twice.
    where = [int(torch.nonzero((members == image).flatten(1).all(1)).flatten()[0]) for image in picked]
    assert len(set(where)) == 7
    again = digits.train_images_of_class(label, 7, torch.Generator().manual_seed(0))
    assert torch.equal(picked, again)
    other = digits.train_images_of_class(label, 7, torch.Generator().manual_seed(1))
    assert not torch.equal(picked, other)
    # More than the class holds: every image of the class appears.
    many = digits.train_images_of_class(label, len(members) + 5, torch.Generator().manual_seed(0))
    assert many.shape[0] == len(members) + 5
    assert torch.equal(torch.unique(many, dim=0), torch.unique(members, dim=0))
    # The same through a Dataset (placement "loader").
    loaded = load_data(DataSpec(placement="loader"))
    assert torch.equal(loaded.train_images_of_class(label, 7, torch.Generator().manual_seed(0)), picked)


# --- CIFAR ------------------------------------------------------------------------------------------------------

def test_cifar10_round_trips_pixels_and_labels(tmp_path):
    written = make_cifar10(tmp_path, n_train_per_batch=3, n_test=4)
    data = load_data(DataSpec(name="cifar10", root=str(tmp_path)))
    assert (data.num_classes, data.input_shape) == (10, (3, 32, 32))
    assert data.mean == CIFAR10_MEAN and data.std == CIFAR10_STD
    assert data.class_names == tuple(written["label_names"])
    assert isinstance(data.train, TensorSet) and data.train.x.shape == (15, 3, 32, 32)
    assert data.train.x.dtype == torch.float32 and data.train.x.is_contiguous()
    assert data.train.y.tolist() == written["train_y"] and data.test.y.tolist() == written["test_y"]
    torch.testing.assert_close(data.train.x, normalized(written["train_x"], CIFAR10_MEAN, CIFAR10_STD))
    torch.testing.assert_close(data.test.x, normalized(written["test_x"], CIFAR10_MEAN, CIFAR10_STD))


def test_cifar10_known_pixels_land_where_expected(tmp_path):
    make_cifar10(tmp_path, n_train_per_batch=2, n_test=2)
    image = np.zeros((32, 32, 3), dtype=np.uint8)
    image[0, 1, 0] = 255  # red at row 0, column 1
    image[2, 0, 1] = 51   # green at row 2, column 0
    rows = image.transpose(2, 0, 1).reshape(1, 3072)
    write_py2_pickle(tmp_path / "cifar-10-batches-py" / "data_batch_1", {"labels": [7], "data": rows})
    data = load_data(DataSpec(name="cifar10", root=str(tmp_path)))
    x = data.train.x[0]
    assert data.train.y[0] == 7 and len(data.train) == 1 + 4 * 2
    assert x[0, 0, 1].item() == pytest.approx((1.0 - 0.4914) / 0.2023, abs=1e-5)
    assert x[1, 2, 0].item() == pytest.approx((0.2 - 0.4822) / 0.1994, abs=1e-5)
    assert x[2, 0, 0].item() == pytest.approx(-0.4465 / 0.2010, abs=1e-5)
    assert x[0, 1, 0].item() == pytest.approx(-0.4914 / 0.2023, abs=1e-5)


def test_cifar100_round_trips_fine_labels(tmp_path):
    written = make_cifar100(tmp_path, n_train=6, n_test=3)
    data = load_data(DataSpec(name="cifar100", root=str(tmp_path)))
    assert data.num_classes == 100 and len(data.class_names) == 100 and data.class_names[42] == "fine_42"
    assert data.mean == CIFAR100_MEAN and data.std == CIFAR100_STD
    assert data.train.y.tolist() == written["train_y"] and data.test.y.tolist() == written["test_y"]
    torch.testing.assert_close(data.train.x, normalized(written["train_x"], CIFAR100_MEAN, CIFAR100_STD))
    torch.testing.assert_close(data.test.x, normalized(written["test_x"], CIFAR100_MEAN, CIFAR100_STD))


def test_cifar_loader_placement(tmp_path):
    written = make_cifar10(tmp_path, n_train_per_batch=2, n_test=2)
    data = load_data(DataSpec(name="cifar10", root=str(tmp_path), placement="loader"))
    assert not isinstance(data.train, TensorSet) and len(data.train) == 10 and len(data.test) == 2
    image, label = data.train[3]
    assert isinstance(label, int) and label == written["train_y"][3]
    torch.testing.assert_close(image, normalized(written["train_x"][3:4], CIFAR10_MEAN, CIFAR10_STD)[0])
    assert data.train_labels().tolist() == written["train_y"]


def test_cifar_missing_files_name_the_expected_path(tmp_path):
    missing = tmp_path / "nowhere"
    message = user_error(lambda: load_data(DataSpec(name="cifar10", root=str(missing))))
    assert str(missing / "cifar-10-batches-py" / "data_batch_1") in message and "CIFAR-10" in message
    message = user_error(lambda: load_data(DataSpec(name="cifar100", root=str(missing))))
    assert str(missing / "cifar-100-python" / "train") in message
    make_cifar10(tmp_path, n_train_per_batch=1, n_test=1)
    (tmp_path / "cifar-10-batches-py" / "test_batch").unlink()
    message = user_error(lambda: load_data(DataSpec(name="cifar10", root=str(tmp_path))))
    assert str(tmp_path / "cifar-10-batches-py" / "test_batch") in message


def test_cifar_corrupt_batch_is_a_user_error(tmp_path):
    make_cifar10(tmp_path, n_train_per_batch=2, n_test=2)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:100])  # truncated
    message = user_error(lambda: load_data(DataSpec(name="cifar10", root=str(tmp_path))))
    assert str(batch) in message
    batch.write_bytes(b"this is not a pickle at all")
    message = user_error(lambda: load_data(DataSpec(name="cifar10", root=str(tmp_path))))
    assert str(batch) in message


class _RunsCode:
    """What a crafted batch holds: unpickling it calls a function of the file's choosing."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        from pathlib import Path

        return (Path.touch, (self.marker,))


def test_a_crafted_cifar_batch_is_refused_without_running_its_code(tmp_path):
    import pickle

    make_cifar10(tmp_path, n_train_per_batch=2, n_test=2)
    marker = tmp_path / "ran"
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    batch.write_bytes(pickle.dumps({"data": _RunsCode(marker), "labels": [0]}, protocol=2))
    assert pickle.loads(batch.read_bytes()) and marker.exists(), "plain pickle would run it"
    marker.unlink()
    message = user_error(lambda: load_data(DataSpec(name="cifar10", root=str(tmp_path))))
    assert not marker.exists()
    assert str(batch) in message and "refused to unpickle" in message and "would run code" in message, message


def test_cifar_batches_that_do_not_add_up_are_one_line(tmp_path):
    written = make_cifar10(tmp_path, n_train_per_batch=2, n_test=2)
    folder = tmp_path / "cifar-10-batches-py"
    rows = written["train_x"][:2].transpose(0, 3, 1, 2).reshape(2, 3072)
    write_py2_pickle(folder / "data_batch_4", {"labels": [1], "data": rows})  # 2 images, 1 label
    message = user_error(lambda: load_data(DataSpec(name="cifar10", root=str(tmp_path))))
    assert str(folder / "data_batch_4") in message and "2 image(s) but 1 label(s)" in message
    write_py2_pickle(folder / "data_batch_4", {"labels": [1, 2], "data": rows})
    write_py2_pickle(folder / "test_batch", {"labels": [], "data": rows[:0]})  # an empty test split
    message = user_error(lambda: load_data(DataSpec(name="cifar10", root=str(tmp_path))))
    assert "test batches" in message and "hold no image" in message


# --- ImageNet subsets ---------------------------------------------------------------------------------------------

WRITTEN = ("n00000004", "n00000001", "n00000003", "n00000002")  # make_imagefolder's order: class_color index
LISTED = ("n00000003", "n00000001", "n00000004")                # the spec's order, not alphabetical; one left out


def expected_pixel(color) -> torch.Tensor:
    return torch.tensor([(c / 255 - m) / s for c, m, s in zip(color, IMAGENET_MEAN, IMAGENET_STD)])


def test_imagenet_subset_reads_listed_classes_in_list_order(tmp_path):
    make_imagefolder(tmp_path, WRITTEN, n_per_class=2, size=(20, 12))
    data = load_data(DataSpec(name="imagenet", root=str(tmp_path), classes=LISTED, resolution=8,
                              placement="device", workers=0))
    assert (data.num_classes, data.input_shape, data.class_names) == (3, (3, 8, 8), LISTED)
    assert data.mean == IMAGENET_MEAN and data.std == IMAGENET_STD
    for split in (data.train, data.test):
        assert isinstance(split, TensorSet) and split.x.shape == (6, 3, 8, 8)
        assert sorted(split.y.tolist()) == [0, 0, 1, 1, 2, 2]
        for image, label in zip(split.x, split.y.tolist()):
            # Solid colour in, solid colour out: the image's colour says which folder it came from.
            pixel = image[:, 4, 4]
            torch.testing.assert_close(image, pixel.view(3, 1, 1).expand(3, 8, 8))
            folder = WRITTEN.index(LISTED[label])
            assert any(torch.allclose(pixel, expected_pixel(class_color(folder, j)), atol=1e-5) for j in range(2))


def test_imagenet_loader_placement_matches_device(tmp_path):
    make_imagefolder(tmp_path, WRITTEN, n_per_class=2, size=(9, 14))
    spec = dict(name="imagenet", root=str(tmp_path), classes=LISTED, resolution=8, workers=0)
    device = load_data(DataSpec(**spec, placement="device"))
    for placement in ("loader", "auto"):
        lazy = load_data(DataSpec(**spec, placement=placement))
        assert not isinstance(lazy.train, TensorSet) and len(lazy.train) == 6
        assert torch.equal(lazy.train_labels(), device.train.y)
        image, label = lazy.test[1]
        assert image.shape == (3, 8, 8) and isinstance(label, int)
        torch.testing.assert_close(image, device.test.x[1])
    picked = lazy.train_images_of_class(2, 2, torch.Generator().manual_seed(0))
    assert picked.shape == (2, 3, 8, 8)
    assert torch.equal(picked, device.train_images_of_class(2, 2, torch.Generator().manual_seed(0)))


def test_imagenette_builtin_list_and_jpeg_files(tmp_path):
    make_imagefolder(tmp_path, IMAGENETTE, n_per_class=1, size=16, suffix=".JPEG")
    data = load_data(DataSpec(name="imagenette", root=str(tmp_path), resolution=8, placement="device", workers=0))
    assert data.class_names == IMAGENETTE and data.num_classes == 10
    assert data.train.y.tolist() == list(range(10))  # one image per class, folders already in list order
    torch.testing.assert_close(data.train.x[3, :, 4, 4], expected_pixel(class_color(3)), atol=0.05, rtol=0)
    assert len(IMAGENET10) == 10 and len(set(IMAGENET10)) == 10 and IMAGENET10[0] == "n02869837"


def test_imagenet_missing_folders_name_the_expected_path(tmp_path):
    missing = tmp_path / "nowhere"
    message = user_error(lambda: load_data(DataSpec(name="imagenet10", root=str(missing))))
    assert str(missing) in message
    make_imagefolder(tmp_path, LISTED[:2], n_per_class=1, size=8, splits=("train",))
    spec = DataSpec(name="imagenet", root=str(tmp_path), classes=LISTED[:2], placement="loader")
    assert str(tmp_path / "val") in user_error(lambda: load_data(spec))
    make_imagefolder(tmp_path, LISTED[:2], n_per_class=1, size=8, splits=("val",))
    load_data(spec)  # complete now
    shutil.rmtree(tmp_path / "train" / LISTED[1])
    assert str(tmp_path / "train" / LISTED[1]) in user_error(lambda: load_data(spec))
    (tmp_path / "train" / LISTED[1]).mkdir()  # present but empty
    assert LISTED[1] in user_error(lambda: load_data(spec))


# --- augmentation ------------------------------------------------------------------------------------------------



def shifts_of(out: torch.Tensor, image: torch.Tensor, pad: int) -> list[tuple[int, int]]:
    return [(dy, dx) for dy, dx in itertools.product(range(-pad, pad + 1), repeat=2)
            if torch.equal(out, shift(image, dy, dx))]


def test_augment_none_is_identity():
    x = numbered(4, 3, 8, 8)
    assert augment(x, "none", torch.Generator().manual_seed(0)) is x


def test_augment_flip_mirrors_some_samples():
    x = numbered(64, 2, 5, 6)
    out = augment(x, "flip", torch.Generator().manual_seed(0))
    same = [torch.equal(o, i) for o, i in zip(out, x)]
    mirrored = [torch.equal(o, i.flip(2)) for o, i in zip(out, x)]
    assert all(s != m for s, m in zip(same, mirrored))  # each exactly one of the two
    assert 16 < sum(mirrored) < 48
    assert torch.equal(x, numbered(64, 2, 5, 6))  # input untouched


@pytest.mark.parametrize("shape, pad", [((48, 3, 32, 32), 4), ((48, 1, 8, 8), 1), ((48, 2, 12, 10), 1)])
def test_augment_crop_shifts_each_sample(shape, pad):
    x = numbered(*shape)
    out = augment(x, "crop", torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    found = [shifts_of(o, i, pad) for o, i in zip(out, x)]
    assert all(len(f) == 1 for f in found)
    assert len({f[0] for f in found}) > 3  # the shifts differ between samples


def test_augment_crop_flip_and_determinism():
    x = numbered(32, 3, 16, 16)
    out = augment(x, "crop_flip", torch.Generator().manual_seed(3))
    for o, i in zip(out, x):
        assert shifts_of(o, i, 2) or shifts_of(o, i.flip(2), 2)
    assert torch.equal(out, augment(x, "crop_flip", torch.Generator().manual_seed(3)))
    assert not torch.equal(out, augment(x, "crop_flip", torch.Generator().manual_seed(4)))
    with pytest.raises(ValueError):
        augment(x, "rotate", torch.Generator())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_augment_on_cuda_matches_cpu():
    x = numbered(16, 3, 32, 32)
    for kind in ("flip", "crop", "crop_flip"):
        on_gpu = augment(x.cuda(), kind, torch.Generator().manual_seed(0))
        assert on_gpu.device.type == "cuda"
        assert torch.equal(on_gpu.cpu(), augment(x, kind, torch.Generator().manual_seed(0)))


def test_imagenet_undecodable_image_is_a_user_error(tmp_path):
    make_imagefolder(tmp_path, LISTED[:2], n_per_class=2, size=8)
    (tmp_path / "val" / LISTED[0] / "img_1.png").write_bytes(b"not an image")
    spec = DataSpec(name="imagenet", root=str(tmp_path), classes=LISTED[:2], placement="device", workers=0)
    assert str(tmp_path / "val" / LISTED[0] / "img_1.png") in user_error(lambda: load_data(spec))
