"""The data sets of the user's and MNIST's: mnist and fashion_mnist (IDX files), tensors (.pt / .npz arrays), folder
(an ImageFolder tree) and a package.module:function factory. Every file here is written by the test in the exact
format; every mistake is one line; a run on each writes its rows under the label's dataset= partition."""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dpcluster.data import TensorSet, load_data
from dpcluster.errors import SpecError, UserError
from dpcluster.specs import DataSpec, ExperimentSpec, ModelSpec, PruningSpec, TrainingSpec
from test_data import user_error

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
FASHION_MEAN, FASHION_STD = 0.2860, 0.3530


def spec_error(**fields) -> SpecError:
    with pytest.raises(SpecError) as info:
        DataSpec.from_dict(fields)
    assert "\n" not in str(info.value)
    return info.value


def assert_normalized(x: torch.Tensor) -> None:
    """Per channel, mean ~0 and (population) std ~1."""
    flat = x.transpose(0, 1).reshape(x.shape[1], -1).double()
    assert torch.allclose(flat.mean(dim=1), torch.zeros(x.shape[1], dtype=torch.float64), atol=1e-4)
    assert torch.allclose(flat.std(dim=1, unbiased=False), torch.ones(x.shape[1], dtype=torch.float64), atol=1e-4)


# --- IDX files: mnist and fashion_mnist -----------------------------------------------------------------------

IDX_NAMES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """The IDX encoding of a uint8 array, written here from the format's description (not dpcluster's writer)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    magic = magic if magic is not None else 0x0800 | array.ndim
    return struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_idx_file(path: Path, data: bytes, gz: bool) -> Path:
    path = path.with_name(path.name + ".gz") if gz else path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def make_idx_set(folder: Path, gz: bool, n_train: int = 30, n_test: int = 10, seed: int = 0) -> dict:
    """The four files in ``folder``; returns the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        rng.shuffle(labels)
        image_name, label_name = IDX_NAMES[split]
        write_idx_file(folder / image_name, idx_bytes(images), gz)
        write_idx_file(folder / label_name, idx_bytes(labels), gz)
        arrays[split] = (images, labels)
    return arrays


@pytest.mark.parametrize("name, folder, mean, std", [
    ("mnist", "MNIST", MNIST_MEAN, MNIST_STD), ("fashion_mnist", "FashionMNIST", FASHION_MEAN, FASHION_STD)])
@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("torchvision_layout", [False, True], ids=["in-root", "raw"])
def test_idx_files_are_read_in_both_layouts(tmp_path, name, folder, mean, std, gz, torchvision_layout):
    where = tmp_path / folder / "raw" if torchvision_layout else tmp_path
    arrays = make_idx_set(where, gz)
    data = load_data(DataSpec(name=name, root=str(tmp_path)))
    assert (data.name, data.num_classes, data.input_shape) == (name, 10, (1, 28, 28))
    assert (data.mean, data.std) == ((mean,), (std,))
    assert len(data.class_names) == 10
    for split, tensors in (("train", data.train), ("test", data.test)):
        images, labels = arrays[split]
        assert isinstance(tensors, TensorSet) and tensors.x.dtype == torch.float32
        assert tensors.x.shape == (len(images), 1, 28, 28)
        assert torch.equal(tensors.y, torch.from_numpy(labels.astype(np.int64)))
        expected = (torch.from_numpy(images).float().unsqueeze(1) / 255.0 - mean) / std
        assert torch.allclose(tensors.x, expected, atol=1e-6)


def test_mirror_safety_of_the_idx_sets(tmp_path):
    make_idx_set(tmp_path, gz=True)
    assert not load_data(DataSpec(name="mnist", root=str(tmp_path))).mirror_safe  # a mirrored 2 is no digit
    assert load_data(DataSpec(name="fashion_mnist", root=str(tmp_path))).mirror_safe


def test_plain_files_win_over_gzipped_ones(tmp_path):
    arrays = make_idx_set(tmp_path, gz=False, seed=1)
    make_idx_set(tmp_path, gz=True, seed=2)
    data = load_data(DataSpec(name="mnist", root=str(tmp_path)))
    assert torch.equal(data.train.y, torch.from_numpy(arrays["train"][1].astype(np.int64)))


