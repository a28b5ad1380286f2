"""Distilled sets in other codes' formats: each file written as the code that makes it writes it (DC's main.py,
DATM's and SeqMatch's distill scripts, FTD's EMA files, KIP's and FRePo's .npz, SRe2L's and RDED's image folders),
then read back through the spec; normalization, soft labels, entries and the user's mistakes."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from dpcluster.data.base import DataBundle, TensorSet
from dpcluster.distilled import DistilledSet, obtain_distilled_set
from dpcluster.errors import SpecError, UserError
from dpcluster.specs import DistilledSpec, ModelSpec

pytestmark = pytest.mark.usefixtures("one_thread")

CIFAR10_DC = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
CIFAR10_FREPO = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
OURS = ((0.49, 0.48, 0.45), (0.25, 0.24, 0.26))


def cifar(classes=3, side=4, zca=False, style="mtt") -> DataBundle:
    """A tiny stand-in for CIFAR-10 (the name selects the upstream constants), in our own normalization."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(classes).repeat_interleave(4)
    train = TensorSet(torch.randn(len(y), 3, side, side, generator=g), y)
    mean, std = ((0.0,) * 3, (1.0,) * 3) if zca else OURS
    return DataBundle(name="cifar10", num_classes=classes, input_shape=(3, side, side), mean=mean, std=std,
                      class_names=tuple(f"c{k}" for k in range(classes)), train=train, test=train, zca=zca,
                      zca_style=style)


def normalized(pixels: torch.Tensor, constants) -> torch.Tensor:
    mean, std = (torch.tensor(c).view(1, -1, 1, 1) for c in constants)
    return (pixels - mean) / std


def read(path, data: DataBundle, ipc: int, **fields) -> DistilledSet:
    spec = DistilledSpec(source="file", path=str(path), images_per_class=ipc, **fields)
    return obtain_distilled_set(spec, data, ModelSpec(), path.parent / "cache", "cpu")


def one_line(error: pytest.ExceptionInfo) -> str:
    text = str(error.value)
    assert "\n" not in text
    return text


def pixels(count: int, side: int = 4, seed: int = 1) -> torch.Tensor:
    return torch.rand(count, 3, side, side, generator=torch.Generator().manual_seed(seed))


# --- DC, DSA, DM: res_*.pt ---------------------------------------------------------------------------------

def write_dc(folder, experiments: list[torch.Tensor], classes: int, ipc: int, name="res_DSA_CIFAR10_ConvNet_2ipc.pt"):
    """As VICO-UoE/DatasetCondensation's main.py saves its results (lines 224-225): per experiment
    [image_syn, label_syn] detached on the CPU, labels grouped by class, accuracies as numpy floats."""
    data_save = []
    with warnings.catch_warnings():  # torch finds DC's list of arrays slow to convert
        warnings.simplefilter("ignore", UserWarning)
        label_syn = torch.tensor([np.ones(ipc) * i for i in range(classes)], dtype=torch.long, requires_grad=False
                                 ).view(-1)
    for image_syn in experiments:
        data_save.append([copy.deepcopy(image_syn.detach().cpu()), copy.deepcopy(label_syn.detach().cpu())])
    accs_all_exps = {"ConvNet": [np.float64(0.40 + 0.01 * k) for k in range(len(experiments) * 2)]}
    torch.save({"data": data_save, "accs_all_exps": accs_all_exps}, folder / name)
    return folder / name


def test_dc_results_file_each_entry_in_our_normalization(tmp_path):
    data = cifar()
    raw = [pixels(6, seed=k) for k in range(3)]
    file = write_dc(tmp_path, [normalized(r, CIFAR10_DC).requires_grad_() for r in raw], classes=3, ipc=2)
    for entry in range(3):
        got = read(file, data, 2, format="dc", entry=entry)
        torch.testing.assert_close(got.images, normalized(raw[entry], OURS), rtol=0, atol=1e-5)
        assert got.labels.tolist() == [0, 0, 1, 1, 2, 2] and got.extra["entry"] == entry
    # The folder holding one res_*.pt names it too.
    assert torch.equal(read(tmp_path, data, 2, format="dc", entry=1).images, read(file, data, 2, format="dc",
                                                                                   entry=1).images)
    with pytest.raises(UserError, match=r"holds 3 sets.*distilled.entry = 0..2.*ConvNet accuracies: 0: 40.5%") as e:
        read(file, data, 2, format="dc")
    one_line(e)
    with pytest.raises(UserError, match="entry = 5, but the file holds 3"):
        read(file, data, 2, format="dc", entry=5)
    with pytest.raises(UserError, match="never ZCA-whiten"):
        read(file, data, 2, format="dc", entry=0, zca=True)