def test_idx_mistakes_are_one_line_naming_the_file(tmp_path):
    def load(root=tmp_path):
        return load_data(DataSpec(name="fashion_mnist", root=str(root)))

    message = user_error(lambda: load(tmp_path / "empty"))
    assert "Fashion-MNIST not found" in message and "train-images-idx3-ubyte" in message

    make_idx_set(tmp_path, gz=False)
    images = tmp_path / "train-images-idx3-ubyte"
    labels = tmp_path / "train-labels-idx1-ubyte"
    good_images, good_labels = images.read_bytes(), labels.read_bytes()

    images.write_bytes(good_labels)  # the labels file where the images should be: the wrong magic number
    message = user_error(load)
    assert str(images) in message and "magic number 0x00000801" in message and "0x00000803" in message

    images.write_bytes(b"PK\x03\x04" + good_images[4:])  # not an IDX file at all
    assert str(images) in user_error(load) and "not an IDX file" in user_error(load)

    images.write_bytes(good_images[:-5])  # cut short
    message = user_error(load)
    assert str(images) in message and "cut short" in message

    images.write_bytes(good_images[:10])  # cut short inside the header
    assert "cut short in its header" in user_error(load)

    images.write_bytes(good_images + b"\0")
    assert "longer than its header says" in user_error(load)

    images.write_bytes(good_images)
    labels.write_bytes(idx_bytes(np.zeros(29, dtype=np.uint8)))  # 30 images, 29 labels
    message = user_error(load)
    assert "30 image(s)" in message and "29 label(s)" in message and str(labels) in message

    labels.write_bytes(idx_bytes(np.full(30, 10, dtype=np.uint8)))
    message = user_error(load)
    assert str(labels) in message and "label 10" in message and "0..9" in message

    labels.write_bytes(good_labels)
    labels.rename(tmp_path / "train-labels-idx1-ubyte.gz")  # named .gz but not gzipped
    message = user_error(load)
    assert "train-labels-idx1-ubyte.gz" in message and "gzip" in message
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(good_labels)[:-8])  # a gzip cut short
    assert "not a complete gzip file" in user_error(load)


def _real_fashion_mnist() -> DataSpec:
    """The files Debian's dataset-fashion-mnist installs. Skipped without them, unless
    DPCLUSTER_REQUIRE_FASHION_MNIST is set (as CI does): then their absence fails."""
    if not FASHION_MNIST.is_dir():
        if os.environ.get("DPCLUSTER_REQUIRE_FASHION_MNIST", "").strip().lower() not in ("", "0", "false", "no"):
            pytest.fail(f"DPCLUSTER_REQUIRE_FASHION_MNIST is set but {FASHION_MNIST} is missing "
                        f"(apt-get install dataset-fashion-mnist)")
        pytest.skip(f"{FASHION_MNIST} not installed (Debian's dataset-fashion-mnist)")
    return DataSpec(name="fashion_mnist", root=str(FASHION_MNIST))


def test_a_round_of_imp_on_the_real_fashion_mnist(tmp_path):
    from dpcluster.methods.engine import Inputs, run_experiment

    spec = ExperimentSpec(method="imp", data=_real_fashion_mnist(), model=ModelSpec(width=8, depth=2),
                          pruning=PruningSpec(rounds=1), training=TrainingSpec(epochs=1, batch_size=256, lr=0.05))
    (record,) = run_experiment(spec, Inputs(load_data(spec.data)), tmp_path / "imp", torch.device("cpu"),
                               validate=True)
    # One epoch of a width-8 ConvNet over the 60,000 images: the 20%-pruned subnetwork is well past chance.
    assert record.sparsity == pytest.approx(0.2, abs=1e-3) and record.test_accuracy > 0.7
    assert record.inner_examples == 60_000 and record.dataset == "fashion_mnist"


def test_the_real_fashion_mnist():
    data = load_data(_real_fashion_mnist())
    assert (len(data.train), len(data.test), data.num_classes, data.input_shape) == (60000, 10000, 10, (1, 28, 28))
    # The first training image is an ankle boot (9) and the first test image too; every class has 6,000 / 1,000.
    assert int(data.train.y[0]) == 9 and int(data.test.y[0]) == 9
    assert data.class_names[9] == "Ankle boot"
    assert torch.equal(torch.bincount(data.train.y), torch.full((10,), 6000))
    assert torch.equal(torch.bincount(data.test.y), torch.full((10,), 1000))
    # The constants are the training split's own statistics.
    assert abs(float(data.train.x.mean())) < 1e-3 and abs(float(data.train.x.std()) - 1) < 1e-3


# --- tensors: .pt and .npz arrays ------------------------------------------------------------------------------

def arrays(n: int, shape_chw=(3, 6, 5), classes: int = 3, seed: int = 0, dtype=np.uint8):
    rng = np.random.default_rng(seed)
    if dtype == np.uint8:
        x = rng.integers(0, 256, size=(n, *shape_chw), dtype=np.uint8)
    else:
        x = rng.random((n, *shape_chw)).astype(dtype)
    y = np.arange(n) % classes
    return x, y


def write_tensors(root: Path, fmt: str, train, test, layout="nchw") -> None:
    root.mkdir(parents=True, exist_ok=True)
    for split, (x, y) in (("train", train), ("test", test)):
        if layout == "nhwc" and x.ndim == 4:
            x = x.transpose(0, 2, 3, 1)
        if fmt == "pt":
            torch.save({"x": torch.from_numpy(np.ascontiguousarray(x)), "y": torch.from_numpy(y)},
                       root / f"{split}.pt")
        else:
            np.savez(root / f"{split}.npz", x=x, y=y)


def tensors_spec(root: Path, **fields) -> DataSpec:
    return DataSpec(name="tensors", root=str(root), label="mine", **fields)


@pytest.mark.parametrize("fmt", ["pt", "npz"])
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_tensors_in_both_formats_and_layouts(tmp_path, fmt, layout):
    train, test = arrays(24, seed=0), arrays(9, seed=1)
    write_tensors(tmp_path, fmt, train, test, layout)
    data = load_data(tensors_spec(tmp_path))
    assert (data.name, data.num_classes, data.input_shape) == ("tensors", 3, (3, 6, 5))
    assert data.class_names == ("0", "1", "2") and not data.mirror_safe
    assert data.train.x.shape == (24, 3, 6, 5) and data.test.x.shape == (9, 3, 6, 5)
    assert torch.equal(data.train.y, torch.from_numpy(train[1]).long())
    assert torch.equal(data.test.y, torch.from_numpy(test[1]).long())
    assert_normalized(data.train.x)
    # Both splits with the training split's statistics, computed independently.
    pixels = train[0].astype(np.float64) / 255.0
    mean, std = pixels.mean(axis=(0, 2, 3)), pixels.std(axis=(0, 2, 3))
    assert np.allclose(data.mean, mean) and np.allclose(data.std, std)
    expected = (test[0].astype(np.float64) / 255.0 - mean.reshape(1, 3, 1, 1)) / std.reshape(1, 3, 1, 1)
    assert torch.allclose(data.test.x, torch.from_numpy(expected).float(), atol=1e-5)


def test_tensors_float_grayscale_and_forced_layout(tmp_path):
    train, test = arrays(12, shape_chw=(7, 7), classes=2, dtype=np.float32), \
        arrays(4, shape_chw=(7, 7), classes=2, seed=3, dtype=np.float32)
    write_tensors(tmp_path / "gray", "npz", train, test)  # (N, H, W): one channel
    data = load_data(tensors_spec(tmp_path / "gray"))
    assert data.input_shape == (1, 7, 7) and data.num_classes == 2
    assert_normalized(data.train.x)
    expected = (train[0][:, None].astype(np.float64) - data.mean[0]) / data.std[0]
    assert torch.allclose(data.train.x, torch.from_numpy(expected).float(), atol=1e-5)

    # (N, 3, 4, 3): told from the shape it is 3 channels of 4x3; data.layout = "nhwc" reads 3 channels of 3x4.
    train, test = arrays(6, shape_chw=(3, 4, 3)), arrays(3, shape_chw=(3, 4, 3), seed=1)
    write_tensors(tmp_path / "odd", "pt", train, test)
    assert load_data(tensors_spec(tmp_path / "odd")).input_shape == (3, 4, 3)
    assert load_data(tensors_spec(tmp_path / "odd", layout="auto")).input_shape == (3, 4, 3)
    data = load_data(tensors_spec(tmp_path / "odd", layout="nhwc"))
    assert data.input_shape == (3, 3, 4)
    raw = torch.from_numpy(train[0]).permute(0, 3, 1, 2).double() / 255.0
    assert torch.allclose(data.train.x.double() * torch.tensor(data.std).view(1, 3, 1, 1) +
                          torch.tensor(data.mean).view(1, 3, 1, 1), raw, atol=1e-5)