def test_dc_file_with_one_entry_needs_no_entry_and_a_stated_normalization_wins(tmp_path):
    data = cifar()
    raw = pixels(6)
    file = write_dc(tmp_path, [normalized(raw, OURS)], classes=3, ipc=2)
    got = read(file, data, 2, format="dc", normalization="data")
    torch.testing.assert_close(got.images, normalized(raw, OURS), rtol=0, atol=1e-6)
    explicit = "0.49,0.48,0.45/0.25,0.24,0.26"
    torch.testing.assert_close(read(file, data, 2, format="dc", normalization=explicit).images, got.images)
    # Read with DC's constants (the default), the same numbers are other pixels.
    assert (read(file, data, 2, format="dc").images - got.images).abs().max() > 0.05


def test_dc_file_refuses_what_is_not_one(tmp_path):
    data = cifar()
    torch.save({"images": torch.randn(6, 3, 4, 4)}, tmp_path / "res_x.pt")
    with pytest.raises(UserError, match="not a DC/DSA/DM results file") as e:
        read(tmp_path / "res_x.pt", data, 2, format="dc")
    one_line(e)
    write_dc(tmp_path, [torch.randn(6, 3, 4, 4)], classes=3, ipc=2, name="res_DM_CIFAR10_ConvNet_2ipc.pt")
    with pytest.raises(UserError, match="2 res_\\*.pt files"):
        read(tmp_path, data, 2, format="dc")


# --- MTT and its successors ----------------------------------------------------------------------------------

def test_datm_soft_logits_and_lr_best(tmp_path):
    """DATM saves learned label logits (N, C) and lr_best.pt (a 0-dim tensor); its loss soft-maxes the logits."""
    data = cifar()
    classes = torch.arange(3).repeat_interleave(2)
    logits = torch.randn(6, 3, generator=torch.Generator().manual_seed(2)) + 4 * torch.eye(3)[classes]
    images = normalized(pixels(6), ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)))
    syn_lr = torch.tensor(0.0123, requires_grad=True)
    torch.save(images.detach().cpu(), tmp_path / "images_best.pt")
    torch.save(logits.detach().cpu(), tmp_path / "labels_best.pt")
    torch.save(syn_lr.detach().cpu(), tmp_path / "lr_best.pt")
    got = read(tmp_path, data, 2, format="mtt")
    assert got.soft_labels and got.label_kind == "soft" and got.learned_lr == pytest.approx(0.0123)
    torch.testing.assert_close(got.labels, logits.softmax(dim=1))
    hard = read(tmp_path, data, 2, format="mtt", labels="hard")
    assert hard.labels.dtype == torch.int64 and torch.equal(hard.labels, classes)
    # The project format keeps soft labels, and says so.
    saved = DistilledSet.load(got.save(tmp_path / "own"))
    assert saved.soft_labels and torch.equal(saved.labels, got.labels) and saved.sidecar()["labels"] == "soft"


def test_tesla_teacher_probabilities_are_kept_as_they_are(tmp_path):
    data = cifar()
    probabilities = torch.softmax(torch.randn(6, 3, generator=torch.Generator().manual_seed(4)), dim=1)
    torch.save(torch.randn(6, 3, 4, 4), tmp_path / "images_best.pt")
    torch.save(probabilities, tmp_path / "labels_best.pt")
    torch.testing.assert_close(read(tmp_path, data, 2, format="mtt").labels, probabilities)
    # Read as logits, they would be flattened further.
    assert not torch.allclose(read(tmp_path, data, 2, format="mtt", labels="softmax").labels, probabilities)


def test_seqmatch_subsets_are_joined_in_order_with_the_last_lr(tmp_path):
    data = cifar()
    parts = []
    for k, name in enumerate(("S1", "S2", "S10")):  # S10 after S2
        folder = tmp_path / name
        folder.mkdir()
        images = torch.randn(3, 3, 4, 4, generator=torch.Generator().manual_seed(k))
        torch.save(images, folder / "images_best.pt")
        torch.save(torch.arange(3), folder / "labels_best.pt")
        torch.save(torch.tensor(0.01 * (k + 1)), folder / "best_lr.pt")
        parts.append(images)
    got = read(tmp_path, data, 3, format="mtt", normalization="data")
    assert torch.equal(got.images, torch.cat(parts)) and got.labels.tolist() == [0, 1, 2] * 3
    assert got.learned_lr == pytest.approx(0.03)


def test_ftd_ema_checkpoint_by_file_name(tmp_path):
    data = cifar()
    ema = torch.randn(6, 3, 4, 4)
    torch.save(torch.randn(6, 3, 4, 4), tmp_path / "images_best.pt")
    torch.save(torch.arange(3).repeat_interleave(2), tmp_path / "labels_best.pt")
    torch.save(ema, tmp_path / "ema_images_best.pt")
    torch.save(torch.arange(3).repeat_interleave(2), tmp_path / "ema_labels_best.pt")
    got = read(tmp_path / "ema_images_best.pt", data, 2, format="mtt", normalization="data")
    assert torch.equal(got.images, ema)
    with pytest.raises(UserError, match="not an MTT images file"):
        read(tmp_path / "ema_labels_best.pt", data, 2, format="mtt")


# --- KIP, FRePo, RCIG: .npz ----------------------------------------------------------------------------------

def test_kip_npz_centred_one_hot_labels_are_classes(tmp_path):
    """KIP's released files: 'images' (N, H, W, C) standardized, 'labels' centred one-hot (1 - 1/C, -1/C)."""
    data = cifar()
    raw = pixels(6)
    standardized = normalized(raw, CIFAR10_FREPO).permute(0, 2, 3, 1).numpy().astype(np.float64)
    classes = np.repeat(np.arange(3), 2)
    labels = np.eye(3)[classes] - 1 / 3
    np.savez(tmp_path / "ConvNet_ssize30_nozca_nol_noaug_ckpt1000.npz", images=standardized, labels=labels)
    got = read(tmp_path / "ConvNet_ssize30_nozca_nol_noaug_ckpt1000.npz", data, 2, format="npz")
    torch.testing.assert_close(got.images, normalized(raw, OURS), rtol=0, atol=1e-5)
    assert got.labels.tolist() == classes.tolist() and not got.soft_labels


def test_frepo_npz_learned_labels_need_a_reading(tmp_path):
    """FRePo's np.savez(image=x_proto, label=y_proto): learned regression targets, not probabilities."""
    data = cifar()
    x_proto = np.random.default_rng(0).normal(size=(6, 4, 4, 3)).astype(np.float32)
    y_proto = (np.eye(3)[np.repeat(np.arange(3), 2)] - 1 / 3 + np.random.default_rng(1).normal(0, 0.05, (6, 3))
               ).astype(np.float32)
    np.savez(tmp_path / "step000100.npz", image=x_proto, label=y_proto)
    file = tmp_path / "step000100.npz"
    with pytest.raises(UserError, match='learned real values.*distilled.labels = "hard"') as e:
        read(file, data, 2, format="npz")
    one_line(e)
    assert read(file, data, 2, format="npz", labels="hard").labels.tolist() == [0, 0, 1, 1, 2, 2]
    soft = read(file, data, 2, format="npz", labels="softmax")
    torch.testing.assert_close(soft.labels, torch.from_numpy(y_proto).double().softmax(dim=1).float())
    # Channels-last images become (N, C, H, W) in FRePo's standardization, converted to ours.
    expected = normalized(torch.from_numpy(x_proto).permute(0, 3, 1, 2) * torch.tensor(CIFAR10_FREPO[1]).view(
        1, 3, 1, 1) + torch.tensor(CIFAR10_FREPO[0]).view(1, 3, 1, 1), OURS)
    torch.testing.assert_close(soft.images, expected, rtol=0, atol=1e-5)


def test_npz_refuses_zca_pickles_and_unknown_keys(tmp_path):
    data = cifar()
    np.savez(tmp_path / "a.npz", x_proto=np.zeros((6, 4, 4, 3), np.float32), y_proto=np.repeat(np.arange(3), 2))
    assert read(tmp_path / "a.npz", data, 2, format="npz").labels.tolist() == [0, 0, 1, 1, 2, 2]
    # A whitened set is in FRePo's or KIP's whitening space: it needs data whitened so, not as MTT does.
    with pytest.raises(UserError, match='whitened as FRePo, RCIG or KIP does.*data.zca = "frepo"') as e:
        read(tmp_path / "a.npz", cifar(zca=True), 2, format="npz", zca=True)
    one_line(e)
    for style in ("frepo", "kip"):
        white = read(tmp_path / "a.npz", cifar(zca=True, style=style), 2, format="npz", zca=True)
        assert white.zca and white.zca_style == style and white.mean == (0.0,) * 3
        # Kept in the project's format with its space, and never matched to data whitened another way.
        again = DistilledSet.load(white.save(tmp_path / f"own-{style}"))
        assert again.zca_style == style and again.matched_to(cifar(zca=True, style=style)) is again
        with pytest.raises(UserError, match=f"in {style}'s whitening space, the data in mtt's"):
            again.matched_to(cifar(zca=True))
    # MTT's whitened sets need MTT's whitening.
    torch.save(torch.zeros(6, 3, 4, 4), tmp_path / "images_best.pt")
    torch.save(torch.arange(3).repeat_interleave(2), tmp_path / "labels_best.pt")
    with pytest.raises(UserError, match="whitened as MTT's --zca does.*set data.zca = true"):
        read(tmp_path, cifar(zca=True, style="kip"), 2, format="mtt", zca=True)
    np.savez(tmp_path / "b.npz", pictures=np.zeros((6, 4, 4, 3), np.float32))
    with pytest.raises(UserError, match="expected arrays 'images'/'labels'"):
        read(tmp_path / "b.npz", data, 2, format="npz")
    np.savez(tmp_path / "c.npz", images=np.array([object()] * 6, dtype=object), labels=np.arange(6))
    with pytest.raises(UserError, match="refused"):
        read(tmp_path / "c.npz", data, 2, format="npz")
    (tmp_path / "d.npz").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="not a readable .npz"):
        read(tmp_path / "d.npz", data, 2, format="npz")