def test_tensor_mistakes_are_one_line(tmp_path):
    def load(**fields):
        return load_data(tensors_spec(tmp_path, **fields))

    assert "no train.pt and test.pt" in user_error(load)
    train, test = arrays(12), arrays(6, seed=1)
    torch.save({"x": torch.from_numpy(train[0]), "y": torch.from_numpy(train[1])}, tmp_path / "train.pt")
    message = user_error(load)
    assert str(tmp_path / "test.pt") in message and "not found" in message

    torch.save({"x": torch.from_numpy(test[0])}, tmp_path / "test.pt")
    message = user_error(load)
    assert str(tmp_path / "test.pt") in message and "'y'" in message

    torch.save([torch.from_numpy(test[0])], tmp_path / "test.pt")
    assert "expected a dict" in user_error(load)

    torch.save({"x": torch.from_numpy(test[0]), "y": torch.from_numpy(test[1][:5])}, tmp_path / "test.pt")
    message = user_error(load)
    assert "6 image(s)" in message and "5 label(s)" in message

    torch.save({"x": torch.from_numpy(test[0][:, :, :4]), "y": torch.from_numpy(test[1])}, tmp_path / "test.pt")
    message = user_error(load)
    assert "3x6x5" in message and "3x4x5" in message

    torch.save({"x": torch.from_numpy(test[0]), "y": torch.from_numpy(test[1] + 1)}, tmp_path / "test.pt")
    assert "test label 3 is outside 0..2" in user_error(load)

    torch.save({"x": torch.from_numpy(test[0]), "y": torch.from_numpy(test[1]).float()}, tmp_path / "test.pt")
    assert "labels must be integers" in user_error(load)

    torch.save({"x": torch.from_numpy(test[0]).int(), "y": torch.from_numpy(test[1])}, tmp_path / "test.pt")
    assert "int32 values" in user_error(load)

    (tmp_path / "test.pt").write_bytes(b"not a torch file")
    assert "cannot read as tensors saved by torch.save" in user_error(load)

    # A class of 0..C-1 with no training example (labels 0, 2 only).
    torch.save({"x": torch.from_numpy(train[0]), "y": torch.from_numpy(train[1] // 2 * 2)}, tmp_path / "train.pt")
    torch.save({"x": torch.from_numpy(test[0]), "y": torch.zeros(6, dtype=torch.int64)}, tmp_path / "test.pt")
    assert "class 1 of 0..2 has no training example" in user_error(load)

    np.savez(tmp_path / "train.npz", x=train[0], y=train[1])
    assert "both .pt and .npz" in user_error(load)
    for split in ("train", "test"):
        (tmp_path / f"{split}.pt").unlink()
    np.savez(tmp_path / "test.npz", x=np.array(["a", "b"]), y=np.array([0, 1]))
    assert "'x' holds <U1 values, not numbers" in user_error(load)
    np.savez(tmp_path / "test.npz", x=np.array([{"a": 1}, None], dtype=object), y=np.array([0, 1]))
    assert "objects are never unpickled" in user_error(load)
    np.savez(tmp_path / "test.npz", images=test[0], y=test[1])
    assert "no array 'x'" in user_error(load)
    np.savez(tmp_path / "test.npz", x=test[0].astype(np.float32) * np.nan, y=test[1])
    assert "NaN" in user_error(load)


# --- folder: an ImageFolder tree ---------------------------------------------------------------------------------

def write_images(folder: Path, count: int, size=(10, 14), mode="RGB", seed=0, suffix=".png") -> None:
    """``count`` random images of ``size`` (width, height) in ``mode``."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    bands = len(Image.new(mode, (1, 1)).getbands())
    for i in range(count):
        pixels = rng.integers(0, 256, size=(size[1], size[0], bands), dtype=np.uint8)
        Image.fromarray(pixels[:, :, 0] if bands == 1 else pixels, mode).save(folder / f"img_{i}{suffix}")


def folder_spec(root: Path, **fields) -> DataSpec:
    return DataSpec.from_dict({"name": "folder", "root": str(root), "label": "pets", "resolution": 8,
                               "workers": 0, **fields})


def test_a_folder_with_val(tmp_path):
    for split, n in (("train", 4), ("val", 2)):
        for i, name in enumerate(("dog", "cat", "bird")):
            write_images(tmp_path / split / name, n, seed=10 * i + n)
    data = load_data(folder_spec(tmp_path))
    assert (data.name, data.num_classes, data.input_shape) == ("folder", 3, (3, 8, 8))
    assert data.class_names == ("bird", "cat", "dog")  # sorted, as ImageFolder
    assert len(data.train) == 12 and len(data.test) == 6
    assert torch.equal(data.train.y, torch.tensor([0] * 4 + [1] * 4 + [2] * 4))
    assert torch.equal(data.test.y, torch.tensor([0] * 2 + [1] * 2 + [2] * 2))
    assert_normalized(data.train.x)
    assert data.train.x.dtype == torch.float32 and not data.mirror_safe


def test_folder_images_are_fitted_and_keep_their_channels(tmp_path):
    # A 10x14 (w x h) grayscale image: scaled to cover 8x8 (8 wide, 11 high), then centre-cropped.
    for i, name in enumerate(("a", "b")):
        write_images(tmp_path / "train" / name, 3, mode="L", seed=i)
        write_images(tmp_path / "val" / name, 1, mode="L", seed=5 + i)
    data = load_data(folder_spec(tmp_path))
    assert data.input_shape == (1, 8, 8) and len(data.mean) == 1
    with Image.open(tmp_path / "train" / "a" / "img_0.png") as image:
        fitted = np.asarray(image.resize((8, 11), Image.Resampling.BILINEAR).crop((0, 1, 8, 9)), dtype=np.float64)
    restored = data.train.x[0, 0].double() * data.std[0] + data.mean[0]
    assert torch.allclose(restored, torch.from_numpy(fitted / 255.0), atol=1e-5)
    # Not square: data.size = [height, width].
    data = load_data(folder_spec(tmp_path, size=[6, 12]))
    assert data.input_shape == (1, 6, 12) and data.train.x.shape == (6, 1, 6, 12)


def test_a_folder_without_val_is_split_stratified_and_seeded(tmp_path):
    for name, n in (("a", 10), ("b", 5), ("c", 1)):
        write_images(tmp_path / "train" / name, n, size=(8, 8), seed=n)
    data = load_data(folder_spec(tmp_path, test_fraction=0.2))
    # round(n * 0.2) of each class, keeping at least one in training.
    assert torch.equal(torch.bincount(data.test.y, minlength=3), torch.tensor([2, 1, 0]))
    assert torch.equal(torch.bincount(data.train.y, minlength=3), torch.tensor([8, 4, 1]))
    assert_normalized(data.train.x)

    from dpcluster.data.folder import stratified_split

    labels = [0] * 10 + [1] * 5 + [2]
    train, test = stratified_split(labels, 0.2, 0)
    assert sorted(train + test) == list(range(16)) and not set(train) & set(test)
    assert stratified_split(labels, 0.2, 0) == (train, test)
    assert any(stratified_split(labels, 0.2, seed)[1] != test for seed in range(1, 5))
    # The same images: the split is of the files, not their order on disk.
    again = load_data(folder_spec(tmp_path, test_fraction=0.2))
    assert torch.equal(again.test.x, data.test.x)


def test_folder_mistakes_are_one_line(tmp_path):
    def load(**fields):
        return load_data(folder_spec(tmp_path, **fields))

    message = user_error(load)
    assert str(tmp_path / "train") in message and "no folder" in message

    write_images(tmp_path / "train" / "a", 2)
    (tmp_path / "train" / "b").mkdir()
    message = user_error(load)
    assert "Found no valid file for the classes b" in message and str(tmp_path / "train") in message

    write_images(tmp_path / "train" / "b", 2, seed=1)
    write_images(tmp_path / "val" / "a", 1)
    write_images(tmp_path / "val" / "c", 1)
    message = user_error(load)
    assert "only in train/: b" in message and "only in val/: c" in message

    (tmp_path / "val" / "c").rename(tmp_path / "val" / "b")
    write_images(tmp_path / "train" / "b", 1, mode="L", seed=2, suffix=".gray.png")
    message = user_error(load)
    assert "different kinds" in message
    assert str(tmp_path / "train" / "a" / "img_0.png") in message and "img_0.gray.png" in message

    (tmp_path / "train" / "b" / "img_0.gray.png").write_bytes(b"not a png")
    message = user_error(load)
    assert "img_0.gray.png" in message and "cannot read as an image" in message
    (tmp_path / "train" / "b" / "img_0.gray.png").unlink()

    # A file cut short decodes only part-way: named when it is decoded.
    good = tmp_path / "train" / "a" / "img_0.png"
    good.write_bytes(good.read_bytes()[:-60])
    message = user_error(load)
    assert str(good) in message


def test_folder_decoding_with_workers(tmp_path):
    for i, name in enumerate(("a", "b")):
        write_images(tmp_path / "train" / name, 70, size=(8, 8), seed=i)
    data = load_data(folder_spec(tmp_path, workers=2))
    assert len(data.train) + len(data.test) == 140
    serial = load_data(folder_spec(tmp_path, workers=0))
    assert torch.equal(data.train.x, serial.train.x)
    bad = tmp_path / "train" / "b" / "img_3.png"
    bad.write_bytes(bad.read_bytes()[:-60])
    message = user_error(lambda: load_data(folder_spec(tmp_path, workers=2)))
    assert str(bad) in message


# --- a factory: package.module:function ----------------------------------------------------------------------

FACTORY = '''
import numpy
import torch

class Items:
    """A Dataset without torch's base class: len and indexing are enough."""
    def __init__(self, n, channels, size, classes, uint8):
        g = torch.Generator().manual_seed(n)
        if uint8:
            self.x = torch.randint(0, 256, (n, channels, size, size), generator=g, dtype=torch.uint8)
        else:
            self.x = torch.rand((n, channels, size, size), generator=g)
        self.y = [i % classes for i in range(n)]
        self.classes = [f"class{c}" for c in range(classes)]
    def __len__(self):
        return len(self.y)
    def __getitem__(self, i):
        return self.x[i], self.y[i]

def make(n=12, channels=2, size=8, classes=3, uint8=False):
    return Items(n, channels, size, classes, uint8), Items(n // 2 + 1, channels, size, classes, uint8), classes

def no_options():
    train = Items(6, 1, 8, 2, True)
    train.y = list(numpy.arange(6) % 2)  # numpy's integers are labels too
    return train, Items(4, 1, 8, 2, True), 2

def returns(what):
    items = Items(6, 1, 8, 2, True)
    return {
        "list": [items, items, 2],
        "pair": (items, items),
        "classes": (items, items, "2"),
        "dataset": (items, 5, 2),
        "image": ([("not an image", 0)], items, 2),
        "label": ([(items.x[0], "zero")], items, 2),
        "shape": ([(items.x[0], 0), (items.x[1][:, :4], 1)], items, 2),
        "range": (items, items, 1),
        "empty": ([], items, 2),
    }[what]

def fails():
    raise RuntimeError("the data server is down")

not_a_function = 3
'''


@pytest.fixture
def factory_module(tmp_path, monkeypatch):
    """A module of the user's, importable as ``name``, written to tmp_path (a name of its own per test, so no
    earlier import is reused)."""
    name = f"userdata_{abs(hash(str(tmp_path))) % 10**8}"
    (tmp_path / f"{name}.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def factory_spec(module: str, function: str = "make", **fields) -> DataSpec:
    return DataSpec.from_dict({"name": f"{module}:{function}", "label": "mine", **fields})


def test_a_factory_with_options(factory_module):
    data = load_data(factory_spec(factory_module, options={"n": 15, "channels": 3, "uint8": True}))
    assert (data.name, data.num_classes, data.input_shape) == (f"{factory_module}:make", 3, (3, 8, 8))
    assert data.class_names == ("class0", "class1", "class2") and not data.mirror_safe
    assert len(data.train) == 15 and len(data.test) == 8
    assert torch.equal(data.train.y, torch.arange(15) % 3)
    assert_normalized(data.train.x)
    module = sys.modules[factory_module]
    raw = module.make(n=15, channels=3, uint8=True)[0].x.double() / 255.0
    assert torch.allclose(data.train.x.double() * torch.tensor(data.std).view(1, 3, 1, 1) +
                          torch.tensor(data.mean).view(1, 3, 1, 1), raw, atol=1e-5)
    data = load_data(factory_spec(factory_module, "no_options"))
    assert data.input_shape == (1, 8, 8) and data.num_classes == 2
    assert torch.equal(data.train.y, torch.tensor([0, 1, 0, 1, 0, 1]))


def test_factory_mistakes_are_one_line(factory_module):
    def message(function="make", **fields):
        return user_error(lambda: load_data(factory_spec(factory_module, function, **fields)))

    assert "cannot import" in user_error(lambda: load_data(factory_spec("no_such_module_here")))
    assert "has no 'nowhere'" in message("nowhere")
    assert "is not a function" in message("not_a_function")
    assert "the factory raised RuntimeError: the data server is down" in message("fails")
    assert "unexpected keyword argument 'colour'" in message(options={"colour": "red"})
    for what, expected in (("list", "returned a list, not (train_dataset, test_dataset, num_classes)"),
                           ("pair", "returned a tuple of 2"), ("classes", "num_classes is '2'"),
                           ("dataset", "test_dataset is a int, not a torch Dataset"),
                           ("image", "the image is a str, not a (C, H, W) tensor"),
                           ("label", "the label is 'zero', not an int"),
                           ("shape", "train_dataset[1]: the image is [1, 4, 8], but item 0's is [1, 8, 8]"),
                           ("range", "training label 1 is outside 0..0"), ("empty", "train_dataset is empty")):
        text = message("returns", options={"what": what})
        assert expected in text and f"{factory_module}:returns" in text, (what, text)


# --- the specs: label, partition, fields only some data sets read --------------------------------------------

def test_user_data_needs_a_label_of_plain_characters():
    for fields in ({"name": "folder", "root": "/x"}, {"name": "tensors", "root": "/x"}, {"name": "pkg.mod:fn"}):
        assert spec_error(**fields).key == "label"
    assert "letters, digits" in str(spec_error(name="folder", root="/x", label="my pets"))
    assert "built-in data set" in str(spec_error(name="folder", root="/x", label="cifar10"))
    assert spec_error(name="pkg.mod:fn:x", label="a").key == "name"
    assert spec_error(name="nope").key == "name"
    assert DataSpec(name="folder", root="/x", label="pets").partition_name == "pets"
    assert DataSpec(name="cifar10", root="/x").partition_name == "cifar10"
    assert DataSpec(name="cifar10", root="/x", label="cifar10-c").partition_name == "cifar10-c"


def test_fields_only_some_data_sets_read():
    assert spec_error(name="digits", layout="nchw").key == "layout"
    assert spec_error(name="folder", root="/x", label="a", layout="nchw").key == "layout"
    assert spec_error(name="tensors", root="/x", label="a", size=[4, 4]).key == "size"
    assert spec_error(name="tensors", root="/x", label="a", options={"n": 1}).key == "options"
    assert spec_error(name="tensors", root="/x", label="a", layout="hwc").key == "layout"
    assert spec_error(name="folder", root="/x", label="a", size=[4]).key == "size"
    assert DataSpec.from_dict({"name": "m:f", "label": "a", "options": {"n": 1, "x": [1, 2]}}).options.as_dict() == \
        {"n": 1, "x": [1, 2]}


def test_the_label_enters_the_id_and_unset_fields_do_not():
    spec = ExperimentSpec(data=DataSpec(name="folder", root="/x", label="pets"))
    other = spec.replace(data=spec.data.replace(label="cars"))
    assert spec.experiment_id != other.experiment_id
    assert ExperimentSpec().data.identity_dict().keys().isdisjoint({"label", "layout", "size", "options"})
    # Saved and loaded as TOML, options and all.
    data = DataSpec.from_dict({"name": "m:f", "label": "a", "options": {"n": 1}})
    assert DataSpec.from_toml(data.to_toml()) == data
    arrays = DataSpec(name="tensors", root="/x", label="a")
    assert arrays.replace(layout="auto") == arrays  # "auto" is unset


def test_checking_user_data_specs_loads_no_torch():
    code = textwrap.dedent("""
        import sys
        from dpcluster.specs import DataSpec
        DataSpec(name="folder", root="/x", label="a")
        DataSpec(name="tensors", root="/x", label="a", layout="nhwc")
        DataSpec.from_dict({"name": "pkg.mod:fn", "label": "a", "options": {"n": 1}})
        DataSpec(name="fashion_mnist", root="/x")
        assert "torch" not in sys.modules, "torch was imported"
    """)
    subprocess.run([sys.executable, "-c", code], check=True)


# --- end to end: a run on each writes its rows under the label -----------------------------------------------

def run_on(tmp_path: Path, data: DataSpec, capsys) -> Path:
    from dpcluster.cli.main import main
    from dpcluster.results.levels import level_records, read_levels

    spec = ExperimentSpec(data=data, model=ModelSpec(width=8), pruning=PruningSpec(rounds=1),
                          training=TrainingSpec(epochs=1, batch_size=16))
    config = tmp_path / "spec.toml"
    spec.save(config)
    out = tmp_path / "out"
    code = main(["run", "--config", str(config), "--methods", "imp", "--seeds", "0", "--rounds", "1",
                 "--out", str(out), "--device", "cpu"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    partitions = sorted(p.relative_to(out / "results").as_posix() for p in (out / "results").glob("*/*/*"))
    assert partitions == [f"dataset={data.partition_name}/model=convnet/method=imp"]
    levels = level_records(read_levels(out / "results"))
    assert [(r.method, r.round, r.dataset) for r in levels] == [("imp", 1, data.partition_name)]
    assert levels[0].test_accuracy is not None
    return out


def test_run_on_fashion_mnist_files(tmp_path, capsys):
    make_idx_set(tmp_path / "data" / "FashionMNIST" / "raw", gz=True, n_train=40, n_test=10)
    run_on(tmp_path, DataSpec(name="fashion_mnist", root=str(tmp_path / "data")), capsys)


def test_run_on_tensors(tmp_path, capsys):
    write_tensors(tmp_path / "data", "npz", arrays(40, shape_chw=(3, 8, 8)), arrays(10, shape_chw=(3, 8, 8), seed=1),
                  layout="nhwc")
    run_on(tmp_path, DataSpec(name="tensors", root=str(tmp_path / "data"), label="my-arrays"), capsys)


def test_run_on_a_folder(tmp_path, capsys):
    for i, name in enumerate(("a", "b")):
        write_images(tmp_path / "data" / "train" / name, 12, size=(9, 9), seed=i)
    run_on(tmp_path, folder_spec(tmp_path / "data"), capsys)


def test_run_on_a_factory(tmp_path, factory_module, capsys):
    run_on(tmp_path, factory_spec(factory_module, options={"n": 40}), capsys)


def test_a_run_on_missing_user_data_fails_in_one_line_writing_nothing(tmp_path, capsys):
    from dpcluster.cli.main import main

    for name, data in (("folder", folder_spec(tmp_path / "nowhere")),
                       ("tensors", tensors_spec(tmp_path / "nowhere"))):
        config = tmp_path / f"{name}.toml"
        ExperimentSpec(data=data, model=ModelSpec(width=8)).save(config)
        out = tmp_path / f"out-{name}"
        code = main(["run", "--config", str(config), "--methods", "imp", "--rounds", "1", "--out", str(out),
                     "--device", "cpu"])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("dpcluster: error:") and err.count("\n") == 1, err
        assert str(tmp_path / "nowhere") in err
        assert not out.exists()
    code = main(["run", "--data", "folder", "--data-root", str(tmp_path), "--out", str(tmp_path / "out"),
                 "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "data.label" in err and err.count("\n") == 1, err


def test_a_sweep_holds_two_data_sets_of_the_user_s_side_by_side(tmp_path, factory_module):
    from dpcluster.sweeps.coordinator import run_sweep
    from dpcluster.sweeps.backends import LocalBackend
    from dpcluster.sweeps.graph import expand
    from dpcluster.sweeps.spec import SweepSpec
    from dpcluster.results.levels import read_levels

    for i, name in enumerate(("a", "b")):
        write_images(tmp_path / "flowers" / "train" / name, 12, size=(9, 9), seed=i)
    write_tensors(tmp_path / "arrays", "npz", arrays(40, shape_chw=(3, 8, 8)), arrays(10, shape_chw=(3, 8, 8), seed=1))
    make_idx_set(tmp_path / "idx", gz=True, n_train=40, n_test=10)
    sweep = SweepSpec.from_dict({
        "name": "mine", "methods": ["dense", "random"], "seeds": [0],
        "datasets": ["flowers", "leaves", "arrays", "made", "mnist"],
        "data": {"flowers": {"name": "folder", "root": str(tmp_path / "flowers"), "resolution": 8},
                 "leaves": {"name": "folder", "root": str(tmp_path / "flowers"), "resolution": 12},
                 "arrays": {"name": "tensors", "root": str(tmp_path / "arrays"), "layout": "nchw"},
                 "made": {"name": f"{factory_module}:make", "options": {"n": 40}},
                 "mnist": {"root": str(tmp_path / "idx")}},
        "base": {"model": {"width": 8}, "training": {"epochs": 1, "batch_size": 16}, "pruning": {"rounds": 1}}})
    specs = [job.experiment for job in expand(sweep) if job.kind == "validate" and job.experiment.method == "dense"]
    assert [(s.data.name, s.data.label) for s in specs] == [
        ("folder", "flowers"), ("folder", "leaves"), ("tensors", "arrays"), (f"{factory_module}:make", "made"),
        ("mnist", None)]
    assert len({s.experiment_id for s in specs}) == 5
    run_sweep(sweep, tmp_path / "out", LocalBackend(), "cpu")
    rows = read_levels(tmp_path / "out" / "results").to_pylist()
    assert sorted((r["dataset"], r["method"]) for r in rows) == [
        (name, method) for name in ("arrays", "flowers", "leaves", "made", "mnist") for method in ("dense", "random")]
    with pytest.raises(SpecError, match=r"datasets\[0\]: must be one of .*'package.module:function'; got 'orchids'"):
        SweepSpec.from_dict({"name": "x", "datasets": ["orchids"]})