# --- SRe2L, RDED: image folders --------------------------------------------------------------------------------

def test_sre2l_and_rded_folders_of_jpegs(tmp_path):
    data = cifar()
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    for layout, folder_name, file_name in (("sre2l", "new{:03d}", "class{:03d}_id{:03d}.jpg"),
                                           ("rded", "{:05d}", "class{:05d}_id{:05d}.jpg")):
        root = tmp_path / layout
        for c, colour in enumerate(colours):
            (root / folder_name.format(c)).mkdir(parents=True)
            for k in range(2):
                Image.new("RGB", (8, 8), colour).save(root / folder_name.format(c) / file_name.format(c, k),
                                                      quality=100)
        got = read(root, data, 2, format="images")
        assert got.labels.tolist() == [0, 0, 1, 1, 2, 2]
        green = (torch.tensor([0.0, 1.0, 0.0]) - torch.tensor(OURS[0])) / torch.tensor(OURS[1])
        torch.testing.assert_close(got.images[2, :, 1, 1], green, rtol=0, atol=0.05)
    with pytest.raises(UserError, match="0-255 pixels") as e:
        read(tmp_path / "sre2l", data, 2, format="images", normalization="data")
    one_line(e)


# --- the spec --------------------------------------------------------------------------------------------------

def test_reading_fields_are_checked_and_only_for_files():
    with pytest.raises(SpecError, match="normalization"):
        DistilledSpec(source="file", path="x", normalization="0.5/0.1,0.2")
    with pytest.raises(SpecError, match="only a set read from a file"):
        DistilledSpec(labels="hard")
    with pytest.raises(SpecError, match="holds one set per file"):
        DistilledSpec(source="file", path="x", format="mtt", entry=1)
    with pytest.raises(SpecError, match="records its whitening and normalization itself"):
        DistilledSpec(source="file", path="x", normalization="pixels")
    # A set distilled here keeps its id: the reading fields are not part of it.
    assert "normalization" not in DistilledSpec().identity_dict()
    spec = DistilledSpec(source="file", path="x", format="dc", entry=3, normalization="data")
    assert DistilledSpec.from_toml(spec.to_toml()) == spec
    assert spec.identity_dict()["entry"] == 3 and spec.content_hash() != spec.replace(entry=2).content_hash()


# --- training on soft labels -------------------------------------------------------------------------------------

def test_soft_labels_are_trained_with_soft_cross_entropy_against_their_distribution():
    """Soft cross-entropy -sum p log q is least where the network's q equals the stored p: trained long enough on
    soft labels, its predictions on the set's images are the stored distributions (hard labels drive them to 1)."""
    from torch import nn

    from dpcluster.specs import TrainingSpec
    from dpcluster.training import train

    g = torch.Generator().manual_seed(0)
    images = torch.randn(6, 3, 4, 4, generator=g)
    wanted = torch.tensor([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4],
                           [0.25, 0.25, 0.5]])
    spec = TrainingSpec(optimizer="adam", lr=0.05, momentum=0.0, weight_decay=0.0, epochs=400, batch_size=6)

    def trained_on(labels):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(48, 3))
        train(model, TensorSet(images, labels), spec, device=torch.device("cpu"), seed=0)
        with torch.no_grad():
            return model(images).softmax(dim=1)

    torch.testing.assert_close(trained_on(wanted), wanted, rtol=0, atol=0.01)
    assert trained_on(wanted.argmax(dim=1)).max(dim=1).values.min() > 0.95
